"""Detection metrics as the field reports them, and decision-threshold selection.

Labels are 0 = real, 1 = fake; scores are fake probabilities; an image is called fake when its score is at
or above the threshold. The ranking and probability metrics are scikit-learn's (imported where used, so
that importing this module stays cheap); calibration and decision metrics are in `calibration.py`.
"""

from __future__ import annotations

import math

import numpy as np

from .calibration import ECE_BINS, FAR_TARGETS, decision_metrics, label_score_arrays

THRESHOLD_METHODS = ("balanced", "fpr")


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    return label_score_arrays(labels, scores)


def accuracy_real(labels, scores, threshold: float = 0.5) -> float:
    """Share of real images (label 0) scored below `threshold`; NaN when there are none."""
    labels, scores = _arrays(labels, scores)
    real = scores[labels == 0]
    return float((real < threshold).mean()) if real.size else math.nan


def accuracy_fake(labels, scores, threshold: float = 0.5) -> float:
    """Share of fake images (label 1) scored at or above `threshold`; NaN when there are none."""
    labels, scores = _arrays(labels, scores)
    fake = scores[labels == 1]
    return float((fake >= threshold).mean()) if fake.size else math.nan


def accuracy(labels, scores, threshold: float = 0.5) -> float:
    """Share of all images classified correctly at `threshold`."""
    labels, scores = _arrays(labels, scores)
    return float(((scores >= threshold).astype(np.int64) == labels).mean()) if labels.size else math.nan


def average_precision(labels, scores) -> float:
    """Average precision as scikit-learn's `average_precision_score` computes it (sum over thresholds of
    (R_n - R_{n-1}) * P_n, tied scores one threshold, no interpolation). NaN when there is no fake image."""
    from sklearn.metrics import average_precision_score

    labels, scores = _arrays(labels, scores)
    if labels.sum() == 0:
        return math.nan
    return float(average_precision_score(labels, scores))


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (scikit-learn's `roc_auc_score`): the probability that a fake image outscores
    a real one, ties counting half. NaN when only one class is present (scikit-learn raises there instead)."""
    from sklearn.metrics import roc_auc_score

    labels, scores = _arrays(labels, scores)
    if labels.sum() == 0 or (labels == 0).sum() == 0:
        return math.nan
    return float(roc_auc_score(labels, scores))


def _operating_points(labels: np.ndarray, scores: np.ndarray):
    """Candidate thresholds (midpoints between distinct scores, and beyond both ends) with FPR and TPR."""
    distinct = np.unique(scores)
    below = max(0.0, float(distinct[0]) - 1e-6) if distinct[0] > 0 else 0.0
    above = min(1.0, float(np.nextafter(distinct[-1], np.inf)))
    thresholds = np.r_[below, (distinct[:-1] + distinct[1:]) / 2.0, above]
    thresholds = np.unique(np.clip(thresholds, 0.0, 1.0))
    real, fake = np.sort(scores[labels == 0]), np.sort(scores[labels == 1])
    # Share of each class at or above each threshold.
    fpr = (real.size - np.searchsorted(real, thresholds, side="left")) / max(real.size, 1)
    tpr = (fake.size - np.searchsorted(fake, thresholds, side="left")) / max(fake.size, 1)
    return thresholds, fpr, tpr


def oracle_accuracy(labels, scores) -> tuple[float, float]:
    """The best accuracy any single threshold reaches on these scores, and that threshold.

    UniversalFakeDetect reports it to show how far the fixed threshold is from calibrated.
    """
    labels, scores = _arrays(labels, scores)
    if not labels.size:
        return math.nan, math.nan
    thresholds, fpr, tpr = _operating_points(labels, scores)
    n_real, n_fake = int((labels == 0).sum()), int(labels.sum())
    correct = (1.0 - fpr) * n_real + tpr * n_fake
    best = int(np.argmax(correct))
    return float(correct[best] / labels.size), float(thresholds[best])


def choose_threshold(labels, scores, method: str = "balanced", target_fpr: float | None = None) -> dict:
    """Choose a decision threshold on validation scores.

    Args:
        method: "balanced" maximises balanced accuracy (mean of the accuracies on real and on fake images);
            "fpr" takes the lowest threshold whose false-positive rate on real images is at most `target_fpr`
            (the most fakes caught for that many real images flagged).
        target_fpr: for "fpr", e.g. 0.05 flags at most 5 % of the real validation images as fake.

    Returns:
        dict with `threshold` and, on this data, `fpr`, `tpr`, `balanced_accuracy`, `accuracy`, counts.
        Thresholds sit halfway between neighbouring validation scores, so they do not hinge on one image.
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"method={method!r}; choose one of {THRESHOLD_METHODS}.")
    labels, scores = _arrays(labels, scores)
    n_real, n_fake = int((labels == 0).sum()), int(labels.sum())
    if n_real == 0 or n_fake == 0:
        raise ValueError(
            f"Threshold calibration needs real and fake validation images; got {n_real} real and {n_fake} fake."
        )
    thresholds, fpr, tpr = _operating_points(labels, scores)
    balanced = (1.0 - fpr + tpr) / 2.0
    if method == "balanced":
        best = int(np.argmax(balanced))  # the lowest threshold among equally good ones
    else:
        if target_fpr is None or not 0.0 <= target_fpr <= 1.0:
            raise ValueError(f"method='fpr' needs target_fpr in [0, 1] (e.g. 0.05), got {target_fpr!r}.")
        allowed = np.flatnonzero(fpr <= target_fpr + 1e-12)
        best = int(allowed[0])  # FPR falls as the threshold rises: the first allowed one catches most fakes
    threshold = float(thresholds[best])
    result = {
        "method": method,
        "threshold": threshold,
        "fpr": float(fpr[best]),
        "tpr": float(tpr[best]),
        "balanced_accuracy": float(balanced[best]),
        "accuracy": accuracy(labels, scores, threshold),
        "n_real": n_real,
        "n_fake": n_fake,
    }
    if method == "fpr":
        result["target_fpr"] = float(target_fpr)
    return result


