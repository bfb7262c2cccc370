"""`item detect ... --output DIR`: score this process's share of the inputs into result shards, resumably.

Per process: hash its inputs' bytes (before any decoding), look them up in DIR's rows of this checkpoint, and
sort them into
- done: a row with the same path and content sha256 exists (at another threshold, it is written again decided
  at the new one, from its stored fake probability: no network runs);
- to score: new paths, changed files (another sha256), and rows whose scoring failed.
Only when something is to be scored are the networks loaded. Rows are written in chunks (`ShardWriter`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..cache.keys import content_keys
from .identity import checkpoint_folder, checkpoint_identity, default_threshold
from .progress import RunProgress, gather
from .rows import FAILED, SCORED, is_done, relabelled, skipped_row
from .shards import ShardWriter, answered, latest_rows, read_rows, write_success

logger = logging.getLogger(__name__)


@dataclass
class Plan:
    """What this process does with its share of the inputs."""

    todo: dict[str, str] = field(default_factory=dict)  # path -> content sha256, in input order
    relabel: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why its bytes cannot be read)
    done: int = 0


def identity(item) -> str:
    """What names an input in the rows: a file's path, or a data-set row's identity (`Record.path`)."""
    return item if isinstance(item, str) else str(getattr(item, "path", item))


def plan(inputs: list, output: Path, checkpoint: str, threshold: float, skipped=(), stored: dict | None = None) -> Plan:
    """Sort `inputs` (file paths, or `Record`s of files and data-set rows) into done, to relabel, to score (see
    the module docstring). `skipped`: (path, reason) of entries that are not image files (a FIFO, a broken link);
    like inputs that cannot be read, each is recorded once, and again only when its reason changes. `stored`: the
    output's rows of this checkpoint (`answered`), when the caller read them already."""
    stored = answered(output, checkpoint) if stored is None else stored
    found = Plan()
    paths = [identity(item) for item in inputs]
    keys = content_keys(inputs)  # a file's bytes, or a data-set row's stored bytes
    unanswerable = [*skipped, *((path, f"cannot be read ({key.strerror or key})") for path, key in zip(paths, keys)
                                if isinstance(key, OSError))]
    for path, reason in unanswerable:
        row = stored.get(path)
        if row is not None and row["content_sha256"] is None and row["error"] == reason:
            found.done += 1
        else:
            found.unreadable.append((path, reason))
    for path, key in zip(paths, keys):
        if isinstance(key, OSError):
            continue
        row = stored.get(path)
        if row is None or not is_done(row["status"], row["content_sha256"], key):
            found.todo[path] = key
        elif row["status"] == SCORED and row["threshold"] != threshold:
            found.relabel.append(path)
        else:
            found.done += 1
    return found


def relabel_rows(output: Path, checkpoint: str, paths: list[str], threshold: float) -> list[dict]:
    """The newest rows of `paths`, decided again at `threshold`."""
    wanted = set(paths)
    table = latest_rows(read_rows(output, checkpoint), by=("path",))
    return [relabelled(row, threshold) for row in table.to_pylist() if row["path"] in wanted]


def score_to_output(args, inputs: list, state, emit_row=None, skipped=(), everything: dict | None = None) -> dict:
    """Score this process's `inputs` (paths or `Record`s) into `args.output`; returns this process's counts.
    `emit_row(row, image)` is called for every new row (the --json lines and --overlay pictures); `skipped`:
    (path, reason) of the entries that are not image files (recorded as rows too); `everything`: identity -> input
    of every process's inputs (the cache computes missing rows with all processes together; default: `inputs`)."""
    output = Path(args.output)
    folder = checkpoint_folder(args.model, args.revision)
    checkpoint = checkpoint_identity(folder)
    threshold = default_threshold(folder) if args.threshold is None else args.threshold
    work = plan(inputs, output, checkpoint, threshold, skipped)
    everything = everything if everything is not None else {identity(item): item for item in inputs}
    writer = ShardWriter(output, state.process_index, args.format, checkpoint, args.shard_size)
    counts = {"done": 0, "scored": 0, "relabelled": 0, "skipped": 0}
    emit = emit_row or (lambda row, image: None)
    write_known(writer, work, output, checkpoint, threshold, emit, counts)
    progress = RunProgress(output, state, len(work.todo), writer.token)
    started = time.monotonic()
    for row, image in _rows(args, work.todo, state, threshold, checkpoint, everything):
        writer.add(row)
        emit(row, image)
        counts["scored" if row["status"] == SCORED else "skipped"] += 1
        progress.advance()
    writer.flush()
    progress.close()
    counts["seconds"] = time.monotonic() - started
    return counts


