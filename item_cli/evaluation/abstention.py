"""An "unsure" verdict: an abstention band around the decision threshold, chosen on validation data.

A band `[low, high]` holds the threshold t (`low <= t <= high`). An image whose fake probability p has
`low <= p < high` is *unsure*; outside the band the verdict is the threshold's: real below `low`, fake at or above
`high` (`configuration_item.in_unsure_band` is the same rule for one score). `[t, t]` is empty: every image decided.

- coverage: the share of images outside the band (decided);
- covered error: the share of the decided images that are wrong (covered accuracy = 1 - covered error).

How a band is chosen (`choose_band`):

- Candidate edges are the threshold itself, the midpoints between neighbouring distinct validation scores (as
  `metrics.choose_threshold` places thresholds, so an edge does not sit on one image's score), and the ends:
  `low = 0` (no image below) and `high = 1` (only scores of exactly 1 above). `low` ranges over the candidates at or
  below t, `high` over those at or above t; every pair is considered.
- `max_error=e`: the band with the highest coverage whose covered error on these scores is at most `e`. Ties (equal
  coverage): the fewest errors, then the narrowest band (`high - low`), then the lowest `low`. A ValueError when only
  a band that decides no image meets `e`.
- `coverage=c`: among the bands whose coverage is the smallest reachable at or above `c` (exactly `c` unless tied
  scores make it unreachable), the one with the fewest errors; ties as above (narrowest, then lowest `low`).

Both searches take O(n log n) for n validation images: for each `low`, the best `high` comes from a binary search
(coverage falls monotonically as `high` rises).
"""

from __future__ import annotations

import math

import numpy as np

BAND_COLUMNS = ("coverage", "covered_acc")
_TOLERANCE = 1e-9  # the error constraint in float: errors <= target * covered, up to rounding


def check_band_targets(max_error: float | None, coverage: float | None) -> None:
    """A ValueError naming the option unless exactly one sensible target is given (or none)."""
    if max_error is not None and coverage is not None:
        raise ValueError("--unsure-error and --unsure-coverage both given; choose the band by one of them.")
    if max_error is not None and (not math.isfinite(max_error) or not 0.0 <= max_error < 1.0):
        raise ValueError(f"--unsure-error {max_error}: pass the error rate allowed outside the band, in [0, 1) "
                         "(e.g. 0.02).")
    if coverage is not None and (not math.isfinite(coverage) or not 0.0 < coverage <= 1.0):
        raise ValueError(f"--unsure-coverage {coverage}: pass the share of images to decide, in (0, 1] (e.g. 0.9).")


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0 real, 1 fake) and scores as flat arrays; a ValueError for mismatched sizes, other labels or NaN."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"Got {labels.size} labels but {scores.size} scores; pass one score per label.")
    if not np.isin(labels, (0, 1)).all() or np.isnan(scores).any():
        raise ValueError("Labels must be 0 (real) or 1 (fake) and every image needs a fake probability (no NaN).")
    return labels, scores


