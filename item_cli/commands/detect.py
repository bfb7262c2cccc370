"""`item detect IMAGE_OR_FOLDER... --model DIR [--json] [--output DIR]`: label, fake probability, caption and objects.

Every input file is answered for, exactly once: a result, or a skipped-file record with the reason (with
--json, one JSON line per file; skipped files have an "error" field). Files are decoded in worker processes
(a file that hangs or crashes its decoder is skipped), results stream as they are computed, and the exit code
is 0 when at least one image was scored. Objects are listed least aligned first (lowest image-text similarity).
`--overlay DIR` also writes each image's explanation picture (boxes coloured by similarity, verdict, caption).

At scale: `--output DIR` writes result shards instead (one row per input; see item_cli.results), resumable and
incremental: a rerun scores only inputs without a row of the same content and checkpoint, and a new
`--threshold` alone re-decides stored rows without running any network. Under `accelerate launch` each process
scores every N-th input; `--cache-dir` reuses the frozen work cached by `item cache` / `item evaluate` (only the
head runs). `item detect --merge DIR` writes the newest row of every input to one file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from ..args import add_decoding, command_parser, positive_int
from ..cache import STORAGE_DTYPES
from ..console import emit, status
from ..data import FileFinder, Skipped, display_path
from ..data.decode import ImageReader
from ..results.prefetch import prefetched
from ..results.rows import SCORED, as_result
from ..results.scoring import detect, load_pipeline  # noqa: F401 - also imported from here by other code
from ..results.shards import FORMATS

logger = logging.getLogger(__name__)
OVERLAY_MAX_SIZE = 1600  # longer side of an explanation picture: legible, and a 6000-px photo is not redrawn at full size
# The default profile on CPU peaks at 5.8 / 6.9 / 9.2 / 13.5 GiB with batches of 1 / 2 / 4 / 8 (`item benchmark
# --batch-memory`, README "Scoring millions of images"): 2 fits in 8 GiB. On a GPU pass a larger --batch-size.
DEFAULT_BATCH_SIZE = 2


def build_parser(prog):
    parser = command_parser(prog, __doc__)
    parser.add_argument("inputs", nargs="*", help="image files and/or folders (searched recursively)")
    parser.add_argument("--model", default=None, help="ITEM checkpoint folder or Hub id")
    parser.add_argument("--json", action="store_true", help="print one JSON object per input file (JSON Lines)")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"images per batch for the frozen networks (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: GPU when there is one)")
    parser.add_argument("--threshold", type=float, default=None, help="fake probability threshold (default: the checkpoint's)")
    parser.add_argument("--revision", default=None, help="Hub revision (commit) of the checkpoint to load")
    parser.add_argument("--overlay", default=None, metavar="DIR",
                        help="also write each image's explanation picture here (one PNG per image)")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="write result shards here (resumable; under accelerate launch, every process shares it)")
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="result shards' format (default: parquet)")
    parser.add_argument("--shard-size", type=positive_int, default=1000,
                        help="rows per result shard: what a killed process can lose at most (default: 1000)")
    parser.add_argument("--merge", default=None, metavar="DIR",
                        help="instead: write the newest row of every input in DIR's shards to DIR/results.FORMAT")
    parser.add_argument("--cache-dir", default=None,
                        help="with --output: reuse (and fill) this frozen-work cache, so cached images cost only the head")
    parser.add_argument("--feature-dtype", choices=STORAGE_DTYPES, default="float16", help="storage dtype of cached features")
    add_decoding(parser)
    return parser


def overlay_name(path) -> str:
    """The explanation picture's file name: the image's name and a short hash of its whole path, so that two
    folders' `a.jpg` never overwrite each other."""
    digest = hashlib.sha256(os.fsencode(os.fspath(path))).hexdigest()[:10]
    stem = "".join(char if char.isalnum() or char in "-_." else "_" for char in Path(os.fsdecode(path)).stem)[:60]
    return f"{stem}-{digest}.png"


def write_overlay(pipe, image, result, folder: Path, path) -> str:
    """Draw the explanation picture of one result into `folder`; returns its path."""
    target = folder / overlay_name(path)
    pipe.draw_explanation(image, result, max_size=OVERLAY_MAX_SIZE).save(target)
    return str(target)


def format_result(path, result) -> str:
    label = "FAKE" if result["is_fake"] else "real"
    lines = [f"{display_path(path)}: {label}  p(fake)={result['fake_probability']:.3f} (threshold {result['threshold']:.3f})",
             f"  caption: {result['caption']!r}  (image-caption similarity {result['global_similarity']:+.3f})"]
    for item in result["objects"]:
        box = ", ".join(f"{v:.0f}" for v in item["box"])
        score = "given" if item["box_score"] is None else f"{item['box_score']:.2f}"
        lines.append(f"  {item['noun']:<16} similarity {item['similarity']:+.3f}  box [{box}]  detector {score}")
    if result["unfound_nouns"]:
        lines.append(f"  not found in the image: {', '.join(result['unfound_nouns'])}")
    return "\n".join(lines)