def write_known(writer: ShardWriter, work: Plan, output: Path, checkpoint: str, threshold: float, emit,
                counts: dict) -> None:
    """Write what needs no network: rows of inputs that cannot be read, and rows decided again at a new threshold;
    count what was done already."""
    counts["done"] += work.done
    for path, reason in work.unreadable:
        row = skipped_row(path, None, reason, FAILED, checkpoint)
        writer.add(row)
        emit(row, None)
        counts["skipped"] += 1
    for row in relabel_rows(output, checkpoint, work.relabel, threshold) if work.relabel else []:
        writer.add(row)
        emit(row, None)
        counts["relabelled"] += 1
    writer.flush()


def _rows(args, todo: dict[str, str], state, threshold: float, checkpoint: str, everything: dict):
    """(row, image or None) of every input of `todo` (identity -> content key): through the cache with
    --cache-dir, else the pipeline. `everything`: identity -> input (a path or a `Record`)."""
    everyone = gather(list(todo), state)  # collective: every process takes part, whether it has work or not
    if not any(everyone):
        return
    if args.cache_dir is not None:
        from ..checkpoint import load_checkpoint
        from .scoring import cached_rows

        model, processor = load_checkpoint(args.model, args.revision)
        options = dict(cache_dir=args.cache_dir, batch_size=args.batch_size, storage_dtype=args.feature_dtype,
                       decode_workers=args.decode_workers, decode_timeout_s=args.decode_timeout,
                       max_image_pixels=args.max_image_pixels)
        all_inputs = [everything[path] for share in everyone for path in share]
        for row in cached_rows(model, processor, todo, all_inputs, options, state, threshold, checkpoint):
            yield row, None
        return
    if not todo:
        return
    yield from pipeline_rows(args, load_pipeline_for(args, state), todo, everything, threshold, checkpoint)


def load_pipeline_for(args, state):
    """The checkpoint's pipeline on this process's device (`--device`, else accelerate's under a launcher)."""
    from . import scoring

    device = args.device or (None if state.num_processes == 1 else str(state.device))
    return scoring.load_pipeline(args.model, device, args.revision)


def pipeline_rows(args, pipe, todo: dict[str, str], everything: dict, threshold: float, checkpoint: str):
    """(row, image or None) of every input of `todo`, decoded (ahead) in worker processes and scored by `pipe`."""
    from ..data.decode import ImageReader
    from . import scoring
    from .prefetch import prefetched

    reading = dict(workers=args.decode_workers, timeout_s=args.decode_timeout, max_pixels=args.max_image_pixels,
                   provenance=args.provenance_policy != "off", trust_anchors=args.c2pa_trust_anchors)
    with ImageReader(**reading) as reader:
        decoded = prefetched(reader.read([everything[path] for path in todo]), depth=2 * args.batch_size)
        yield from scoring.pipeline_rows(pipe, decoded, todo, args.batch_size, threshold, checkpoint,
                                         args.provenance_policy)


def summarize(output: Path, counts: dict, state) -> dict | None:
    """Every process's counts added up (on the main process, which also writes `_SUCCESS`); None elsewhere."""
    everyone = gather(counts, state)
    if not state.is_main_process:
        return None
    total = {name: sum(part[name] for part in everyone) for name in ("done", "scored", "relabelled", "skipped")}
    total["seconds"] = max(part["seconds"] for part in everyone)
    total["processes"] = state.num_processes
    write_success(output, total)
    return total

