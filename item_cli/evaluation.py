"""Per-generator evaluation the way the field reports it, with test-time perturbations.

For each condition (clean, then every `--jpeg-quality`, `--blur-sigma`, `--downscale`), every image is
perturbed, annotated, embedded (each through the cache, so a second evaluation costs only the head) and
scored. Per generator: accuracy on real, on fake, at the threshold, AP, ROC-AUC and the oracle accuracy,
plus a mean row. Outputs in one folder:

    metrics.csv   one row per (condition, generator), mean rows included
    metrics.json  the same, with the run's settings and the skipped files
    metrics.md    Markdown tables: robustness summary, then per-generator per condition
    scores.csv    one row per (condition, image): score, prediction, caption and nouns, to study the mistakes
    per_generator.png, robustness.png   bar chart of the clean results; metric against perturbation strength
    skipped.csv   files that could not be read (only when there are some)
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .cache import _state, cached_features
from .data import LABEL_NAMES, load_dataset, require_labels
from .metrics import METRIC_COLUMNS, detection_metrics, mean_row
from .perturb import Perturbation

CLEAN = "clean"
OUTPUT_FILES = ("metrics.csv", "metrics.json", "metrics.md", "scores.csv", "per_generator.png", "robustness.png")
# Where the clean images sit on each perturbation's strength axis in the plots.
CLEAN_STRENGTH = {"jpeg": 100, "blur": 0, "downscale": 1.0}
MEAN = "mean"


def head_scores(model, dataset, batch_size: int = 1024) -> np.ndarray:
    """Fake probabilities of cached-feature rows, from the head alone (no backbone runs)."""
    import torch

    view = dataset.with_format("numpy", columns=["image_embeds", "text_embeds", "object_mask"])
    fake_index = int(model.config.label2id.get("fake", 1))
    device = next(model.head.parameters()).device
    scores = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(view), batch_size):
            batch = view[start : start + batch_size]
            logits = model(
                image_embeds=torch.from_numpy(batch["image_embeds"]).to(device),
                text_embeds=torch.from_numpy(batch["text_embeds"]).to(device),
                object_mask=torch.from_numpy(batch["object_mask"].astype(bool)).to(device),
            ).logits
            scores.append(logits.float().softmax(dim=-1)[:, fake_index].cpu().numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


def score(model, processor, dataset, cache_dir=None, batch_size: int = 16, perturbation=None, dtype="float16",
          errors=None, state=None):
    """(scored rows, fake probabilities): both caches for this condition, then the head."""
    featured = cached_features(dataset, processor, model, cache_dir, batch_size, perturbation, dtype, errors, state)
    return featured, head_scores(model, featured)


def generator_table(labels: np.ndarray, scores: np.ndarray, generators: np.ndarray, threshold: float) -> dict:
    """{generator: metrics} for every generator, then the mean row under "mean"."""
    table = {}
    for name in sorted(set(generators.tolist())):
        mask = generators == name
        table[name] = detection_metrics(labels[mask], scores[mask], threshold)
    table[MEAN] = mean_row(list(table.values()))
    return table


def _fmt(value, percent: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}" if percent else f"{value}"


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
                f"| {label} | {row['n_real']} | {row['n_fake']} | "
                + " | ".join(_fmt(row[key]) for key in METRIC_COLUMNS) + " |"
            )
        lines.append("")
    return "\n".join(lines)


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
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_robustness(conditions: dict, path: Path) -> None:
    """One panel per perturbation kind: mean ACC and AP (and each generator's AP, thin) against strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [kind for kind in CLEAN_STRENGTH if any(c["perturbation"] == kind for c in conditions.values())]
    figure, axes = plt.subplots(1, max(1, len(kinds)), figsize=(5 * max(1, len(kinds)), 4), squeeze=False)
    clean = conditions[CLEAN]["generators"]
    if not kinds:
        axes[0][0].text(0.5, 0.5, "no perturbations requested\n(--jpeg-quality, --blur-sigma, --downscale)",
                        ha="center", va="center")
        axes[0][0].set_axis_off()
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


def _json_ready(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def evaluate(
    model_dir,
    data,
    output_dir,
    perturbations: list[Perturbation] | tuple = (),
    threshold: float | None = None,
    cache_dir=None,
    batch_size: int = 16,
    layout: str = "auto",
    split: str | None = None,
    generator: str | None = None,
    feature_dtype: str = "float16",
    plots: bool = True,
    revision: str | None = None,
) -> dict:
    """Evaluate the checkpoint `model_dir` on `data`, clean and under each perturbation; write every output file.

    Returns the results dict written to metrics.json ("conditions" -> name -> "generators" -> generator ->
    metrics), with "files" listing what was written. Under `accelerate launch` the caches are sharded across
    the processes and only the main process scores and writes (the others return None).
    """
    from .training import _load

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}; pass a fake probability in [0, 1].")
    state = _state()
    errors: list = []
    dataset = load_dataset(data, layout=layout, split=split, generator=generator, errors=errors)
    require_labels(dataset, "evaluation")
    model, processor = _load(model_dir, revision)
    threshold = float(model.config.decision_threshold if threshold is None else threshold)

    conditions, score_rows, images = {}, [], 0
    for perturbation in [None, *perturbations]:
        name = CLEAN if perturbation is None else perturbation.name
        featured, scores = score(model, processor, dataset, cache_dir, batch_size, perturbation, feature_dtype,
                                 errors if perturbation is None else [], state)
        if not state.is_main_process:
            continue
        images = images or len(featured)
        labels = np.asarray(featured["label"])
        generators = np.asarray(featured["generator"])
        conditions[name] = {
            "perturbation": None if perturbation is None else perturbation.kind,
            "strength": None if perturbation is None else perturbation.value,
            "generators": generator_table(labels, scores, generators, threshold),
        }
        for path, gen, label, caption, nouns, value in zip(
            featured["path"], generators, labels, featured["caption"], featured["nouns"], scores
        ):
            predicted = int(value >= threshold)
            score_rows.append({
                "condition": name, "path": path, "generator": gen, "label": LABEL_NAMES[int(label)],
                "fake_probability": f"{float(value):.6f}", "predicted": LABEL_NAMES[predicted],
                "correct": int(predicted == int(label)), "caption": caption, "nouns": "; ".join(nouns),
            })
    if not state.is_main_process:
        return None

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    files = []
    with open(output / "metrics.csv", "w", newline="") as handle:
        columns = ["condition", "perturbation", "strength", "generator", "n_real", "n_fake", *METRIC_COLUMNS,
                   "oracle_threshold", "threshold"]
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for name, condition in conditions.items():
            for gen, row in condition["generators"].items():
                writer.writerow({
                    "condition": name, "perturbation": condition["perturbation"] or "", "strength":
                    "" if condition["strength"] is None else condition["strength"], "generator": gen,
                    **{key: ("" if isinstance(row[key], float) and math.isnan(row[key]) else row[key]) for key in columns[4:]},
                })
    files.append("metrics.csv")
    with open(output / "scores.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(score_rows[0]))
        writer.writeheader()
        writer.writerows(score_rows)
    files.append("scores.csv")
    (output / "metrics.md").write_text(markdown_report(conditions, threshold))
    files.append("metrics.md")
    if errors:
        with open(output / "skipped.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows(errors)
        files.append("skipped.csv")
    if plots:
        plot_per_generator(conditions[CLEAN]["generators"], output / "per_generator.png",
                           f"ITEM on {Path(str(data)).name} (clean, threshold {threshold:.3g})")
        plot_robustness(conditions, output / "robustness.png")
        files += ["per_generator.png", "robustness.png"]
    results = {
        "model": str(model_dir),
        "data": str(data),
        "threshold": threshold,
        "images": images,
        "conditions": conditions,
        "skipped": [{"path": path, "reason": reason} for path, reason in errors],
        "files": files + ["metrics.json"],
    }
    (output / "metrics.json").write_text(json.dumps(_json_ready(results), indent=2) + "\n")
    return results
