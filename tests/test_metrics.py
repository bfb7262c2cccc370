"""Metrics agree with scikit-learn and with hand-computed values; chosen thresholds meet their targets."""

import math

import numpy as np
import pytest

from item_cli.evaluation.metrics import (
    accuracy,
    accuracy_fake,
    accuracy_real,
    average_precision,
    choose_threshold,
    detection_metrics,
    mean_row,
    oracle_accuracy,
    roc_auc,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def test_known_values():
    # scikit-learn's documented example: AP 0.8333..., ROC-AUC 0.75.
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert average_precision(labels, scores) == pytest.approx(0.8333333333333333)
    assert roc_auc(labels, scores) == pytest.approx(0.75)
    assert accuracy_real(labels, scores, 0.5) == 1.0
    assert accuracy_fake(labels, scores, 0.5) == 0.5
    assert accuracy(labels, scores, 0.5) == 0.75
    assert oracle_accuracy(labels, scores)[0] == 0.75
    # Perfect separation, and a tie across classes (counts half in AUC; one operating point in AP).
    assert average_precision([0, 1], [0.2, 0.9]) == 1.0
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert average_precision([0, 1], [0.5, 0.5]) == 0.5


@pytest.mark.parametrize("seed", range(6))
def test_agree_with_scikit_learn_on_fixed_scores(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1), 2)  # rounding makes ties
    assert average_precision(labels, scores) == pytest.approx(sklearn_metrics.average_precision_score(labels, scores))
    assert roc_auc(labels, scores) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores))
    for threshold in (0.3, 0.5, 0.7):
        predicted = (scores >= threshold).astype(int)
        assert accuracy(labels, scores, threshold) == pytest.approx(sklearn_metrics.accuracy_score(labels, predicted))
        recall = sklearn_metrics.recall_score(labels, predicted, average=None)
        assert accuracy_real(labels, scores, threshold) == pytest.approx(recall[0])
        assert accuracy_fake(labels, scores, threshold) == pytest.approx(recall[1])
    # The oracle is the best accuracy over every possible cut.
    cuts = np.r_[-1.0, np.unique(scores), 2.0]
    best = max(((scores >= cut).astype(int) == labels).mean() for cut in cuts)
    assert oracle_accuracy(labels, scores)[0] == pytest.approx(best)


def test_single_class_groups_give_nan_and_the_mean_skips_them():
    only_fake = detection_metrics([1, 1], [0.7, 0.2])
    assert math.isnan(only_fake["acc_real"]) and math.isnan(only_fake["roc_auc"])
    # AP of a fakes-only group would be 1.0 whatever the scores: it is left undefined, like AUC and the oracle.
    assert math.isnan(only_fake["ap"]) and math.isnan(only_fake["oracle_acc"])
    assert only_fake["acc_fake"] == 0.5 and only_fake["acc"] == 0.5
    both = detection_metrics([0, 1], [0.2, 0.9])
    mean = mean_row([only_fake, both])
    assert mean["acc_real"] == 1.0 and mean["roc_auc"] == 1.0 and mean["acc_fake"] == 0.75
    assert mean["n_real"] == 1 and mean["n_fake"] == 3


def test_the_mean_row_rule_is_explicit_per_metric():
    rows = {
        "progan": detection_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]),  # ACC 0.5, AP 0.8333
        "guided": detection_metrics([1, 1, 1], [0.9, 0.2, 0.8]),  # fakes only: ACC 2/3, no AP
        "sitd": detection_metrics([0, 0], [0.1, 0.2]),  # reals only: ACC 1.0, no AP
        "dalle": detection_metrics([0, 1], [0.3, 0.7]),  # ACC 1.0, AP 1.0
    }
    mean = mean_row(rows)
    assert mean["acc"] == pytest.approx((0.5 + 2 / 3 + 1.0 + 1.0) / 4)  # ACC: every set
    assert mean["ap"] == pytest.approx((0.8333333333333333 + 1.0) / 2)  # AP: the two-class sets only
    assert mean["acc_fake"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)  # sets with fakes
    assert mean["acc_real"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)  # sets with reals
    assert mean["averaged"] == {"acc_real": 3, "acc_fake": 3, "acc": 4, "ap": 2, "roc_auc": 2, "oracle_acc": 2,
                                "balanced_acc": 2, "ece": 4, "nll": 4, "brier": 4, "eer": 2, "pd_at_far_1": 2,
                                "pd_at_far_5": 2, "pd_at_far_10": 2}
    assert mean["min_acc"] == 0.5 and mean["min_acc_group"] == "progan"  # DDA's minimum accuracy over sets
    assert mean["left_out"]["ap"] == ["guided", "sitd"] and mean["left_out"]["acc"] == []
    assert mean["left_out"]["acc_real"] == ["guided"] and mean["n_real"] == 5 and mean["n_fake"] == 6
    assert math.isnan(mean_row({"guided": rows["guided"]})["ap"])  # nothing to average: NaN, not 0


@pytest.mark.parametrize("seed", range(4))
def test_balanced_threshold_is_the_best_on_the_validation_data(seed):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(60, int), np.ones(40, int)]
    scores = np.clip(rng.normal(0.3 + 0.3 * labels, 0.15), 0, 1)
    chosen = choose_threshold(labels, scores, "balanced")
    t = chosen["threshold"]
    balanced = (accuracy_real(labels, scores, t) + accuracy_fake(labels, scores, t)) / 2
    assert chosen["balanced_accuracy"] == pytest.approx(balanced)
    every = [(accuracy_real(labels, scores, c) + accuracy_fake(labels, scores, c)) / 2 for c in np.r_[0, scores, 1.01]]
    assert balanced == pytest.approx(max(every))
    assert 0.0 <= t <= 1.0


@pytest.mark.parametrize("target", [0.0, 0.05, 0.2])
def test_fpr_threshold_meets_its_target_and_catches_the_most_fakes(target):
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(100, int), np.ones(100, int)]
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.15), 0, 1)
    chosen = choose_threshold(labels, scores, "fpr", target_fpr=target)
    t = chosen["threshold"]
    fpr = (scores[labels == 0] >= t).mean()
    assert fpr <= target and chosen["fpr"] == pytest.approx(fpr)
    assert chosen["tpr"] == pytest.approx(accuracy_fake(labels, scores, t))
    # Any lower threshold that still flags at least one more image breaks the target.
    lower = scores[scores < t]
    if lower.size:
        assert (scores[labels == 0] >= lower.max()).mean() > target


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        average_precision([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="real and fake validation images"):
        choose_threshold([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="target_fpr"):
        choose_threshold([0, 1], [0.2, 0.3], "fpr")
    with pytest.raises(ValueError, match="method="):
        choose_threshold([0, 1], [0.2, 0.3], "youden")