def candidate_edges(sorted_scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(low candidates ascending, high candidates ascending) for validation `sorted_scores` around `threshold`: the
    threshold, the midpoints between neighbouring distinct scores on its side, and 0 (lows) or 1 (highs)."""
    distinct = np.unique(sorted_scores)
    middles = (distinct[:-1] + distinct[1:]) / 2.0
    lows = np.unique(np.r_[0.0, middles[middles < threshold], threshold])
    highs = np.unique(np.r_[threshold, middles[middles > threshold], 1.0])
    return lows, highs


def _edge_counts(labels: np.ndarray, scores: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> dict:
    """Per candidate: images decided below `low` (real) and their errors (fakes); images decided at or above
    `high` (fake) and their errors (reals)."""
    every, real, fake = np.sort(scores), np.sort(scores[labels == 0]), np.sort(scores[labels == 1])
    return {
        "below": np.searchsorted(every, lows, side="left"),
        "below_errors": np.searchsorted(fake, lows, side="left"),
        "above": every.size - np.searchsorted(every, highs, side="left"),
        "above_errors": real.size - np.searchsorted(real, highs, side="left"),
    }


def _best_high_for_error(counts: dict, max_error: float) -> np.ndarray:
    """Per low candidate, the index of the lowest high whose band meets `max_error` (len(highs) when none).

    The constraint errors <= e * decided splits into a low part and a high part: a + b <= 0 with
    a = below_errors - e * below, b = above_errors - e * above; the lowest feasible high is the first index where the
    running minimum of b reaches -a (the running minimum only falls, so a binary search finds it).
    """
    low_part = counts["below_errors"] - max_error * counts["below"]
    high_part = counts["above_errors"] - max_error * counts["above"]
    running_min = np.minimum.accumulate(high_part)
    return np.searchsorted(-running_min, low_part - _TOLERANCE, side="left")


def _best_high_for_coverage(counts: dict, needed: int) -> np.ndarray:
    """Per low candidate, the index of the high with the smallest `above` count that still decides `needed` images
    in all (the lowest such high among equal counts: the narrowest band); len(highs) when none does."""
    above = counts["above"]  # non-increasing as high rises
    missing = needed - counts["below"]
    last = np.searchsorted(-above, -missing, side="right") - 1  # the last high with above >= missing
    chosen = np.full(missing.shape, above.size)
    ok = last >= 0
    chosen[ok] = np.searchsorted(-above, -above[last[ok]], side="left")  # first high with that same count
    return chosen


def choose_band(labels, scores, threshold: float, max_error: float | None = None, coverage: float | None = None) -> dict:
    """Choose the abstention band on validation `scores` (fake probabilities) with `labels` (0 real, 1 fake).

    Returns a dict: `method` ("error" or "coverage"), the target, `band` [low, high], `threshold`, and on these
    images `coverage`, `covered_error`, `covered_accuracy`, `n_images`, `n_decided`, `n_unsure`.
    """
    check_band_targets(max_error, coverage)
    if max_error is None and coverage is None:
        raise ValueError("Choose the band by --unsure-error E (e.g. 0.02) or --unsure-coverage C (e.g. 0.9).")
    labels, scores = _arrays(labels, scores)
    if not labels.size:
        raise ValueError("No validation images to choose the unsure band on.")
    lows, highs = candidate_edges(np.sort(scores), threshold)
    counts = _edge_counts(labels, scores, lows, highs)
    needed = None if coverage is None else int(math.ceil(coverage * labels.size - _TOLERANCE))
    best_high = _best_high_for_error(counts, max_error) if coverage is None else _best_high_for_coverage(counts, needed)
    feasible = np.flatnonzero(best_high < highs.size)
    high_index = best_high[feasible]
    decided = counts["below"][feasible] + counts["above"][high_index]
    errors = counts["below_errors"][feasible] + counts["above_errors"][high_index]
    width = highs[high_index] - lows[feasible]
    primary = -decided if coverage is None else decided  # most decided images, or the fewest at or above c
    # np.lexsort sorts by the last key first: coverage rule, then errors, then width, then low.
    best = np.lexsort((lows[feasible], width, errors, primary))[0] if feasible.size else None
    if best is None or decided[best] == 0:
        raise ValueError(f"No band decides any validation image with at most {max_error:.4g} of them wrong: even the "
                         "most confident scores are wrong more often. Allow a higher --unsure-error, or use "
                         "--unsure-coverage.")
    return _band_result(lows[feasible[best]], highs[high_index[best]], threshold, int(decided[best]), int(errors[best]),
                        labels.size, max_error, coverage)


def _band_result(low, high, threshold, decided: int, errors: int, n_images: int, max_error, coverage) -> dict:
    result = {"method": "error" if coverage is None else "coverage"}
    result["target_error" if coverage is None else "target_coverage"] = float(max_error if coverage is None else coverage)
    return {
        **result, "band": [float(low), float(high)], "threshold": float(threshold),
        "coverage": decided / n_images, "covered_error": errors / decided if decided else math.nan,
        "covered_accuracy": 1.0 - errors / decided if decided else math.nan,
        "n_images": n_images, "n_decided": decided, "n_unsure": n_images - decided,
    }


def band_metrics(labels, scores, band, threshold: float) -> dict:
    """`coverage` (share of images outside `band`) and `covered_acc` (accuracy at `threshold` on them; NaN when
    the band holds every image), with the count `n_unsure`."""
    labels, scores = _arrays(labels, scores)
    unsure = (band[0] <= scores) & (scores < band[1])
    decided = ~unsure
    correct = (scores >= threshold).astype(np.int64) == labels
    return {
        "coverage": float(decided.mean()) if labels.size else math.nan,
        "covered_acc": float(correct[decided].mean()) if decided.any() else math.nan,
        "n_unsure": int(unsure.sum()),
    }


def add_band_columns(table: dict, labels, scores, groups, band, threshold: float, mean_key: str) -> dict:
    """Add `band_metrics` to every group row of a results `table` ({group: row}, with its mean row under
    `mean_key`) in place; the mean row gets the mean over groups of each (covered ACC over the groups where it is
    defined). Returns `table`."""
    labels, scores, groups = np.asarray(labels), np.asarray(scores), np.asarray(groups, dtype=object)
    named = [name for name in table if name != mean_key]
    for name in named:
        mask = groups == name
        table[name].update(band_metrics(labels[mask], scores[mask], band, threshold))
    for key in BAND_COLUMNS:
        values = [table[name][key] for name in named if not math.isnan(table[name][key])]
        table[mean_key][key] = float(np.mean(values)) if values else math.nan
    table[mean_key]["n_unsure"] = sum(table[name]["n_unsure"] for name in named)
    table[mean_key]["unsure_band"] = list(band)
    return table