def report(path, outcome, as_json: bool) -> None:
    if isinstance(outcome, Skipped):
        if as_json:
            emit(json.dumps({"path": str(path), "error": outcome.reason}))
        else:
            logger.warning("skipped %s: %s", display_path(path), outcome.reason)
    elif as_json:
        emit(json.dumps({"path": str(path), **outcome}))  # ASCII: names that are not UTF-8 travel as \udcXX escapes
    else:
        emit(_writable(format_result(path, outcome)))


def _writable(text: str) -> str:
    """`text` with what standard output's encoding cannot write as backslash escapes: a Japanese file name or
    caption in a Latin-1 or ASCII locale must not end the run with a UnicodeEncodeError."""
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)


def detect_inputs(args, rank: int = 0, world: int = 1) -> tuple[list[str], list[Skipped]]:
    """This process's share of the inputs (every `world`-th of them in a deterministic order, from `rank`), and
    the entries that are not images (reported by process 0 only). The one place inputs are enumerated."""
    candidates, skipped = [], []
    for path, problem in FileFinder().find(args.inputs):
        if problem is None:
            candidates.append(str(path))
        else:
            skipped.append(problem)
    return candidates[rank::world], skipped if rank == 0 else []


def run(args) -> int:
    if args.merge is not None:
        return run_merge(args)
    if args.model is None or not args.inputs:
        raise ValueError("item detect needs image files or folders and --model CHECKPOINT (or --merge DIR).")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold {args.threshold}; pass a fake probability in [0, 1].")
    if args.output is not None:
        return run_output(args)
    if args.cache_dir is not None:
        raise ValueError("--cache-dir applies with --output DIR (result shards); add --output, or leave out --cache-dir.")
    candidates, skipped = detect_inputs(args)
    counts = Counter(skipped=len(skipped))
    for problem in skipped:
        report(problem.path, problem, args.json)
    if not candidates:
        logger.error("no image files found in the given paths (%d entries skipped)", counts["skipped"])
        return 1
    pipe = load_pipeline(args.model, args.device, args.revision)
    overlay = _overlay_folder(args)
    progress = tqdm(total=len(candidates), unit="image", disable=None, file=sys.stderr)
    with ImageReader(workers=args.decode_workers, timeout_s=args.decode_timeout) as reader:
        decoded = prefetched(reader.read(candidates), depth=2 * args.batch_size)
        for path, outcome, image in detect(pipe, decoded, args.batch_size, args.threshold):
            counts["skipped" if isinstance(outcome, Skipped) else "scored"] += 1
            if overlay is not None and image is not None:
                outcome = {**outcome, "overlay": write_overlay(pipe, image, outcome, overlay, path)}
            with tqdm.external_write_mode():  # the bar steps aside for the line
                report(path, outcome, args.json)
            progress.update(1)
    progress.close()
    status(f"{counts['scored']} images scored, {counts['skipped']} files skipped")
    return 0 if counts["scored"] else 1


def _overlay_folder(args) -> Path | None:
    if args.overlay is None:
        return None
    folder = Path(args.overlay)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_output(args) -> int:
    """--output DIR: this process's share into result shards; one summary line from the main process."""
    from ..cache import process_state
    from ..results.run import score_to_output, summarize

    state = process_state()
    paths, skipped = detect_inputs(args, state.process_index, state.num_processes)
    overlay = _overlay_folder(args)

    def emit_row(row, image):
        if row["status"] != SCORED:
            report(row["path"], Skipped(row["path"], row["error"]), args.json)  # a warning line, or a JSON line
            return
        result = as_result(row)
        if overlay is not None and image is not None:
            result["overlay"] = write_overlay_row(overlay, image, result, row["path"])
        if args.json:
            report(row["path"], result, True)

    counts = score_to_output(args, paths, state, emit_row, [(problem.path, problem.reason) for problem in skipped])
    total = summarize(Path(args.output), counts, state)
    if total is not None:
        rate = total["scored"] / total["seconds"] if total["seconds"] > 0 else 0.0
        status(f"{_images(total['scored'])} scored ({rate:.1f} images/s over {total['processes']} "
               f"process{'es' if total['processes'] > 1 else ''}), {total['relabelled']} relabelled, "
               f"{total['done']} already done, {total['skipped']} skipped; results in {args.output}")
        return 0 if total["scored"] + total["relabelled"] + total["done"] else 1
    return 0


def _images(count: int) -> str:
    return f"{count:,} image" + ("" if count == 1 else "s")


def write_overlay_row(folder: Path, image, result: dict, path: str) -> str:
    """The explanation picture of a result row (no pipeline at hand: the scoring may have run elsewhere)."""
    from item_detector.visualization_item import draw_explanation

    target = folder / overlay_name(path)
    draw_explanation(image, result, max_size=OVERLAY_MAX_SIZE).save(target)
    return str(target)


def run_merge(args) -> int:
    from ..results import merge

    target, kept, read = merge(Path(args.merge), args.format)
    status(f"wrote {target}: {kept} rows (the newest of {read} rows in the shards)")
    return 0


if __name__ == "__main__":  # `accelerate launch -m item_cli.commands.detect ...`
    from ..cli import main

    sys.exit(main(["detect", *sys.argv[1:]]))
