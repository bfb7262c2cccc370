"""One progress bar for every process of a run, on the main process.

At the start the processes exchange (once, while all are alive) how many inputs each will score and the token
that names its chunks. The main process then counts its own rows as it goes and, every few seconds, the rows of
the other processes' finished chunks (their markers), so that a dead or slow process never blocks the bar: it
only stops adding to it. tqdm gives images per second and the time left.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .shards import CHUNK_NAME, DONE_FOLDER, marker

POLL_EVERY_S = 2.0


def gather(value, state) -> list:
    """Every process's `value`, in process order (a list of one without a launcher)."""
    if state.num_processes == 1:
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


class RunProgress:
    def __init__(self, output: Path, state, todo: int, token: str):
        shares = gather((todo, token), state)
        self.output, self.main = Path(output), state.is_main_process
        self.total = sum(count for count, _ in shares)
        self.others = {other for _, other in shares if other != token}
        self.own = self.from_others = 0
        self.last_poll = 0.0
        self.bar = tqdm(total=self.total, unit="image", desc="Scoring", file=sys.stderr, dynamic_ncols=True,
                        disable=True if not self.main else None)

    def _poll(self) -> None:
        self.last_poll = time.monotonic()
        if not self.others:
            return
        rows = 0
        for path in (self.output / DONE_FOLDER).glob("part-*.json"):
            match = CHUNK_NAME.match(path.name[: -len(".json")])
            if match and match.group(2) in self.others:
                found = marker(self.output / path.name[: -len(".json")])
                rows += found["rows"] if found else 0
        self.from_others = rows

    def advance(self, rows: int = 1) -> None:
        """Count `rows` of this process's rows (only the main process draws)."""
        self.own += rows
        if not self.main:
            return
        if time.monotonic() - self.last_poll >= POLL_EVERY_S:
            self._poll()
        done = min(self.total, self.own + self.from_others)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.main:
            self._poll()
            self.advance(0)
        self.bar.close()
