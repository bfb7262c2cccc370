"""Options that several commands share, each defined once."""

from __future__ import annotations

import argparse

from item_detector.images_item import MAX_IMAGE_PIXELS

from .cache import STORAGE_DTYPES
from .data import LAYOUTS
from .data.decode import DEFAULT_TIMEOUT_S


def command_parser(prog: str, doc: str, parser_class=argparse.ArgumentParser, **kwargs) -> argparse.ArgumentParser:
    """A command's parser: usage from its module docstring's first line, the rest as its description."""
    first, _, rest = (doc or "").strip().partition("\n")
    return parser_class(prog=prog, description=first.strip("`. ") + ("\n" + rest if rest else ""),
                        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def add_model(parser, help: str = "ITEM checkpoint folder or Hub id", required: bool = True) -> None:
    parser.add_argument("--model", required=required, help=help)
    parser.add_argument("--revision", default=None, help="Hub revision (commit) of the checkpoint to load")


DATA_HELP = ("data: CNNDetection/GenImage-style folder, CSV manifest, hf:ORG/NAME data set, save_to_disk folder, "
             "Parquet/Arrow/WebDataset .tar files or globs")


def add_data(parser, help: str = DATA_HELP, required: bool = True) -> None:
    parser.add_argument("--data", required=required, help=help)
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="data layout (default: detected)")
    parser.add_argument("--split", default=None, help=SPLIT_HELP)
    parser.add_argument("--generator", default=None, help="one generator name for all images (e.g. progan)")
    add_source_options(parser)


SPLIT_HELP = "a data set's split (e.g. test), or GenImage: use this folder split only (train / val)"


# The data-set options: (metavar, help), one text for every command (train's dataclass fields use them too).
SOURCE_OPTIONS = {
    "data_config": ("NAME", "the data set's configuration (subset)"),
    "data_revision": ("REV", "Hub revision (commit, tag) of an hf: data set"),
    "image_column": ("COLUMN", "column of the image bytes (default: the data set's Image column; WebDataset: "
                     "jpg/png/...)"),
    "label_column": ("COLUMN", "column of the labels: a ClassLabel with real/fake names, 0/1, or values mapped by "
                     "--label-map (default: 'label', 'cls', or the one ClassLabel; none: unlabelled)"),
    "label_map": ("VALUE=LABEL,...", "label values as real (0) or fake (1), e.g. real=0,fake=1 or human=real,sd15=fake"),
    "generator_column": ("COLUMN", "column naming each row's generator (default: the data set's name for every row)"),
    "id_column": ("COLUMN", "column of each row's identity in outputs (default: the row number; WebDataset: "
                  "shard/__key__)"),
}


def add_source_options(parser) -> None:
    """The options of a data-set SOURCE (hf:ORG/NAME, a save_to_disk folder, Parquet / Arrow / .tar files);
    `--split` is defined beside `--data`. `source_options(args)` gathers them."""
    group = parser.add_argument_group("data sets (hf:ORG/NAME, save_to_disk folders, Parquet, Arrow, WebDataset .tar)")
    for name, (metavar, text) in SOURCE_OPTIONS.items():
        group.add_argument("--" + name.replace("_", "-"), default=None, metavar=metavar, help=text)


def source_options(args):
    """The `SourceOptions` the data-set options give (`--split` included)."""
    from .data import SourceOptions

    return SourceOptions(config=args.data_config, split=args.split, revision=args.data_revision,
                         image_column=args.image_column, label_column=args.label_column, label_map=args.label_map,
                         generator_column=args.generator_column, id_column=args.id_column)


def add_cache(parser, batch_flag: str = "--batch-size") -> None:
    parser.add_argument("--cache-dir", default=None, help="cache folder (default $ITEM_CACHE or ~/.cache/item)")
    parser.add_argument(batch_flag, type=positive_int, default=16, dest="batch_size",
                        help="images per batch for the frozen networks")
    parser.add_argument("--feature-dtype", choices=STORAGE_DTYPES, default="float16", help="storage dtype of cached features")
    add_decoding(parser)


def add_decoding(parser) -> None:
    parser.add_argument("--decode-workers", type=positive_int, default=2, help="processes that decode image files")
    parser.add_argument("--decode-timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="seconds one image may take to decode before it is skipped")
    parser.add_argument("--max-image-pixels", type=positive_int, default=MAX_IMAGE_PIXELS, metavar="N",
                        help=f"largest image decoded, in pixels (width x height); a larger file is skipped as a possible "
                             f"decompression bomb (default {MAX_IMAGE_PIXELS:,})")


def cache_options(args) -> dict:
    """The `frozen_rows` keyword arguments the cache options give."""
    return dict(cache_dir=args.cache_dir, batch_size=args.batch_size, storage_dtype=args.feature_dtype,
                decode_workers=args.decode_workers, decode_timeout_s=args.decode_timeout,
                max_image_pixels=args.max_image_pixels)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value
