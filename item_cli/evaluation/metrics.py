"""Detection metrics as the field reports them, and decision-threshold selection.

Labels are 0 = real, 1 = fake; scores are fake probabilities; an image is called fake when its score is at
or above the threshold. `average_precision` and `roc_auc` compute what scikit-learn's
`average_precision_score` and `roc_auc_score` compute (tested against both), without needing it.
"""

from __future__ import annotations

import math

import numpy as np

THRESHOLD_METHODS = ("balanced", "fpr")


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"Got {labels.size} labels but {scores.size} scores; pass one score per label.")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"Labels must be 0 (real) or 1 (fake); got {sorted(set(labels.tolist()) - {0, 1})}.")
    if np.isnan(scores).any():
        raise ValueError("Scores contain NaN; every image needs a fake probability.")
    return labels, scores


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
    """Average precision, sum over thresholds of (R_n - R_{n-1}) * P_n, as scikit-learn computes it.

    Tied scores form one threshold (no interpolation). NaN when there is no fake image.
    """
    labels, scores = _arrays(labels, scores)
    positives = labels.sum()
    if positives == 0:
        return math.nan
    order = np.argsort(-scores, kind="mergesort")
    labels, scores = labels[order], scores[order]
    # The last index of each run of tied scores: one operating point per distinct score.
    last = np.r_[np.flatnonzero(np.diff(scores)), labels.size - 1]
    true_positives = np.cumsum(labels)[last]
    predicted = last + 1
    precision = true_positives / predicted
    recall = true_positives / positives
    recall_step = np.diff(np.r_[0.0, recall])
    return float((recall_step * precision).sum())


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: the probability that a fake image outscores a real one (ties count half).

    NaN when only one class is present (scikit-learn raises there instead).
    """
    labels, scores = _arrays(labels, scores)
    n_fake, n_real = int(labels.sum()), int((labels == 0).sum())
    if n_fake == 0 or n_real == 0:
        return math.nan
    # Mann-Whitney U with average ranks for ties.
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(labels.size, dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], labels.size]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0  # ranks are 1-based
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - n_fake * (n_fake + 1) / 2.0) / (n_fake * n_real))


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
    """All per-group numbers of a results table: counts, accuracies, AP, ROC-AUC, oracle accuracy.

    A group with one class only has no AP, ROC-AUC or oracle accuracy (NaN): with no real image to rank below
    them, every fake scores AP 1.0 whatever the detector does, and any threshold under all scores is "best".
    Its accuracy on the class it has (and overall ACC) is still reported.
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
    }


METRIC_COLUMNS = ("acc_real", "acc_fake", "acc", "ap", "roc_auc", "oracle_acc")
# The metrics a one-class group cannot have; the mean row leaves such groups out of these (see `mean_row`).
TWO_CLASS_METRICS = ("ap", "roc_auc", "oracle_acc")


def one_class(row: dict) -> bool:
    """True for a group that holds only real or only fake images."""
    return row["n_real"] == 0 or row["n_fake"] == 0


def mean_row(rows: list[dict] | dict[str, dict]) -> dict:
    """The field's mean row: the mean over groups (generators or sets) of each metric, with summed counts.

    The rule: every metric averages over the groups where it is defined. ACC averages over every group;
    ACC real (ACC fake) over the groups with real (fake) images; AP, ROC-AUC and oracle ACC over the groups
    with both classes only, so a one-class set neither inflates nor lowers the mean AP. `averaged` says how
    many groups each mean covers and `left_out` names the groups left out of each (given a dict of named rows).
    """
    named = rows if isinstance(rows, dict) else {str(i): row for i, row in enumerate(rows)}
    out = {"n_real": sum(row["n_real"] for row in named.values()), "n_fake": sum(row["n_fake"] for row in named.values())}
    averaged, left_out = {}, {}
    for key in METRIC_COLUMNS:
        kept = {name: row[key] for name, row in named.items() if not math.isnan(row[key])}
        out[key] = float(np.mean(list(kept.values()))) if kept else math.nan
        averaged[key] = len(kept)
        left_out[key] = [name for name in named if name not in kept] if isinstance(rows, dict) else []
    out["oracle_threshold"] = math.nan
    out["threshold"] = next(iter(named.values()))["threshold"] if named else math.nan
    out["averaged"], out["left_out"] = averaged, left_out
    return out
