"""`item detect --data SOURCE --output DIR` on a data set too large to list: rows streamed, a chunk at a time.

Each process reads only its own rows (`item_cli.data.iter_source_records`: `datasets` streaming, shared across
processes by `split_dataset_by_node`), so memory stays flat whatever the data set's size. Every chunk goes through
the same steps as a listed run (`run.plan`: hash the stored bytes, skip what is answered, re-decide at a new
threshold, score the rest), against the rows the output held when the run started. No step waits for another
process until the end, where the counts are added up once (`run.summarize`): processes with more rows than
others never block them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from ..console import Progress
from ..data import Skipped
from .identity import checkpoint_folder, checkpoint_identity, default_threshold
from .rows import SCORED
from .run import identity, load_pipeline_for, pipeline_rows, plan, write_known
from .shards import ShardWriter, answered


def chunks(items: Iterable, size: int) -> Iterator[list]:
    """`items` in lists of `size` (the last one shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def stream_to_output(args, items: Iterable, state, emit_row=None) -> dict:
    """Score this process's streamed `items` (`Record`s and `Skipped`s, in order) into `args.output`, one chunk
    of `--shard-size` items at a time; returns this process's counts (as `run.score_to_output`)."""
    output = Path(args.output)
    folder = checkpoint_folder(args.model, args.revision)
    checkpoint = checkpoint_identity(folder)
    threshold = default_threshold(folder) if args.threshold is None else args.threshold
    stored = answered(output, checkpoint)  # once: the rows this run writes are new paths or new content anyway
    writer = ShardWriter(output, state.process_index, args.format, checkpoint, args.shard_size)
    counts = {"done": 0, "scored": 0, "relabelled": 0, "skipped": 0}
    emit = emit_row or (lambda row, image: None)
    pipe, started = None, time.monotonic()
    with Progress(None, "Scoring") if state.is_main_process else _Silent() as progress:
        for chunk in chunks(items, args.shard_size):
            records = [item for item in chunk if not isinstance(item, Skipped)]
            skipped = [(item.path, item.reason) for item in chunk if isinstance(item, Skipped)]
            work = plan(records, output, checkpoint, threshold, skipped, stored)
            write_known(writer, work, output, checkpoint, threshold, emit, counts)
            if work.todo:
                pipe = pipe or load_pipeline_for(args, state)  # loaded once, and only when something is new
                everything = {identity(record): record for record in records}
                for row, image in pipeline_rows(args, pipe, work.todo, everything, threshold, checkpoint):
                    writer.add(row)
                    emit(row, image)
                    counts["scored" if row["status"] == SCORED else "skipped"] += 1
                    progress.update(1)
            writer.flush()
    counts["seconds"] = time.monotonic() - started
    return counts


class _Silent:
    """The progress of a process that draws none (only the main process does)."""

    def update(self, count: int = 1) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass
