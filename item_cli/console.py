"""Where a command's output goes: results on stdout, everything else (logs, progress, warnings) on stderr.

`item train ... | jq` must see only the result, whatever the libraries underneath print, so `item_cli.cli`
points `results` at the real stdout and sends the process's stdout to stderr while a command runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping

_results = sys.stdout


def emit(text: str) -> None:
    """Write one result (a line, a JSON object, a table) to the command's real standard output."""
    _results.write(text + "\n")
    _results.flush()


def status(text: str) -> None:
    """A line for the person watching (what was written where), on stderr: never mixed with the results."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def set_results_stream(stream) -> None:
    global _results
    _results = stream


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def configure_logging(verbose: bool = False) -> None:
    """item_cli's log messages on stderr as `warning: ...` lines (INFO too with `verbose`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger = logging.getLogger("item_cli")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """`1 image`, `2 images`, `1,234 files`: the count and the noun in its number."""
    return f"{count:,} {noun if count == 1 else plural_form or noun + 's'}"


# Library chatter a user of the command line does not need (--verbose shows it): the messages of the torch
# warnings below, transformers' and huggingface_hub's info and warnings (torchvision fallbacks, "mtime may not be
# reliable") and their progress bars ("Loading weights").
QUIET_WARNINGS = (
    r".*pin_memory.*",  # torch's DataLoader on a machine without an accelerator
)


def quiet_libraries(verbose: bool = False) -> None:
    """Keep stderr for what the user needs: transformers' and huggingface_hub's warnings and progress bars off
    unless `verbose` (set before the libraries are used, through their public switches). An explicit
    TRANSFORMERS_VERBOSITY is respected."""
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    if verbose:
        transformers_logging.set_verbosity_warning()
        transformers_logging.enable_progress_bar()
        enable_progress_bars()
        return
    if not os.environ.get("TRANSFORMERS_VERBOSITY"):
        transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    disable_progress_bars()


@contextlib.contextmanager
def quiet_warnings(verbose: bool = False):
    """Within the block, the `QUIET_WARNINGS` are not shown (unless `verbose`); other warnings are."""
    with warnings.catch_warnings():
        if not verbose:
            for message in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
        yield


class Progress:
    """Progress of a long step on stderr: a tqdm bar on a terminal; elsewhere (a batch job's log file) one plain
    line every `interval_s` seconds -- done / total, images per second, time left -- so that a log shows the run
    is alive. `ITEM_PROGRESS_INTERVAL` (seconds, default 30) sets the interval of the plain lines."""

    def __init__(self, total: int | None, description: str, unit: str = "image", interval_s: float | None = None):
        self.total, self.description, self.unit, self.done = total, description, unit, 0
        self.interval_s = float(os.environ.get("ITEM_PROGRESS_INTERVAL", 30)) if interval_s is None else interval_s
        self.bar = None
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=description, unit=unit, file=sys.stderr)
        self.started = self.last_line = time.monotonic()

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.monotonic()
        if now - self.last_line >= self.interval_s and count:
            self.last_line = now
            status(self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        if self.total is None:  # a stream: how many there are is known only at its end
            text = f"{self.description}: {plural(self.done, self.unit)} so far"
        else:
            text = f"{self.description}: {self.done:,} / {plural(self.total, self.unit)}"
        if self.total:
            text += f" ({self.done / self.total:.0%})"
        text += f", {rate:.3g} {self.unit}s/s"
        if rate > 0 and self.total is not None and self.total > self.done:
            text += f", about {_duration((self.total - self.done) / rate)} left"
        return text

    @contextlib.contextmanager
    def aside(self):
        """Print a result line within the block without breaking the bar."""
        if self.bar is None:
            yield
        else:
            with self.bar.external_write_mode():
                yield

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def report_skipped(skipped) -> None:
    """One `warning: skipped PATH: reason` line on stderr for each input that gave no result."""
    from .data.files import display_path

    log = logging.getLogger("item_cli")
    for item in skipped:
        log.warning("skipped %s: %s", display_path(item.path), item.reason)


def json_ready(value):
    """JSON-friendly values: NaN becomes null, numpy scalars Python numbers, tuples lists, keys strings."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # a numpy scalar
        return json_ready(value.item())
    return value
