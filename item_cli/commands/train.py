"""`item train --model DIR --data ROOT_OR_CSV --output_dir OUT [TrainingArguments ...]`.

Trains the head of an ITEM checkpoint with `transformers.Trainer`, on cached frozen features by default
(`--train-on images` to compute them every step, which train-time `--blur-prob` / `--jpeg-prob` need), keeps
the best epoch by the validation metric and writes a complete checkpoint folder to `--output_dir` (the folder
that was there is replaced only once the new one is complete). Every `TrainingArguments` field is an option
(`--learning_rate`, `--num_train_epochs`, `--bf16`, ...); `--resume_from_checkpoint true` resumes an interrupted
run exactly, from its last complete checkpoint. Prints the result as JSON on stdout (logs go to stderr).
Multi-GPU: `accelerate launch -m item_cli.cli train ...` (the cache is filled by all processes too).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ..args import SOURCE_OPTIONS, command_parser
from ..cache import STORAGE_DTYPES
from ..console import emit
from ..data import LAYOUTS
from ..evaluation.metrics import THRESHOLD_METHODS


@dataclass
class ItemTrainArguments:
    """ITEM's own options of `item train` (TrainingArguments' come beside them)."""

    model: str = field(metadata={"help": "ITEM checkpoint to start from (item build output, or a trained one)"})
    data: str = field(metadata={"help": "training data: CNNDetection/GenImage-style folder, "
                      "CSV manifest, or data set (hf:ORG/NAME, save_to_disk folder, Parquet/Arrow/.tar files)"})
    val_data: str | None = field(default=None, metadata={"help": "separate validation folder or CSV (default: "
                                 "GenImage's val folders, else a stratified --val-fraction of --data)"})
    val_fraction: float = field(default=0.1, metadata={"help": "share of --data held out for validation"})
    layout: str = field(default="auto", metadata={"choices": LAYOUTS, "help": "data layout (default: detected)"})
    split: str | None = field(default=None, metadata={"help": "GenImage: train on this split only (train/val)"})
    generator: str | None = field(default=None, metadata={"help": "one generator name for all images (e.g. progan)"})
    train_on: str = field(default="features", metadata={"choices": ["features", "images"], "help": "cached frozen "
                          "features (fast) or images (features every step; needed for augmentation)"})
    blur_prob: float = field(default=0.0, metadata={"help": "train-time Gaussian blur probability, sigma ~ U[0, 3]"})
    jpeg_prob: float = field(default=0.0, metadata={"help": "train-time JPEG probability, quality ~ U[30, 100]"})
    equalize: str | None = field(default=None, metadata={"help": "re-encode every image alike before anything "
                                 "sees it, e.g. jpeg:95, so that no file-format shortcut survives (evaluate with the same)"})
    calibrate: str = field(default="none", metadata={"choices": ["none", *THRESHOLD_METHODS], "help": "choose the "
                           "decision threshold on the validation set: balanced accuracy or a target FPR"})
    target_fpr: float | None = field(default=None, metadata={"help": "with --calibrate fpr, e.g. 0.05"})
    cache_dir: str | None = field(default=None, metadata={"help": "frozen-work cache (default $ITEM_CACHE or ~/.cache/item)"})
    cache_batch_size: int = field(default=16, metadata={"help": "images per batch when filling the cache"})
    feature_dtype: str = field(default="float16", metadata={"choices": STORAGE_DTYPES, "help": "storage dtype of cached features"})
    keep_trainer_checkpoints: bool = field(default=False, metadata={"help": "keep Trainer's checkpoint-N folders"})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of --model"})
    data_config: str | None = field(default=None, metadata={"help": SOURCE_OPTIONS["data_config"][1]})
    data_revision: str | None = field(default=None, metadata={"help": SOURCE_OPTIONS["data_revision"][1]})
    image_column: str | None = field(default=None, metadata={"help": SOURCE_OPTIONS["image_column"][1]})
    label_column: str | None = field(default=None, metadata={"help": SOURCE_OPTIONS["label_column"][1]})
    label_map: str | None = field(default=None, metadata={"help": SOURCE_OPTIONS["label_map"][1]})
    generator_column: str | None = field(default=None, metadata={"help": SOURCE_OPTIONS["generator_column"][1]})
    id_column: str | None = field(default=None, metadata={"help": SOURCE_OPTIONS["id_column"][1]})


def build_parser(prog):
    from transformers import HfArgumentParser, TrainingArguments

    from ..training import HEAD_TRAINING_DEFAULTS

    parser = command_parser(prog, __doc__, HfArgumentParser, dataclass_types=(ItemTrainArguments, TrainingArguments))
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
        raise ValueError("item train needs --output_dir: the folder the trained checkpoint is written to.")
    training_args = TrainingArguments(**_of(TrainingArguments, args))
    augmentation = Augmentation(blur_prob=options.blur_prob, jpeg_prob=options.jpeg_prob, seed=training_args.seed)
    result = train(
        options.model, options.data, training_args, val_data=options.val_data, val_fraction=options.val_fraction,
        train_on=options.train_on, augmentation=augmentation, cache_dir=options.cache_dir,
        cache_batch_size=options.cache_batch_size, storage_dtype=options.feature_dtype, layout=options.layout,
        split=options.split, generator=options.generator,
        calibrate=None if options.calibrate == "none" else options.calibrate, target_fpr=options.target_fpr,
        keep_checkpoints=options.keep_trainer_checkpoints, revision=options.revision,
        equalize=parse_equalize(options.equalize), data_options=source_options(options),
    )
    if PartialState().is_main_process:
        keys = ("output_dir", "train_images", "val_images", "results", "calibration", "skipped")
        emit(json.dumps(json_ready({key: result[key] for key in keys}), indent=2))
    return 0
