"""Decision and calibration metrics: how far a detector's probabilities and operating points can be trusted.

Labels are 0 = real, 1 = fake; scores are fake probabilities p(fake). Definitions (each equals a hand or
scikit-learn computation in tests/test_calibration_metrics.py):

- ECE (expected calibration error) on p(fake), ECE_BINS = 15 equal-width bins over [0, 1], the bins of
  scikit-learn's `calibration_curve(strategy="uniform")` (bin b holds b/15 < p <= (b+1)/15, the first bin also
  holds p = 0): ECE = sum over non-empty bins of (n_b / N) * |share of fakes in b - mean p(fake) in b|.
  This is the binary (positive-class) reliability of p(fake), not the top-label confidence ECE of Guo et al.
  (2017); with two classes the two differ only in how a bin pairs p and 1 - p.
- NLL: mean negative log-likelihood of the true label, scikit-learn's `log_loss` (natural log, nats).
- Brier score: mean squared difference between p(fake) and the label, scikit-learn's `brier_score_loss`.
- EER (equal error rate): the false-positive rate where it equals the false-negative rate (1 - TPR), on the ROC
  curve of scikit-learn's `roc_curve` joined by straight lines between its operating points.
- Pd@FAR (detection rate at a false-alarm rate, as B-Free reports it): the highest TPR over the ROC operating
  points (scikit-learn's `roc_curve`, every threshold kept) whose FPR is at most the target, i.e. the TPR at the
  lowest threshold that flags at most that share of real images; no interpolation. For 1 %, 5 %, 10 %.
- Balanced accuracy at the threshold: scikit-learn's `balanced_accuracy_score`, the mean of the accuracies on
  real and on fake images.

ECE, NLL and Brier are defined for a one-class group; EER, Pd@FAR and balanced accuracy need both classes (NaN
otherwise, and the mean row leaves such groups out of them, as it does AP).
"""

from __future__ import annotations

import math

import numpy as np

ECE_BINS = 15
FAR_TARGETS = {"pd_at_far_1": 0.01, "pd_at_far_5": 0.05, "pd_at_far_10": 0.10}


def label_score_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) int64, scores (N,) float64), checked: one score per label, labels 0 / 1, no NaN score."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"Got {labels.size} labels but {scores.size} scores; pass one score per label.")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"Labels must be 0 (real) or 1 (fake); got {sorted(set(labels.tolist()) - {0, 1})}.")
    if np.isnan(scores).any():
        raise ValueError("Scores contain NaN; every image needs a fake probability.")
    return labels, scores


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = label_score_arrays(labels, scores)
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        raise ValueError(f"Scores must be probabilities in [0, 1]; got values from {scores.min()} to {scores.max()}.")
    return labels, scores


def _two_classes(labels: np.ndarray) -> bool:
    return bool(labels.size) and 0 < int(labels.sum()) < labels.size


def calibration_bins(labels, scores, n_bins: int = ECE_BINS) -> dict:
    """Per bin of p(fake) (equal width, `calibration_curve`'s bins): count, mean p(fake), share of fakes.

    Returns {"edges": (n_bins + 1,), "count": (n_bins,), "mean_score": (n_bins,), "fake_share": (n_bins,)};
    empty bins have NaN means. What the reliability diagram draws and ECE sums.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r}; pass a positive number of bins, e.g. {ECE_BINS}.")
    labels, scores = _arrays(labels, scores)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # The bin rule of sklearn.calibration.calibration_curve: right-closed bins, 0 in the first.
    bins = np.searchsorted(edges[1:-1], scores)
    count = np.bincount(bins, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(bins, weights=scores, minlength=n_bins) / count
        fake_share = np.bincount(bins, weights=labels, minlength=n_bins) / count
    return {"edges": edges, "count": count, "mean_score": mean_score, "fake_share": fake_share}


def expected_calibration_error(labels, scores, n_bins: int = ECE_BINS) -> float:
    """ECE of p(fake) over `n_bins` equal-width bins (see the module docstring); NaN for no image."""
    table = calibration_bins(labels, scores, n_bins)
    total = int(table["count"].sum())
    if total == 0:
        return math.nan
    used = table["count"] > 0
    gaps = np.abs(table["fake_share"][used] - table["mean_score"][used])
    return float((table["count"][used] / total * gaps).sum())


def negative_log_likelihood(labels, scores) -> float:
    """Mean negative log-likelihood (nats) of the true labels under p(fake); scikit-learn's `log_loss`."""
    from sklearn.metrics import log_loss

    labels, scores = _arrays(labels, scores)
    if not labels.size:
        return math.nan
    return float(log_loss(labels, scores, labels=[0, 1]))


