"""`item calibrate --model DIR --data VALIDATION_SOURCE [--method balanced | --method fpr --target-fpr 0.05]`.

Scores labelled validation images, chooses the decision threshold (best balanced accuracy, or the lowest
threshold whose false-positive rate on the real images is at most the target), and stores it in the
checkpoint's config.json (`decision_threshold`, plus `threshold_calibration` saying how and on what) and
model card. `item detect` and `pipe(..., explain=True)` then call an image fake at that threshold; the
pipeline's probabilities do not change.

`--unsure-error E` also chooses an abstention band [low, high] around that threshold: the band that leaves the most
validation images decided while at most a share E of the decided ones is wrong; `--unsure-coverage C` the band
that decides a share C of them with the fewest errors (see `item_cli.evaluation.abstention`). Images inside the
band get the verdict "unsure". The band goes into config.json (`unsure_band`, `unsure_calibration`). Calibrating
without either option removes a band chosen before (it was chosen around the old threshold).
"""

import json
import shutil
from pathlib import Path

from ..args import add_cache, add_data, add_options, cache_options, command_parser, source_options
from ..console import emit, report_skipped, status
from ..evaluation.metrics import THRESHOLD_METHODS


def build_parser(prog):
    parser = command_parser(prog, __doc__)
    add_options(parser, "--model", model={"required": True})  # a local folder: its config.json is updated
    add_data(parser)
    parser.add_argument("--method", choices=THRESHOLD_METHODS, default="balanced",
                        help="balanced: best balanced accuracy; fpr: at most --target-fpr of the real images flagged")
    add_options(parser, "--target-fpr")
    parser.add_argument("--unsure-error", type=float, default=None, metavar="E",
                        help="also choose an unsure band: the widest coverage with at most this error rate outside "
                             "it on the validation data, e.g. 0.02")
    parser.add_argument("--unsure-coverage", type=float, default=None, metavar="C",
                        help="also choose an unsure band that decides this share of the validation images, e.g. 0.9")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="write a calibrated copy of the checkpoint here (default: update --model in place)")
    add_cache(parser)
    return parser


def calibrate(model_dir, data, method="balanced", target_fpr=None, output=None, layout="auto", split=None,
              generator=None, unsure_error=None, unsure_coverage=None, data_options=None, **cache) -> dict:
    """Score `data` with the checkpoint, choose the threshold (and with `unsure_error` or `unsure_coverage` the
    unsure band, under "unsure"), store them; returns the calibration dict ({} on the other processes under
    accelerate launch)."""
    from ..cache import process_state
    from ..checkpoint import calibrate_checkpoint, load_checkpoint, staged_folder
    from ..data import load_records, require_labels
    from ..data.sources import SourceOptions, source_label
    from ..evaluation.abstention import check_band_targets, choose_band
    from ..evaluation.evaluate import score
    from ..evaluation.metrics import choose_threshold
    from ..model_source import check_model_source
    from ..train_checks import require_both_classes

    check_band_targets(unsure_error, unsure_coverage)
    if method == "fpr" and target_fpr is None:
        raise ValueError("--method fpr needs --target-fpr, e.g. --target-fpr 0.05 (at most 5 % of real images flagged).")
    if target_fpr is not None and method != "fpr":
        raise ValueError(f"--target-fpr {target_fpr} applies to --method fpr only; add it, or drop --target-fpr.")
    check_model_source(model_dir)
    if not Path(model_dir).is_dir():
        raise ValueError(f"--model {model_dir} is not a local checkpoint folder; calibration writes into its config.json.")
    state = process_state()
    records, skipped = load_records(data, layout=layout, split=split, generator=generator, options=data_options)
    require_labels(records, "calibration")
    require_both_classes(records, "validation data", "--data")  # before any network runs
    model, processor = load_checkpoint(model_dir)
    rows, scores = score(model, processor, records, state=state, **cache)
    report_skipped(skipped + rows.skipped)
    if not state.is_main_process:
        return {}
    calibration = choose_threshold(rows.labels, scores, method, target_fpr)
    # The data's name (a Hub id, or a local folder's or file's own name), never a folder of this machine.
    calibration["data"] = source_label(str(data), data_options or SourceOptions())
    if unsure_error is not None or unsure_coverage is not None:
        band = choose_band(rows.labels, scores, calibration["threshold"], unsure_error, unsure_coverage)
        calibration["unsure"] = {**band, "data": calibration["data"]}
    if output is None:
        calibrate_checkpoint(model_dir, calibration)
    else:
        with staged_folder(output) as folder:
            shutil.copytree(model_dir, folder, dirs_exist_ok=True)
            calibrate_checkpoint(folder, calibration)
    return calibration


def run(args) -> int:
    result = calibrate(args.model, args.data, args.method, args.target_fpr, args.output, args.layout, args.split,
                       args.generator, args.unsure_error, args.unsure_coverage, source_options(args),
                       **cache_options(args))
    if result:
        emit(json.dumps(result, indent=2))
        status(f"decision_threshold = {result['threshold']:.6g} written to {args.output or args.model}/config.json")
        if "unsure" in result:
            band = result["unsure"]
            status(f"unsure_band = [{band['band'][0]:.6g}, {band['band'][1]:.6g}]: {100 * band['coverage']:.1f} % of "
                   f"the validation images decided, {100 * band['covered_error']:.2f} % of those wrong")
    return 0
