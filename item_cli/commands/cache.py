"""`item cache --model M --data SOURCE [--features]` fills the frozen-work cache; `item cache --info`
says what a cache holds; `item cache --prune ...` removes stages.

Filling computes the captions, nouns and boxes (and, with --features, the backbone's embeddings) of every image
not cached yet, keyed by the image's content. On many GPUs or nodes:

    accelerate launch --num_processes 8 -m item_cli.commands.cache --model M --data SOURCE --features

Each process computes one share of the missing images. Looking after a cache:

    item cache --info [--cache-dir DIR]               rows (images), files and size per stage
    item cache --prune --unused-days 30               remove stages no run has used for 30 days
    item cache --prune --stage KEY [KEY ...]          remove stages by key (as --info prints them)
    item cache --prune --all                          remove every stage
    item cache --verify                               check every chunk's checksum, remove damaged ones

Removing a stage folder by hand (`rm -r DIR/annotations-KEY`) is just as safe while no run uses it.
"""

from __future__ import annotations

import sys

from ..args import add_cache, add_data, add_model, command_parser
from ..console import emit, plural, report_skipped


def build_parser(prog):
    parser = command_parser(prog, __doc__)
    add_model(parser, required=False)  # not needed with --info / --prune / --verify
    add_data(parser, required=False)
    parser.add_argument("--features", action="store_true", help="also cache the backbone features (stage 2)")
    add_cache(parser)
    looking = parser.add_argument_group("looking after a cache")
    looking.add_argument("--info", action="store_true", help="print what the cache holds")
    looking.add_argument("--prune", action="store_true", help="remove stages (with --unused-days, --stage or --all)")
    looking.add_argument("--unused-days", type=float, default=None, metavar="DAYS",
                         help="with --prune: remove the stages no run has used for this many days")
    looking.add_argument("--stage", nargs="+", default=[], metavar="KEY",
                         help="with --prune: remove these stages (keys as --info prints them, or their first characters)")
    looking.add_argument("--all", action="store_true", help="with --prune: remove every stage")
    looking.add_argument("--verify", action="store_true", help="hash every chunk; remove damaged ones")
    return parser


def run(args) -> int:
    from ..cache import default_cache_dir

    root = args.cache_dir or default_cache_dir()
    if args.info or args.prune or args.verify:
        return look_after(root, args)
    if args.model is None or args.data is None:
        raise ValueError("Filling the cache needs --model and --data (or pass --info, --prune or --verify).")
    from ..cache import frozen_rows
    from ..args import cache_options
    from ..checkpoint import load_checkpoint
    from ..args import source_options
    from ..data import load_records, source_kind
    from ..data.sources import record_chunks

    from ..model_source import check_model_source

    check_model_source(args.model, args.revision)  # before the files are listed
    if source_kind(args.data) is not None:  # a data set: streamed, one chunk of rows at a time (flat memory)
        chunks = record_chunks(args.data, source_options(args), generator=args.generator)
    else:
        chunks = iter([load_records(args.data, layout=args.layout, split=args.split, generator=args.generator,
                                    options=source_options(args))])
    records, skipped = next(chunks, ([], []))  # a bad label or column stops here, before the networks load
    model, processor = load_checkpoint(args.model, args.revision)
    cached = dropped = 0
    while records or skipped:
        rows = frozen_rows(records, processor, model, features=args.features, **cache_options(args)) if records else None
        skipped = skipped + (rows.skipped if rows is not None else [])
        report_skipped(skipped)
        cached, dropped = cached + (len(rows) if rows is not None else 0), dropped + len(skipped)
        records, skipped = next(chunks, ([], []))
    what = "annotations and features" if args.features else "annotations"
    emit(f"{plural(cached, 'image')} cached ({what}) in {root}; {plural(dropped, 'file')} skipped")
    return 0


def look_after(root, args) -> int:
    from ..cache.keys import describe_origin
    from ..cache.store import StageStore, describe_stage, prune, stage_folders

    if args.prune:
        if not (args.unused_days is not None or args.stage or args.all):
            raise ValueError("--prune needs --unused-days N, --stage KEY ... or --all to say what to remove.")
        for info in prune(root, args.stage, args.unused_days, args.all):
            emit(f"removed {info['folder']} ({plural(info['images'], 'image')}, {info['bytes'] / 1e6:.1f} MB)")
    if args.verify:
        for folder in stage_folders(root):
            store = StageStore.at(folder)
            chunks = store.chunks()
            damaged = sum(not store.verify(chunk) for chunk in chunks)
            emit(f"{folder.name}: {plural(len(chunks), 'chunk')} checked, {damaged} damaged and removed")
    if args.info or not (args.prune or args.verify):
        stages = [{**describe_stage(folder), "made_by": describe_origin(StageStore.at(folder).fingerprint)}
                  for folder in stage_folders(root)]
        emit(format_info(root, stages))
    return 0


def format_info(root, stages: list[dict]) -> str:
    lines = [f"cache {root}: {plural(len(stages), 'stage')}, {sum(s['bytes'] for s in stages) / 1e6:.1f} MB", ""]
    if stages:
        lines += ["| stage | key | images | chunks | MB | last used | unfinished writes | made by |", "|---|---|---|---|---|---|---|---|"]
        for s in stages:
            lines.append(f"| {s['stage']} | {s['key']} | {s['images']} | {s['chunks']} | {s['bytes'] / 1e6:.1f} | "
                         f"{s['last_used']} | {s['unfinished_writes']} | {s.get('made_by', s['components'])} |")
    return "\n".join(lines)


if __name__ == "__main__":  # `accelerate launch -m item_cli.commands.cache ...`
    from ..cli import main

    sys.exit(main(["cache", *sys.argv[1:]]))