def detection_metrics(labels, scores, threshold: float = 0.5) -> dict:
    """All per-group numbers of a results table: counts, accuracies, AP, ROC-AUC, oracle accuracy, and the
    decision and calibration metrics of `calibration.decision_metrics` (balanced accuracy, ECE, NLL, Brier, EER,
    Pd@1/5/10 % FAR).

    A group with one class only has no AP, ROC-AUC, oracle accuracy, EER, Pd@FAR or balanced accuracy (NaN):
    with no real image to rank below them, every fake scores AP 1.0 whatever the detector does, and any
    threshold under all scores is "best". Its accuracy on the class it has (and overall ACC), ECE, NLL and Brier
    score are still reported.
    """
    labels, scores = _arrays(labels, scores)
    n_real, n_fake = int((labels == 0).sum()), int(labels.sum())
    both = n_real > 0 and n_fake > 0
    oracle, oracle_threshold = oracle_accuracy(labels, scores) if both else (math.nan, math.nan)
    return {
        "n_real": n_real,
        "n_fake": n_fake,
        "acc_real": accuracy_real(labels, scores, threshold),
        "acc_fake": accuracy_fake(labels, scores, threshold),
        "acc": accuracy(labels, scores, threshold),
        "ap": average_precision(labels, scores) if both else math.nan,
        "roc_auc": roc_auc(labels, scores),
        "oracle_acc": oracle,
        "oracle_threshold": oracle_threshold,
        "threshold": float(threshold),
        **decision_metrics(labels, scores, threshold),
    }


METRIC_COLUMNS = ("acc_real", "acc_fake", "acc", "ap", "roc_auc", "oracle_acc", "balanced_acc", "ece", "nll", "brier",
                  "eer", *FAR_TARGETS)
