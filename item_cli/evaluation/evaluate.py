"""Per-generator evaluation the way the field reports it, with test-time perturbations.

For each condition (clean, then every `--jpeg-quality`, `--blur-sigma`, `--downscale`), every image is
perturbed, annotated, embedded (each through the cache, so a second evaluation costs only the head) and
scored. Per generator: accuracy on real, on fake, at the threshold, AP, ROC-AUC and the oracle accuracy,
plus a mean row. Outputs in one folder:

    metrics.csv   one row per (condition, generator), mean rows included
    metrics.json  the same, with the run's settings and the skipped files
    metrics.md    Markdown tables: robustness summary, then per-generator per condition
    scores.csv    one row per (condition, image): score (full precision), prediction, caption and nouns
    per_generator.png, robustness.png   bar chart of the clean results; metric against perturbation strength
    skipped.csv   every input file that gave no score, with the reason (only when there are some)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..cache import FrozenRows, frozen_rows, process_state
from ..checkpoint import load_checkpoint
from ..data import LABEL_NAMES, load_records, require_labels
from ..data.perturb import Perturbation
from .metrics import detection_metrics, mean_row
from .report import (
    CLEAN,
    MEAN,
    json_ready,
    markdown_report,
    plot_per_generator,
    plot_robustness,
    write_metrics_csv,
    write_rows_csv,
)

OUTPUT_FILES = ("metrics.csv", "metrics.json", "metrics.md", "scores.csv", "per_generator.png", "robustness.png")


def head_scores(model, rows: FrozenRows, batch_size: int = 1024) -> np.ndarray:
    """Fake probabilities of cached-feature rows, from the head alone (no backbone runs)."""
    import torch

    fake_index = int(model.config.label2id.get("fake", 1))
    device = next(model.head.parameters()).device
    scores = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows.features.take(np.arange(start, min(start + batch_size, len(rows))))
            logits = model.forward_head(
                torch.from_numpy(batch["image_embeds"]).to(device), torch.from_numpy(batch["text_embeds"]).to(device),
                torch.from_numpy(batch["object_mask"]).to(device),
            )
            scores.append(logits.float().softmax(dim=-1)[:, fake_index].cpu().numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


def score(model, processor, records, perturbation=None, state=None, **cache) -> tuple[FrozenRows, np.ndarray]:
    """(scored rows, fake probabilities): the cached frozen work for this condition, then the head."""
    rows = frozen_rows(records, processor, model, perturbation=perturbation, state=state, **cache)
    return rows, head_scores(model, rows)


def generator_table(labels: np.ndarray, scores: np.ndarray, generators: np.ndarray, threshold: float) -> dict:
    """{generator: metrics} for every generator, then the mean row under "mean"."""
    table = {}
    for name in sorted(set(generators.tolist())):
        mask = generators == name
        table[name] = detection_metrics(labels[mask], scores[mask], threshold)
    table[MEAN] = mean_row(list(table.values()))
    return table


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
    storage_dtype: str = "float16",
    plots: bool = True,
    revision: str | None = None,
    decode_workers: int = 2,
    decode_timeout_s: float = 60.0,
) -> dict | None:
    """Evaluate the checkpoint `model_dir` on `data`, clean and under each perturbation; write every output file.

    Returns the results dict written to metrics.json ("conditions" -> name -> "generators" -> generator ->
    metrics), with "files" listing what was written. Under `accelerate launch` the caches are computed by all
    processes and only the main process scores and writes (the others return None).
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}; pass a fake probability in [0, 1].")
    state = process_state()
    records, skipped = load_records(data, layout=layout, split=split, generator=generator)
    require_labels(records, "evaluation")
    model, processor = load_checkpoint(model_dir, revision)
    threshold = float(model.config.decision_threshold if threshold is None else threshold)
    cache = dict(cache_dir=cache_dir, batch_size=batch_size, storage_dtype=storage_dtype, decode_workers=decode_workers,
                 decode_timeout_s=decode_timeout_s)

    conditions, score_rows, images = {}, [], 0
    for perturbation in [None, *perturbations]:
        name = CLEAN if perturbation is None else perturbation.name
        rows, scores = score(model, processor, records, perturbation, state, **cache)
        if perturbation is None:
            skipped += rows.skipped
        if not state.is_main_process:
            continue
        images = images or len(rows)
        labels, generators = rows.labels, np.asarray(rows.column("generator"))
        conditions[name] = {
            "perturbation": None if perturbation is None else perturbation.kind,
            "strength": None if perturbation is None else perturbation.value,
            "generators": generator_table(labels, scores, generators, threshold),
        }
        score_rows += _score_rows(name, rows, scores, threshold)
    if not state.is_main_process:
        return None
    if not score_rows:
        raise ValueError("None of the images could be read; see the skipped files above.")
    return write_results(output_dir, conditions, score_rows, skipped, threshold, model_dir, data, images, plots)


def _score_rows(condition: str, rows: FrozenRows, scores: np.ndarray, threshold: float) -> list[dict]:
    out = []
    for record, annotation, value in zip(rows.records, rows.annotations, scores):
        predicted = int(value >= threshold)
        out.append({
            "condition": condition, "path": record.path, "generator": record.generator, "label": LABEL_NAMES[record.label],
            "fake_probability": repr(float(value)), "predicted": LABEL_NAMES[predicted],
            "correct": int(predicted == record.label), "caption": annotation.caption, "nouns": "; ".join(annotation.nouns),
        })
    return out


def write_results(output_dir, conditions, score_rows, skipped, threshold, model_dir, data, images, plots) -> dict:
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    write_metrics_csv(conditions, output / "metrics.csv")
    write_rows_csv(score_rows, output / "scores.csv")
    (output / "metrics.md").write_text(markdown_report(conditions, threshold))
    files = ["metrics.csv", "scores.csv", "metrics.md"]
    if skipped:
        write_rows_csv([{"path": item.path, "reason": item.reason} for item in skipped], output / "skipped.csv")
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
        "skipped": [{"path": item.path, "reason": item.reason} for item in skipped],
        "files": files + ["metrics.json"],
    }
    (output / "metrics.json").write_text(json.dumps(json_ready(results), indent=2) + "\n")
    return results
