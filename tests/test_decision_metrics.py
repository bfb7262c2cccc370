"""Decision and calibration metrics equal a hand or scikit-learn computation; the tables print them, a worst row
(DDA's minimum accuracy) under the mean, in every format."""

import csv
import math

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve

from item_cli.evaluation.calibration import (
    ECE_BINS,
    balanced_accuracy,
    brier_score,
    calibration_bins,
    detection_rate_at_far,
    equal_error_rate,
    expected_calibration_error,
    negative_log_likelihood,
)
from item_cli.evaluation.metrics import detection_metrics, mean_row, worst_row
from item_cli.evaluation.report import MEAN
from item_cli.evaluation.tables import check_columns, latex_table, markdown_table, write_table_csv


def _data(seed, n=300):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1), 2)  # rounding makes ties
    return labels, scores


def test_ece_by_hand():
    labels, scores = [0, 0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9, 0.5]
    # 15 bins: 0.1 in (1/15, 2/15] with no fake (gap 0.1), 0.9 in (13/15, 14/15] all fake (gap 0.1),
    # 0.5 in (7/15, 8/15] one fake (gap 0.5): 2/5 * 0.1 + 2/5 * 0.1 + 1/5 * 0.5.
    assert expected_calibration_error(labels, scores) == pytest.approx(0.18)
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0  # perfectly confident and right
    assert expected_calibration_error([1, 1], [0.2, 0.2]) == pytest.approx(0.8)  # one-class groups have an ECE
    # Bins are right-closed, as calibration_curve's: 1/15 falls in the first bin with 0.
    bins = calibration_bins([0, 1, 1], [0.0, 1 / 15, 0.07])
    assert bins["count"][:2].tolist() == [2, 1] and len(bins["count"]) == ECE_BINS


@pytest.mark.parametrize("seed", range(3))
def test_ece_bins_are_calibration_curves(seed):
    labels, scores = _data(seed)
    bins = calibration_bins(labels, scores)
    share, mean = calibration_curve(labels, scores, n_bins=ECE_BINS, strategy="uniform")
    used = bins["count"] > 0
    np.testing.assert_allclose(bins["fake_share"][used], share)
    np.testing.assert_allclose(bins["mean_score"][used], mean)
    expected = sum(c / len(labels) * abs(f - m) for c, f, m in zip(bins["count"][used], share, mean))
    assert expected_calibration_error(labels, scores) == pytest.approx(expected)


def test_nll_brier_balanced_accuracy_by_hand_and_by_scikit_learn():
    labels, scores = np.array([0, 1, 1, 0]), np.array([0.2, 0.7, 0.4, 0.5])
    by_hand = -np.mean([math.log(0.8), math.log(0.7), math.log(0.4), math.log(0.5)])
    assert negative_log_likelihood(labels, scores) == pytest.approx(by_hand)
    assert brier_score(labels, scores) == pytest.approx((0.04 + 0.09 + 0.36 + 0.25) / 4)
    assert balanced_accuracy(labels, scores, 0.5) == pytest.approx((1 / 2 + 1 / 2) / 2)  # real 0.2 ok, 0.5 flagged
    for seed in range(3):
        labels, scores = _data(seed)
        assert negative_log_likelihood(labels, scores) == pytest.approx(sk.log_loss(labels, scores))
        assert brier_score(labels, scores) == pytest.approx(sk.brier_score_loss(labels, scores))
        predicted = (scores >= 0.5).astype(int)
        assert balanced_accuracy(labels, scores) == pytest.approx(sk.balanced_accuracy_score(labels, predicted))
    assert math.isnan(balanced_accuracy([1, 1], [0.2, 0.9]))


def test_eer_by_hand():
    # ROC points (FPR, TPR): (0, 0), (0, .5), (.5, .5), (.5, 1), (1, 1); FNR = FPR = 0.5 at (.5, .5).
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == pytest.approx(0.5)
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0  # separated
    assert equal_error_rate([0, 0, 1, 1], [0.8, 0.9, 0.1, 0.2]) == 1.0  # inverted
    # Three reals, one fake in the middle: the straight line from (1/3, 1) ... crossing at FPR 1/3 = FNR 0? no:
    # points (0,0), (1/3,0), (1/3,1), (2/3,1), (1,1); FNR <= FPR first at (1/3, 1): the segment from (1/3, FNR 1)
    # to (1/3, FNR 0) crosses FPR = FNR at 1/3.
    assert equal_error_rate([0, 1, 0, 0], [0.9, 0.5, 0.2, 0.1]) == pytest.approx(1 / 3)
    assert math.isnan(equal_error_rate([0, 0], [0.1, 0.2]))