def brier_score(labels, scores) -> float:
    """Mean squared error of p(fake) against the label; scikit-learn's `brier_score_loss`."""
    from sklearn.metrics import brier_score_loss

    labels, scores = _arrays(labels, scores)
    if not labels.size:
        return math.nan
    # The score of a one-class group is still defined; pos_label names the fake class explicitly.
    return float(brier_score_loss(labels, scores, pos_label=1))


def _roc(labels: np.ndarray, scores: np.ndarray):
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr, thresholds


def equal_error_rate(labels, scores) -> float:
    """The error rate where FPR = FNR on the piecewise-linear ROC curve; NaN without both classes."""
    labels, scores = _arrays(labels, scores)
    if not _two_classes(labels):
        return math.nan
    return _eer(*_roc(labels, scores)[:2])


def _eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    fnr = 1.0 - tpr
    # FPR rises and FNR falls along the curve: the first point with FNR <= FPR closes the crossing segment.
    after = int(np.flatnonzero(fnr <= fpr)[0])
    if after == 0:
        return float(fpr[0])
    before = after - 1
    gap_before, gap_after = fnr[before] - fpr[before], fnr[after] - fpr[after]  # > 0 and <= 0
    weight = gap_before / (gap_before - gap_after)
    return float(fpr[before] + weight * (fpr[after] - fpr[before]))


def detection_rate_at_far(labels, scores, target_far: float) -> float:
    """Pd@FAR: the highest TPR among ROC operating points with FPR <= `target_far`; NaN without both classes."""
    if not 0.0 <= float(target_far) <= 1.0:
        raise ValueError(f"target_far={target_far!r}; pass a false-alarm rate in [0, 1], e.g. 0.05.")
    labels, scores = _arrays(labels, scores)
    if not _two_classes(labels):
        return math.nan
    return _pd(*_roc(labels, scores)[:2], float(target_far))


def _pd(fpr: np.ndarray, tpr: np.ndarray, target_far: float) -> float:
    allowed = fpr <= target_far + 1e-12  # the first point (nothing flagged, FPR 0) is always allowed
    return float(tpr[allowed].max())


def balanced_accuracy(labels, scores, threshold: float = 0.5) -> float:
    """Mean of the accuracies on real and on fake images at `threshold`; NaN without both classes."""
    from sklearn.metrics import balanced_accuracy_score

    labels, scores = _arrays(labels, scores)
    if not _two_classes(labels):
        return math.nan
    return float(balanced_accuracy_score(labels, (scores >= threshold).astype(np.int64)))


def decision_metrics(labels, scores, threshold: float = 0.5) -> dict:
    """ECE, NLL, Brier, EER, Pd@1/5/10 % FAR and balanced accuracy of one group (keys as in the tables)."""
    labels, scores = _arrays(labels, scores)
    out = {
        "balanced_acc": balanced_accuracy(labels, scores, threshold),
        "ece": expected_calibration_error(labels, scores),
        "nll": negative_log_likelihood(labels, scores),
        "brier": brier_score(labels, scores),
    }
    if not _two_classes(labels):
        return {**out, "eer": math.nan, **{key: math.nan for key in FAR_TARGETS}}
    fpr, tpr, _ = _roc(labels, scores)  # one ROC curve for EER and every Pd@FAR
    return {**out, "eer": _eer(fpr, tpr), **{key: _pd(fpr, tpr, target) for key, target in FAR_TARGETS.items()}}
