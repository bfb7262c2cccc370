"""`item train --model DIR --data ROOT_OR_CSV --output_dir OUT [TrainingArguments ...]`.

Trains the head of an ITEM checkpoint with `transformers.Trainer`, on cached frozen features by default
(`--train-on images` to compute them every step, which train-time `--blur-prob` / `--jpeg-prob` need), keeps
the best epoch by the validation metric and writes a complete checkpoint folder to `--output_dir`.
Every `TrainingArguments` field is an option (`--learning_rate`, `--num_train_epochs`, `--bf16`, ...).
Multi-GPU: `accelerate launch -m item_cli.cli train ...` (the caches shard across the processes too).
"""

import dataclasses
import json
import sys
import typing

from ..cache import FEATURE_DTYPES
from ..data import LAYOUTS
from ..metrics import THRESHOLD_METHODS


def add_training_arguments(parser) -> None:
    """Every `TrainingArguments` field as an option of `parser`, with ITEM's head-training defaults."""
    from transformers import HfArgumentParser, TrainingArguments

    from ..training import HEAD_TRAINING_DEFAULTS

    group = parser.add_argument_group("TrainingArguments (transformers), with ITEM's head-training defaults")
    hints = typing.get_type_hints(TrainingArguments)
    for field in dataclasses.fields(TrainingArguments):
        if not field.init or field.name == "output_dir":
            continue
        field.type = hints[field.name]
        HfArgumentParser._parse_dataclass_field(group, field)
    parser.set_defaults(**HEAD_TRAINING_DEFAULTS)


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="ITEM checkpoint to start from (item build output, or a trained one)")
    parser.add_argument("--data", required=True, help="training data: CNNDetection/GenImage-style folder or CSV manifest")
    parser.add_argument("--output_dir", "--output-dir", "--output", dest="output_dir", required=True,
                        help="folder for the trained checkpoint (Trainer's own checkpoints go to a sub-folder, removed at the end)")
    parser.add_argument("--val-data", default=None, help="separate validation folder or CSV (default: GenImage's val folders, "
                        "else a stratified --val-fraction of --data)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--layout", choices=LAYOUTS, default="auto")
    parser.add_argument("--split", default=None, help="GenImage: train on this split only (train/val)")
    parser.add_argument("--generator", default=None,
                        help="one generator name for all images (e.g. progan for CNNDetection's progan_train/<category>/...)")
    parser.add_argument("--train-on", choices=("features", "images"), default="features",
                        help="cached frozen features (fast) or images (features every step; needed for augmentation)")
    parser.add_argument("--blur-prob", type=float, default=0.0, help="train-time Gaussian blur probability, sigma ~ U[0, 3]")
    parser.add_argument("--jpeg-prob", type=float, default=0.0, help="train-time JPEG probability, quality ~ U[30, 100]")
    parser.add_argument("--calibrate", choices=("none", *THRESHOLD_METHODS), default="none",
                        help="choose the decision threshold on the validation set: balanced accuracy or a target FPR")
    parser.add_argument("--target-fpr", type=float, default=None, help="with --calibrate fpr, e.g. 0.05")
    parser.add_argument("--cache-dir", default=None, help="where captions/boxes and features are cached (default ~/.cache/item)")
    parser.add_argument("--cache-batch-size", type=int, default=16, help="images per batch when filling the caches")
    parser.add_argument("--feature-dtype", choices=FEATURE_DTYPES, default="float16", help="storage dtype of cached features")
    parser.add_argument("--keep-trainer-checkpoints", action="store_true", help="keep Trainer's checkpoint-N folders")
    parser.add_argument("--revision", default=None, help="Hub revision of --model")
    add_training_arguments(parser)


def run(args) -> int:
    from transformers import TrainingArguments

    from ..perturb import Augmentation
    from ..training import train

    fields = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    options = {name: value for name, value in vars(args).items() if name in fields}
    try:
        training_args = TrainingArguments(**options)
        augmentation = Augmentation(blur_prob=args.blur_prob, jpeg_prob=args.jpeg_prob, seed=training_args.seed)
        result = train(
            args.model, args.data, training_args, val_data=args.val_data, val_fraction=args.val_fraction,
            train_on=args.train_on, augmentation=augmentation, cache_dir=args.cache_dir,
            cache_batch_size=args.cache_batch_size, feature_dtype=args.feature_dtype, layout=args.layout,
            split=args.split, generator=args.generator, calibrate=None if args.calibrate == "none" else args.calibrate,
            target_fpr=args.target_fpr, keep_checkpoints=args.keep_trainer_checkpoints, revision=args.revision,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    from ..training import nan_to_none

    if not PartialState().is_main_process:
        return 0
    print(json.dumps(nan_to_none({key: result[key] for key in ("output_dir", "train_images", "val_images", "results", "calibration")}),
                     indent=2))
    return 0