@pytest.mark.parametrize("seed", range(3))
def test_eer_is_where_fpr_meets_fnr(seed):
    labels, scores = _data(seed, 2000)
    eer = equal_error_rate(labels, scores)
    cuts = np.r_[np.unique(scores), 2.0]
    fpr = np.array([(scores[labels == 0] >= c).mean() for c in cuts])
    fnr = np.array([(scores[labels == 1] < c).mean() for c in cuts])
    crossing = int(np.argmin(np.abs(fpr - fnr)))
    assert min(fpr[crossing], fnr[crossing]) - 1e-9 <= eer <= max(fpr[crossing], fnr[crossing]) + 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_pd_at_far_is_the_best_tpr_within_the_false_alarm_budget(seed):
    labels, scores = _data(seed)
    real, fake = scores[labels == 0], scores[labels == 1]
    for target in (0.01, 0.05, 0.10):
        best = max((fake >= c).mean() for c in np.r_[np.unique(scores), 2.0] if (real >= c).mean() <= target)
        assert detection_rate_at_far(labels, scores, target) == pytest.approx(best)
    # By hand: reals 0.1 0.2 0.3 0.4, fakes 0.35 0.5: flagging none of the reals catches the 0.5 fake only.
    labels, scores = [0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.35, 0.5]
    # Flagging the 0.4 real (FAR 1/4) lets the threshold drop to 0.35: both fakes.
    assert detection_rate_at_far(labels, scores, 0.0) == 0.5 and detection_rate_at_far(labels, scores, 0.2) == 0.5
    assert detection_rate_at_far(labels, scores, 0.25) == 1.0
    with pytest.raises(ValueError, match="false-alarm rate"):
        detection_rate_at_far(labels, scores, 5)


def test_ap_and_auc_are_scikit_learns():
    labels, scores = _data(7)
    row = detection_metrics(labels, scores)
    assert row["ap"] == sk.average_precision_score(labels, scores)
    assert row["roc_auc"] == sk.roc_auc_score(labels, scores)
    assert row["pd_at_far_5"] == detection_rate_at_far(labels, scores, 0.05)


def _conditions():
    rows = {"progan": detection_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]),  # ACC 0.5
            "dalle": detection_metrics([0, 1, 0, 1], [0.3, 0.7, 0.2, 0.8]),  # ACC 1.0
            "guided": detection_metrics([1, 1, 1], [0.9, 0.2, 0.8])}  # fakes only: ACC 2/3
    return {"clean": {"perturbation": None, "strength": None, "generators": {**rows, MEAN: mean_row(rows)}}}, rows


def test_worst_row_and_minimum_accuracy():
    _, rows = _conditions()
    worst = worst_row(rows)
    assert worst["acc"] == 0.5 and worst["groups"]["acc"] == "progan"
    assert worst["ece"] == max(row["ece"] for row in rows.values())  # lower is better: the worst is the highest
    assert worst["groups"]["ap"] == "progan" and worst["eer"] == rows["progan"]["eer"]  # guided has no AP / EER
    mean = mean_row(rows)
    assert mean["min_acc"] == 0.5 and mean["min_acc_group"] == "progan"
    assert mean["averaged"]["ece"] == 3 and mean["averaged"]["eer"] == 2  # ECE any group, EER two-class only


def test_every_table_format_prints_the_new_metrics_and_the_worst_row(tmp_path):
    conditions, rows = _conditions()
    columns = check_columns(["all"])
    assert "ece" in columns and "pd_at_far_1" in columns and "balanced_acc" in columns
    markdown = markdown_table(conditions, columns, 0.5, "test")
    header = next(line for line in markdown.splitlines() if line.startswith("| set"))
    for title in ("ECE", "NLL", "Brier", "EER", "Pd@1%FAR", "Pd@5%FAR", "Pd@10%FAR", "bal. ACC"):
        assert f" {title} |" in header
    cells = {line.strip("|").split("|")[0].strip(): [c.strip() for c in line.strip("|").split("|")[3:]]
             for line in markdown.splitlines() if line.startswith("| ")}
    assert cells["*worst*"][columns.index("acc")] == "50.0"  # min ACC over sets, in %
    assert cells["progan"][columns.index("nll")] == f"{rows['progan']['nll']:.3f}"  # NLL as a number, not in %
    assert cells["**mean**"][columns.index("ece")] == f"**{100 * mean_row(rows)['ece']:.1f}**"
    tex = latex_table(conditions, columns, 0.5, "test")
    assert "\\emph{worst}" in tex and "NLL &" in tex and "ECE (\\%)" in tex and "Pd@5\\%FAR (\\%)" in tex
    write_table_csv(conditions, columns, tmp_path / "t.csv")
    with open(tmp_path / "t.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [row["set"] for row in table] == ["progan", "dalle", "guided", "mean", "worst"]
    assert table[3]["ece"] == f"{100 * conditions['clean']['generators'][MEAN]['ece']:.1f}"
    assert table[2]["eer"] == "" and table[2]["ece"] != ""  # one class: no EER, an ECE
    with pytest.raises(ValueError, match="unknown"):
        check_columns(["acc", "calibration"])
