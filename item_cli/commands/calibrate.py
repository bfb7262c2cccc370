"""`item calibrate --model DIR --data VAL_ROOT_OR_CSV [--method balanced | --method fpr --target-fpr 0.05]`.

Scores labelled validation images, chooses the decision threshold (best balanced accuracy, or the lowest
threshold whose false-positive rate on the real images is at most the target), and stores it in the
checkpoint's config.json (`decision_threshold`, plus `threshold_calibration` saying how and on what) and
model card. `item detect` and `pipe(..., explain=True)` then call an image fake at that threshold; the
pipeline's probabilities do not change.
"""

import json
import shutil
import sys
from pathlib import Path

from ..cache import FEATURE_DTYPES
from ..data import LAYOUTS
from ..metrics import THRESHOLD_METHODS


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="ITEM checkpoint folder (updated in place unless --output)")
    parser.add_argument("--data", required=True, help="labelled validation data: folder or CSV manifest (not the test set)")
    parser.add_argument("--method", choices=THRESHOLD_METHODS, default="balanced",
                        help="balanced: best balanced accuracy; fpr: at most --target-fpr of the real images flagged")
    parser.add_argument("--target-fpr", type=float, default=None, help="with --method fpr, e.g. 0.05")
    parser.add_argument("--output", default=None, help="write a calibrated copy of the checkpoint here instead")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto")
    parser.add_argument("--split", default=None, help="GenImage: use this split (e.g. val)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--feature-dtype", choices=FEATURE_DTYPES, default="float16")


def calibrate(model_dir, data, method="balanced", target_fpr=None, output=None, layout="auto", split=None,
              cache_dir=None, batch_size=16, feature_dtype="float16") -> dict:
    """Score `data` with the checkpoint, choose the threshold, store it; returns the calibration dict."""
    import numpy as np

    from ..cache import _state
    from ..data import load_dataset, require_labels
    from ..evaluation import score
    from ..training import _load, calibrate_checkpoint

    if method == "fpr" and target_fpr is None:
        raise ValueError("--method fpr needs --target-fpr, e.g. --target-fpr 0.05 (at most 5 % of real images flagged).")
    if not Path(model_dir).is_dir():
        raise ValueError(f"--model {model_dir!r} is not a local checkpoint folder; calibration writes into its config.json.")
    state = _state()
    errors = []
    dataset = load_dataset(data, layout=layout, split=split, errors=errors)
    require_labels(dataset, "calibration")
    model, processor = _load(model_dir)
    featured, scores = score(model, processor, dataset, cache_dir, batch_size, None, feature_dtype, errors, state)
    if not state.is_main_process:
        return {}
    target = Path(model_dir)
    if output is not None:
        shutil.copytree(model_dir, output, dirs_exist_ok=True)
        target = Path(output)
    return calibrate_checkpoint(target, np.asarray(featured["label"]), scores, method, target_fpr, data)


def run(args) -> int:
    try:
        result = calibrate(args.model, args.data, args.method, args.target_fpr, args.output, args.layout, args.split,
                           args.cache_dir, args.batch_size, args.feature_dtype)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if result:
        print(json.dumps(result, indent=2))
        print(f"decision_threshold = {result['threshold']:.6g} written to {args.output or args.model}/config.json",
              file=sys.stderr)
    return 0
