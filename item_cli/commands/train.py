"""`item train --model M --data SOURCE --output DIR [--epochs N] [--learning-rate LR] [Trainer's options ...]`.

Trains the head of an ITEM checkpoint with transformers.Trainer, on cached frozen features by default
(--train-on images to compute them every step, which train-time --blur-prob / --jpeg-prob need), keeps the
best epoch by the validation metric and writes a complete checkpoint folder to --output (the folder that was
there is replaced only once the new one is complete). Every TrainingArguments field is an option too, spelled
with dashes (--metric-for-best-model, --bf16, ...; Trainer's own spellings such as --num_train_epochs,
--learning_rate, --output_dir are accepted as well); --resume-from-checkpoint true resumes an interrupted run
exactly, from its last complete checkpoint. Prints the result as JSON on stdout (logs go to stderr).
Multi-GPU: accelerate launch -m item_cli.cli train ... (the cache is filled by all processes too).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field

from ..args import SHARED, command_parser, shared_field
from ..console import emit
from ..evaluation.metrics import THRESHOLD_METHODS


@dataclass
class ItemTrainArguments:
    """ITEM's own options of `item train` (TrainingArguments' come beside them)."""

    model: str = field(metadata=shared_field("--model"))
    data: str = field(metadata=shared_field("--data"))
    val_data: str | None = field(default=None, metadata=shared_field("--val-data"))
    val_fraction: float = field(default=0.1, metadata=shared_field("--val-fraction"))
    layout: str = field(default="auto", metadata=shared_field("--layout"))
    split: str | None = field(default=None, metadata=shared_field("--split"))
    generator: str | None = field(default=None, metadata=shared_field("--generator"))
    train_on: str = field(default="features", metadata={"choices": ["features", "images"], "help": "cached frozen "
                          "features (fast) or images (features every step; needed for augmentation)"})
    blur_prob: float = field(default=0.0, metadata={"help": "train-time Gaussian blur probability, sigma ~ U[0, 3]"})
    jpeg_prob: float = field(default=0.0, metadata={"help": "train-time JPEG probability, quality ~ U[30, 100]"})
    equalize: str | None = field(default=None, metadata=shared_field("--equalize"))
    calibrate: str = field(default="none", metadata={"choices": ["none", *THRESHOLD_METHODS], "help": "choose the "
                           "decision threshold on the validation set: balanced accuracy or a target FPR"})
    target_fpr: float | None = field(default=None, metadata=shared_field("--target-fpr"))
    cache_dir: str | None = field(default=None, metadata=shared_field("--cache-dir"))
    batch_size: int = field(default=SHARED["--batch-size"].default, metadata=shared_field("--batch-size"))
    feature_dtype: str = field(default="float16", metadata=shared_field("--feature-dtype"))
    decode_workers: int = field(default=2, metadata=shared_field("--decode-workers"))
    decode_timeout: float = field(default=SHARED["--decode-timeout"].default,
                                  metadata=shared_field("--decode-timeout"))
    keep_trainer_checkpoints: bool = field(default=False, metadata={"help": "keep Trainer's checkpoint-N folders"})
    revision: str | None = field(default=None, metadata=shared_field("--revision"))
    data_config: str | None = field(default=None, metadata=shared_field("--data-config"))
    data_revision: str | None = field(default=None, metadata=shared_field("--data-revision"))
    image_column: str | None = field(default=None, metadata=shared_field("--image-column"))
    label_column: str | None = field(default=None, metadata=shared_field("--label-column"))
    label_map: str | None = field(default=None, metadata=shared_field("--label-map"))
    generator_column: str | None = field(default=None, metadata=shared_field("--generator-column"))
    id_column: str | None = field(default=None, metadata=shared_field("--id-column"))


# The vocabulary's names of Trainer's options: (shared option, TrainingArguments field). Trainer's own spelling
# stays accepted, hidden from --help.
TRAINER_ALIASES = (("--output", "output_dir"), ("--epochs", "num_train_epochs"),
                   ("--head-batch-size", "per_device_train_batch_size"))
# Trainer's options whose dashed spelling is the vocabulary's: their help becomes the shared one.
TRAINER_SHARED = (("--learning-rate", "learning_rate"), ("--weight-decay", "weight_decay"), ("--seed", "seed"))
OUTPUT_HELP = "folder to write the trained checkpoint to (replaced only when the new one is complete)"


def build_parser(prog):
    from transformers import HfArgumentParser, TrainingArguments

    from ..training import HEAD_TRAINING_DEFAULTS

    parser = command_parser(prog, __doc__, HfArgumentParser, dataclass_types=(ItemTrainArguments, TrainingArguments),
                            usage=f"{prog} --model M --data SOURCE --output DIR [options]")
    # HfArgumentParser adds the fields' options itself; argparse lists them only in `_actions` (no public accessor).
    by_dest = {action.dest: action for action in parser._actions}  # noqa: SLF001
    for name, dest in TRAINER_ALIASES:
        option = SHARED.get(name)
        by_dest[dest].help = argparse.SUPPRESS
        parser.add_argument(name, dest=dest, type=option.type if option else str, default=None,
                            metavar=option.metavar if option else "DIR", help=option.help if option else OUTPUT_HELP)
    for name, dest in TRAINER_SHARED:
        by_dest[dest].help, by_dest[dest].metavar = SHARED[name].help, SHARED[name].metavar
    # --help lists ITEM's options (and the vocabulary's names of Trainer's) first, then Trainer's own.
    ours = {f.name for f in dataclasses.fields(ItemTrainArguments)} | {dest for _, dest in TRAINER_ALIASES + TRAINER_SHARED}
    listed = parser._optionals._group_actions  # noqa: SLF001 - argparse has no public way to order --help
    listed.sort(key=lambda action: action.dest not in ours and action.dest not in ("help", "verbose"))
    for action in parser._actions:  # noqa: SLF001
        # `--a_b` and `--a-b` are one option: --help shows the dashed spelling only, both are accepted
        dashed = [flag for flag in action.option_strings if "_" not in flag]
        if dashed and len(dashed) < len(action.option_strings):
            action.option_strings = dashed
    parser.set_defaults(**HEAD_TRAINING_DEFAULTS)
    return parser


def _of(dataclass_type, args) -> dict:
    names = {f.name for f in dataclasses.fields(dataclass_type) if f.init}
    return {name: value for name, value in vars(args).items() if name in names}


def run(args) -> int:
    from accelerate import PartialState
    from transformers import TrainingArguments

    from ..args import source_options
    from ..data.perturb import Augmentation, parse_equalize
    from ..evaluation.report import json_ready
    from ..training import train

    options = ItemTrainArguments(**_of(ItemTrainArguments, args))
    if args.output_dir is None:
        raise ValueError("item train needs --output DIR: the folder the trained checkpoint is written to.")
    training_args = TrainingArguments(**_of(TrainingArguments, args))
    augmentation = Augmentation(blur_prob=options.blur_prob, jpeg_prob=options.jpeg_prob, seed=training_args.seed)
    result = train(
        options.model, options.data, training_args, val_data=options.val_data, val_fraction=options.val_fraction,
        train_on=options.train_on, augmentation=augmentation, cache_dir=options.cache_dir,
        batch_size=options.batch_size, decode_workers=options.decode_workers, decode_timeout_s=options.decode_timeout,
        storage_dtype=options.feature_dtype, layout=options.layout, split=options.split, generator=options.generator,
        calibrate=None if options.calibrate == "none" else options.calibrate, target_fpr=options.target_fpr,
        keep_checkpoints=options.keep_trainer_checkpoints, revision=options.revision,
        equalize=parse_equalize(options.equalize), data_options=source_options(options),
    )
    if PartialState().is_main_process:
        keys = ("output_dir", "train_images", "val_images", "results", "calibration", "skipped")
        emit(json.dumps(json_ready({key: result[key] for key in keys}), indent=2))
    return 0
