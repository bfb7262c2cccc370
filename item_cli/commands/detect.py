"""`item detect IMAGE_OR_FOLDER... | --data SOURCE --model M [--json] [--output DIR]`: the verdict of every image.

Every input is answered for, exactly once: a result (label, fake probability, caption, and each grounded object,
least aligned first) or a skipped record with the reason (with --json, one JSON line per input; skipped ones have
an "error" field). Files are decoded in worker processes (a file that hangs or crashes its decoder is skipped),
results stream as they are computed, and the exit code is 0 when at least one image was scored. `--overlay DIR`
also writes each image's explanation picture. Beside each verdict: the file's provenance (Content Credentials,
generator metadata, known invisible watermarks), read by the decoding workers from the same bytes;
`--provenance-policy signed-ai-decides` lets a trusted, valid C2PA claim of AI generation set the verdict.

Data sets (`--data hf:ORG/NAME`, Parquet, Arrow, WebDataset .tar, save_to_disk folders) are read memory-mapped,
each row's stored bytes fetched when it is decoded. At scale, `--output DIR` writes result shards (one row per
input; see item_cli.results), resumable and incremental: a rerun scores only inputs without a row of the same
content and checkpoint, and a new `--threshold` alone re-decides stored rows without running any network. Under
`accelerate launch` each process scores every N-th input; `--cache-dir` reuses the frozen work cached by `item
cache` / `item evaluate` (only the head runs). `item detect --merge DIR` writes the newest row of every input to
one file.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections import Counter
from pathlib import Path

from item_detector.provenance_item import POLICIES, TRUST_ANCHORS_ENV, load_trust_anchors, missing_extra

from ..args import add_data_sets, add_decoding, add_options, command_parser, positive_int, source_options
from ..console import Progress, plural, status
from ..data import FileFinder, Skipped, display_path
from ..data.decode import ImageReader
from ..model_source import check_model_source
from ..results.prefetch import prefetched
from ..results.report import format_result, report, write_overlay  # noqa: F401 - also imported from here
from ..results.rows import SCORED, as_result
from ..results.scoring import detect, load_pipeline  # noqa: F401 - also imported from here by other code
from ..results.shards import FORMATS

logger = logging.getLogger(__name__)


def build_parser(prog):
    parser = command_parser(prog, __doc__)
    parser.add_argument("inputs", nargs="*", help="image files and/or folders (searched recursively)")
    add_options(parser, "--model", "--revision")
    add_data_sets(parser)  # --data [NAME=]SOURCE, repeatable: every image of each set is scored too
    add_options(parser, "--json", "--batch-size", "--device", "--threshold")
    parser.add_argument("--overlay", default=None, metavar="DIR",
                        help="also write each image's explanation picture here (one PNG per image)")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="write result shards here (resumable; under accelerate launch, every process shares it)")
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="the result shards' format")
    parser.add_argument("--shard-size", type=positive_int, default=1000, metavar="N",
                        help="rows per result shard: what a killed process can lose at most")
    parser.add_argument("--merge", default=None, metavar="DIR",
                        help="instead: write the newest row of every input in DIR's shards to DIR/results.FORMAT")
    add_options(parser, "--cache-dir", "--feature-dtype")
    add_decoding(parser)
    parser.add_argument("--provenance-policy", choices=(*POLICIES, "off"), default="report",
                        help="report: provenance beside the verdict; signed-ai-decides: a C2PA manifest whose signature "
                             "holds, from a signer in --c2pa-trust-anchors, that claims AI generation sets FAKE; off: "
                             "do not read it")
    parser.add_argument("--c2pa-trust-anchors", default=None, metavar="PEM",
                        help=f"C2PA trust anchors (PEM file of CA certificates; default ${TRUST_ANCHORS_ENV} or none: "
                             "every signer is reported untrusted). Nothing is downloaded.")
    return parser


def detect_inputs(args, stream: bool = False) -> tuple[list, list[Skipped], list[str]]:
    """(every listed input in a deterministic order: file paths, then the records of `--data` folders, manifests
    and, unless `stream`, data sets; the entries that are not images; with `stream`, the `--data` data sets to
    stream instead). The one place inputs are enumerated; process `rank` of `world` takes `inputs[rank::world]`."""
    from ..data import load_records, source_kind
    from ..protocols import parse_data_arguments

    inputs, skipped, streamed = [], [], []
    for path, problem in FileFinder().find(args.inputs):
        if problem is None:
            inputs.append(str(path))
        else:
            skipped.append(problem)
    for _, source in parse_data_arguments(args.data or []):
        if stream and source_kind(source) is not None:
            streamed.append(source)
            continue
        records, dropped = load_records(source, layout=args.layout, split=args.split, generator=args.generator,
                                        options=source_options(args))
        inputs += records
        skipped += dropped
    return inputs, skipped, streamed


def streamed_records(args, sources: list[str], rank: int = 0, world: int = 1):
    """This process's rows of the data sets `sources`, streamed (`Record`s and `Skipped`s, in order)."""
    from ..data import iter_source_records

    for source in sources:
        yield from iter_source_records(source, source_options(args), rank, world, generator=args.generator)


