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
# Where the clean images sit on each perturbation's strength axis in the plots.
CLEAN_STRENGTH = {"jpeg": 100, "blur": 0, "downscale": 1.0}


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}"


def markdown_report(conditions: dict, threshold: float) -> str:
    """Markdown tables: robustness summary (mean rows), then per-generator results per condition (in %)."""
    lines = [f"# ITEM evaluation (threshold {threshold:.4g}, numbers in %)", ""]
    if len(conditions) > 1:
        lines += ["## Robustness (mean over generators)", "",
                  "| condition | ACC real | ACC fake | ACC | AP | ROC-AUC |", "|---|---|---|---|---|---|"]
        for name, condition in conditions.items():
            row = condition["generators"][MEAN]
            lines.append(f"| {name} | " + " | ".join(_fmt(row[key]) for key in ("acc_real", "acc_fake", "acc", "ap", "roc_auc")) + " |")
        lines.append("")
    for name, condition in conditions.items():
        lines += [f"## {name}", "",
                  "| generator | real | fake | ACC real | ACC fake | ACC | AP | ROC-AUC | oracle ACC |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for generator, row in condition["generators"].items():
            label = f"**{generator}**" if generator == MEAN else generator
            lines.append(
                f"| {label} | {row['n_real']} | {row['n_fake']} | " + " | ".join(_fmt(row[key]) for key in METRIC_COLUMNS) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def write_metrics_csv(conditions: dict, path: Path, set_name: str | None = None) -> None:
    """One row per (condition, group). `set_name`: the one set the groups (generators) belong to; None when the
    groups are the sets themselves (the set column then repeats the group)."""
    columns = ["condition", "perturbation", "strength", "set", "generator", "n_real", "n_fake", *METRIC_COLUMNS,
               "oracle_threshold", "threshold"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for name, condition in conditions.items():
            for generator, row in condition["generators"].items():
                writer.writerow({
                    "condition": name, "perturbation": condition["perturbation"] or "",
                    "strength": "" if condition["strength"] is None else condition["strength"],
                    "set": generator if set_name is None else set_name, "generator": generator,
                    **{key: "" if isinstance(row[key], float) and math.isnan(row[key]) else row[key] for key in columns[5:]},
                })


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
    clean = conditions[CLEAN]["generators"]
    labels = {"jpeg": "JPEG quality", "blur": "Gaussian blur sigma (px)", "downscale": "down-scaling factor"}
    for axis, kind in zip(axes[0], kinds):
        points = sorted(
            [(CLEAN_STRENGTH[kind], clean)]
            + [(c["strength"], c["generators"]) for c in conditions.values() if c["perturbation"] == kind],
            key=lambda point: point[0],
        )
        strengths = [p[0] for p in points]
        for key, style in (("acc", "o-"), ("ap", "s-")):
            axis.plot(strengths, [np.nan_to_num(p[1][MEAN][key]) * 100 for p in points], style, label=f"mean {key.upper()}")
        for generator in clean:
            if generator != MEAN:
                axis.plot(strengths, [np.nan_to_num(p[1][generator]["ap"]) * 100 for p in points], "-", alpha=0.3, lw=1)
        if kind == "jpeg":
            axis.invert_xaxis()  # stronger compression to the right
        axis.set_xlabel(labels[kind])
        axis.set_ylabel("%")
        axis.set_ylim(0, 100)
        axis.set_title(f"{labels[kind]} (thin: AP per generator)", fontsize="small")
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True
