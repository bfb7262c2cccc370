"""How evaluation results are written: Markdown tables, CSV, JSON and PNG plots."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..console import json_ready  # noqa: F401  (re-exported: the evaluation's JSON files)

from .metrics import METRIC_COLUMNS

MEAN = "mean"
CLEAN = "clean"
TITLES = {"acc_real": "ACC real", "acc_fake": "ACC fake", "acc": "ACC", "ap": "AP", "roc_auc": "AUC",
          "oracle_acc": "oracle ACC", "balanced_acc": "bal. ACC", "ece": "ECE", "nll": "NLL", "brier": "Brier",
          "eer": "EER", "pd_at_far_1": "Pd@1%FAR", "pd_at_far_5": "Pd@5%FAR", "pd_at_far_10": "Pd@10%FAR",
          "coverage": "coverage", "covered_acc": "covered ACC"}
# Metrics that are not shares: printed as numbers with 3 decimals, not in %.
PLAIN_METRICS = ("nll", "brier")
# Where the clean images sit on each perturbation's strength axis in the plots ("social" has two settings: its
# conditions are placed in the order given, clean first).
CLEAN_STRENGTH = {"jpeg": 100, "blur": 0, "downscale": 1.0, "webp": 100, "noise": 0, "crop": 1.0, "social": None}
AXIS_LABELS = {"jpeg": "JPEG quality", "blur": "Gaussian blur sigma (px)", "downscale": "down-scaling factor",
               "webp": "WebP quality", "noise": "Gaussian noise sigma (0-255)", "crop": "centre-crop fraction",
               "social": "social-network chain (long side / JPEG quality)"}


def format_metric(key: str, value) -> str:
    """A table cell: a share in % with one decimal, NLL and Brier with 3 decimals; "" for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" if key in PLAIN_METRICS else f"{100 * value:.1f}"


def _fmt(value, key: str = "acc") -> str:
    return format_metric(key, value) or "-"


def markdown_report(conditions: dict, threshold: float) -> str:
    """Markdown tables: robustness summary (mean rows), then per-generator results per condition (in %)."""
    lines = [f"# ITEM evaluation (threshold {threshold:.4g}, numbers in %; NLL and Brier as numbers)", ""]
    if len(conditions) > 1:
        lines += ["## Robustness (mean over generators)", "",
                  "| condition | ACC real | ACC fake | ACC | AP | ROC-AUC |", "|---|---|---|---|---|---|"]
        for name, condition in conditions.items():
            row = condition["generators"][MEAN]
            lines.append(f"| {name} | " + " | ".join(_fmt(row[key]) for key in ("acc_real", "acc_fake", "acc", "ap", "roc_auc")) + " |")
        lines.append("")
    for name, condition in conditions.items():
        lines += [f"## {name}", "",
                  "| generator | real | fake | " + " | ".join(TITLES[key] for key in METRIC_COLUMNS) + " |",
                  "|---|---|---|" + "---|" * len(METRIC_COLUMNS)]
        for generator, row in condition["generators"].items():
            label = f"**{generator}**" if generator == MEAN else generator
            lines.append(f"| {label} | {row['n_real']} | {row['n_fake']} | "
                         + " | ".join(_fmt(row[key], key) for key in METRIC_COLUMNS) + " |")
        mean = condition["generators"].get(MEAN)
        if mean is not None and not math.isnan(mean.get("min_acc", math.nan)):
            lines += ["", f"Minimum ACC over the groups: {_fmt(mean['min_acc'])} ({mean['min_acc_group']})."]
        lines.append("")
    return "\n".join(lines)