def run(args) -> int:
    if args.merge is not None:
        return run_merge(args)
    if args.model is None or not (args.inputs or args.data):
        raise ValueError("item detect needs image files or folders (or --data SOURCE) and --model CHECKPOINT, "
                         "or --merge DIR.")
    check_model_source(args.model, args.revision)  # before any work: a mistyped folder is one clear line
    if load_trust_anchors(args.c2pa_trust_anchors) is None and args.provenance_policy == "signed-ai-decides":
        status(f"--provenance-policy signed-ai-decides without --c2pa-trust-anchors (or ${TRUST_ANCHORS_ENV}): no signer "
               "is trusted, so no manifest can decide a verdict")
    if args.provenance_policy != "off" and missing_extra():
        status(missing_extra())
    if args.output is not None:
        return run_output(args)
    if args.cache_dir is not None:
        raise ValueError("--cache-dir applies with --output DIR (result shards); add --output, or leave out --cache-dir.")
    inputs, skipped, streamed = detect_inputs(args, stream=True)
    counts = Counter(skipped=len(skipped))
    for problem in skipped:
        report(problem.path, problem, args.json)
    if not inputs and not streamed:
        logger.error("no image files found in the given paths (%s skipped)", plural(counts["skipped"], "entry", "entries"))
        return 1

    def readable(items):  # a streamed row that cannot be had is answered at once; the others go to the decoders
        for item in items:
            if isinstance(item, Skipped):
                counts["skipped"] += 1
                report(item.path, item, args.json)
            else:
                yield item

    pipe = load_pipeline(args.model, args.device, args.revision)
    overlay = _overlay_folder(args)
    reading = dict(workers=args.decode_workers, timeout_s=args.decode_timeout, max_pixels=args.max_image_pixels,
                   provenance=args.provenance_policy != "off", trust_anchors=args.c2pa_trust_anchors)
    everything = itertools.chain(inputs, readable(streamed_records(args, streamed)))
    with Progress(None if streamed else len(inputs), "Scoring") as progress, ImageReader(**reading) as reader:
        decoded = prefetched(reader.read(everything), depth=2 * args.batch_size)  # decoded ahead while a batch runs
        for path, outcome, image in detect(pipe, decoded, args.batch_size, args.threshold, args.provenance_policy):
            counts["skipped" if isinstance(outcome, Skipped) else "scored"] += 1
            if overlay is not None and image is not None:
                outcome = {**outcome, "overlay": write_overlay(image, outcome, overlay, path)}
            with progress.aside():  # a terminal's bar steps aside for the line
                report(path, outcome, args.json)
            progress.update(1)
    status(f"{plural(counts['scored'], 'image')} scored, {plural(counts['skipped'], 'file')} skipped")
    if overlay is not None and counts["scored"]:
        status(f"explanation pictures of the scored images in {display_path(overlay)}/")
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
    from ..results.run import identity, score_to_output, summarize

    state = process_state()
    inputs, skipped, streamed = detect_inputs(args, stream=args.cache_dir is None)  # the cache needs every row listed
    mine = inputs[state.process_index::state.num_processes]
    skipped = skipped if state.is_main_process else []  # the entries that are not images: recorded once
    overlay = _overlay_folder(args)

    def emit_row(row, image):
        if row["status"] != SCORED:
            report(row["path"], Skipped(row["path"], row["error"]), args.json)  # a warning line, or a JSON line
            return
        result = as_result(row)
        if overlay is not None and image is not None:
            result["overlay"] = write_overlay(image, result, overlay, row["path"])
        if args.json:
            report(row["path"], result, True)

    everything = {identity(item): item for item in inputs}
    counts = score_to_output(args, mine, state, emit_row, [(problem.path, problem.reason) for problem in skipped],
                             everything)
    if streamed:  # data sets too large to list: each process streams its own rows, a chunk at a time
        from ..results.stream import stream_to_output

        rows = streamed_records(args, streamed, state.process_index, state.num_processes)
        more = stream_to_output(args, rows, state, emit_row)
        counts = {name: counts[name] + more[name] for name in counts}
    total = summarize(Path(args.output), counts, state)
    if state.num_processes > 1:  # every process leaves together: a peer's closed connection must not abort gloo
        state.wait_for_everyone()
        state.destroy_process_group()
    if total is not None:
        rate = total["scored"] / total["seconds"] if total["seconds"] > 0 else 0.0
        status(f"{plural(total['scored'], 'image')} scored ({rate:.1f} images/s over "
               f"{plural(total['processes'], 'process', 'processes')}), {total['relabelled']} relabelled, "
               f"{total['done']} already done, {total['skipped']} skipped; results in {args.output}")
        return 0 if total["scored"] + total["relabelled"] + total["done"] else 1
    return 0


def run_merge(args) -> int:
    from ..results import merge

    target, kept, read = merge(Path(args.merge), args.format)
    status(f"wrote {target}: {plural(kept, 'row')} (the newest of {read} rows in the shards)")
    return 0


if __name__ == "__main__":  # `accelerate launch -m item_cli.commands.detect ...`
    from ..cli import main

    sys.exit(main(["detect", *sys.argv[1:]]))
