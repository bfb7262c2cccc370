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


def add_model(parser, help: str = "ITEM checkpoint folder or Hub id") -> None:
    parser.add_argument("--model", required=True, help=help)
    parser.add_argument("--revision", default=None, help="Hub revision (commit) of the checkpoint to load")


def add_data(parser, help: str = "data: CNNDetection/GenImage-style folder or CSV manifest", required: bool = True) -> None:
    parser.add_argument("--data", required=required, help=help)
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="data layout (default: detected)")
    parser.add_argument("--split", default=None, help="GenImage: use this split only (train / val)")
    parser.add_argument("--generator", default=None, help="one generator name for all images (e.g. progan)")


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