def write_metrics_csv(conditions: dict, path: Path, set_name: str | None = None) -> None:
    """One row per (condition, group). `set_name`: the one set the groups (generators) belong to; None when the
    groups are the sets themselves (the set column then repeats the group)."""
    columns = ["condition", "perturbation", "strength", "set", "generator", "n_real", "n_fake", *METRIC_COLUMNS,
               "oracle_threshold", "threshold", "min_acc"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for name, condition in conditions.items():
            for generator, row in condition["generators"].items():
                writer.writerow({
                    "condition": name, "perturbation": condition["perturbation"] or "",
                    "strength": "" if condition["strength"] is None else condition["strength"],
                    "set": generator if set_name is None else set_name, "generator": generator,
                    **{key: _raw(row.get(key)) for key in columns[5:]},
                })


def _raw(value):
    """A metrics.csv cell: full precision, "" for a missing value (min_acc exists in mean rows only)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def write_rows_csv(rows: list[dict], path: Path, columns: list[str] | None = None) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


PLOTS_HINT = 'pip install "item-detector[eval]"'


def plotting_available() -> bool:
    """Whether matplotlib (the [eval] extra) can be imported: without it, every number is still written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_per_generator(table: dict, path: Path, title: str) -> None:
    """Grouped bars per generator (and the mean): ACC real, ACC fake, ACC, AP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    keys = ("acc_real", "acc_fake", "acc", "ap")
    width = 0.8 / len(keys)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4))
    positions = np.arange(len(names))
    for k, key in enumerate(keys):
        values = [np.nan_to_num(table[name][key], nan=0.0) * 100 for name in names]
        axes.bar(positions + (k - (len(keys) - 1) / 2) * width, values, width, label=key.replace("_", " ").upper())
    axes.set_xticks(positions, names, rotation=30, ha="right")
    axes.set_ylim(0, 100)
    axes.set_ylabel("%")
    axes.set_title(title, pad=24)
    # above the plot, in one row: inside it, the legend hid the bars (the mean's among them)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(keys), fontsize="small", frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _curve(conditions: dict, kind: str) -> tuple[list, list, list[dict]]:
    """(x positions, tick labels or [], tables) of one perturbation kind's conditions, clean first."""
    clean = conditions[CLEAN]["generators"]
    mine = [c for c in conditions.values() if c["perturbation"] == kind]
    if CLEAN_STRENGTH[kind] is None:  # a chain of settings: one position per condition, in the order given
        labels = ["clean"] + [f"{c['settings']['long_side']}/q{c['strength']:g}" for c in mine]
        return list(range(len(labels))), labels, [clean] + [c["generators"] for c in mine]
    points = sorted([(CLEAN_STRENGTH[kind], clean)] + [(c["strength"], c["generators"]) for c in mine],
                    key=lambda point: point[0])
    return [p[0] for p in points], [], [p[1] for p in points]


def plot_robustness(conditions: dict, path: Path) -> bool:
    """One panel per perturbation kind: mean ACC and AP (and each generator's AP, thin) against strength.
    Returns False, writing nothing, when no perturbation was evaluated."""
    kinds = [kind for kind in CLEAN_STRENGTH if any(c["perturbation"] == kind for c in conditions.values())]
    if not kinds:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4), squeeze=False)
    for axis, kind in zip(axes[0], kinds):
        strengths, ticks, tables = _curve(conditions, kind)
        for key, style in (("acc", "o-"), ("ap", "s-")):
            axis.plot(strengths, [np.nan_to_num(t[MEAN][key]) * 100 for t in tables], style, label=f"mean {key.upper()}")
        for generator in tables[0]:
            if generator != MEAN:
                axis.plot(strengths, [np.nan_to_num(t[generator]["ap"]) * 100 for t in tables], "-", alpha=0.3, lw=1)
        if ticks:
            axis.set_xticks(strengths, ticks, rotation=30, ha="right")
        if kind in ("jpeg", "webp", "downscale", "crop"):
            axis.invert_xaxis()  # stronger perturbation to the right
        axis.set_xlabel(AXIS_LABELS[kind])
        axis.set_ylabel("%")
        axis.set_ylim(0, 100)
        axis.set_title(f"{AXIS_LABELS[kind]} (thin: AP per group)", fontsize="small")
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def plot_reliability(labels, scores, path: Path, title: str) -> None:
    """Reliability diagram of p(fake): the share of fakes against the mean p(fake) per bin (scikit-learn's
    `calibration_curve`, the ECE's 15 equal-width bins), the diagonal of perfect calibration, and below it how
    many images fall in each bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    from .calibration import ECE_BINS, calibration_bins, expected_calibration_error

    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    if len(set(labels.tolist())) == 2:
        share, mean = calibration_curve(labels, scores, n_bins=ECE_BINS, strategy="uniform")
        ece = expected_calibration_error(labels, scores)
        top.plot(mean, share, "o-", label=f"ITEM (ECE {100 * ece:.1f} %)")
    else:
        top.text(0.5, 0.5, "one class only: no reliability curve", ha="center", va="center")
    top.set_ylabel("share of fake images")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_title(title, fontsize="small")
    top.legend(fontsize="small", loc="upper left")
    bins = calibration_bins(labels, scores)
    bottom.bar(bins["edges"][:-1], bins["count"], width=1 / ECE_BINS, align="edge", edgecolor="white")
    bottom.set_xlabel(f"p(fake), {ECE_BINS} equal-width bins")
    bottom.set_ylabel("images")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