# The metrics a one-class group cannot have; the mean row leaves such groups out of these (see `mean_row`).
TWO_CLASS_METRICS = ("ap", "roc_auc", "oracle_acc", "balanced_acc", "eer", *FAR_TARGETS)
# Metrics where lower is better (errors and losses): the "worst" row takes their maximum, not their minimum.
LOWER_IS_BETTER = ("ece", "nll", "brier", "eer")
# How the metrics are defined, written into metrics.json beside the numbers.
METRIC_DEFINITIONS = {
    "ece": f"expected calibration error of p(fake), {ECE_BINS} equal-width bins over [0, 1] (scikit-learn's "
           "calibration_curve bins): sum over bins of (bin share of images) * |share of fakes - mean p(fake)|",
    "nll": "mean negative log-likelihood of the true label, natural log (scikit-learn log_loss)",
    "brier": "mean squared difference between p(fake) and the label (scikit-learn brier_score_loss)",
    "eer": "false-positive rate where it equals the false-negative rate, ROC curve (scikit-learn roc_curve) joined "
           "by straight lines",
    **{key: f"highest TPR among ROC operating points with FPR <= {target:g} (the lowest threshold that flags at most "
            f"{100 * target:g} % of real images), no interpolation" for key, target in FAR_TARGETS.items()},
    "balanced_acc": "mean of ACC real and ACC fake at the threshold (scikit-learn balanced_accuracy_score)",
    "min_acc": "the lowest ACC over the groups (sets or generators), beside the mean ACC, as DDA reports",
}


def one_class(row: dict) -> bool:
    """True for a group that holds only real or only fake images."""
    return row["n_real"] == 0 or row["n_fake"] == 0


def mean_row(rows: list[dict] | dict[str, dict]) -> dict:
    """The field's mean row: the mean over groups (generators or sets) of each metric, with summed counts.

    The rule: every metric averages over the groups where it is defined. ACC, ECE, NLL and Brier average over
    every group; ACC real (ACC fake) over the groups with real (fake) images; AP, ROC-AUC, oracle ACC, balanced
    ACC, EER and Pd@FAR over the groups with both classes only, so a one-class set neither inflates nor lowers the
    mean AP. `averaged` says how many groups each mean covers and `left_out` names the groups left out of each
    (given a dict of named rows). `min_acc` is the lowest ACC of any group and `min_acc_group` its name.
    """
    named = rows if isinstance(rows, dict) else {str(i): row for i, row in enumerate(rows)}
    out = {"n_real": sum(row["n_real"] for row in named.values()), "n_fake": sum(row["n_fake"] for row in named.values())}
    averaged, left_out = {}, {}
    for key in METRIC_COLUMNS:
        kept = {name: row[key] for name, row in named.items() if not math.isnan(row[key])}
        out[key] = float(np.mean(list(kept.values()))) if kept else math.nan
        averaged[key] = len(kept)
        left_out[key] = [name for name in named if name not in kept] if isinstance(rows, dict) else []
    worst = worst_row(named)
    out["min_acc"], out["min_acc_group"] = worst["acc"], worst["groups"]["acc"]
    out["oracle_threshold"] = math.nan
    out["threshold"] = next(iter(named.values()))["threshold"] if named else math.nan
    out["averaged"], out["left_out"] = averaged, left_out
    return out


def worst_row(rows: dict[str, dict]) -> dict:
    """Per metric, the worst value over the groups where it is defined (the lowest accuracy, AP, AUC or Pd; the
    highest ECE, NLL, Brier or EER), and in `groups` which group has it. Its "acc" is DDA's minimum accuracy."""
    from .abstention import BAND_COLUMNS  # here: abstention builds on this module

    out = {"groups": {}}
    band = tuple(key for key in BAND_COLUMNS if rows and all(key in row for row in rows.values()))
    for key in METRIC_COLUMNS + band:  # coverage and covered ACC too, where the checkpoint has an unsure band
        kept = {name: row[key] for name, row in rows.items() if not math.isnan(row[key])}
        if not kept:
            out[key], out["groups"][key] = math.nan, None
            continue
        pick = max if key in LOWER_IS_BETTER else min
        name = pick(kept, key=kept.get)
        out[key], out["groups"][key] = float(kept[name]), name
    return out
