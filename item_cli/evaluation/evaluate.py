"""Per-set (or per-generator) evaluation the way the field reports it, with test-time perturbations.

The data are one or more named sets (`item_cli.evaluation.sets`: repeated `--data NAME=PATH` or a protocol), or
one unnamed folder grouped by its generators. For each condition (clean, then every `--jpeg-quality`,
`--blur-sigma`, `--downscale`, `--webp-quality`, `--noise-sigma`, `--center-crop`, `--social`), every image is equalized (`--equalize`, if given), perturbed, annotated, embedded
(each through the cache, so a second evaluation costs only the head) and scored. Per group: accuracy on real, on
fake, at the threshold, AP, ROC-AUC, the oracle accuracy and the decision and calibration metrics (balanced ACC,
ECE, NLL, Brier, EER, Pd@1/5/10 % FAR), plus a mean row (`metrics.mean_row`) and a worst row; when the checkpoint
has an unsure band, also coverage and accuracy on the covered images (`abstention`). Outputs in
one folder:

    table.md, table.tex, table.csv   the results table as a paper prints it: sets in order, mean row, in %
    metrics.csv   one row per (condition, set / generator), mean rows included
    metrics.json  the same, with the run's settings, the sets and the skipped files
    metrics.md    Markdown tables: robustness summary, then per group per condition
    scores.csv    one row per (condition, image): set, score (full precision), prediction, caption and nouns
    per_generator.png, robustness.png   bar chart of the clean results; metric against perturbation strength
    reliability.png   reliability diagram of the clean scores (15 equal-width bins of p(fake), with the ECE)
    run.json, run-sets.json   what the run used, for `item evaluate --compare` (see `compare.py`)
    report.html, gallery/   the tables, the plots and the most confident mistakes as explanation pictures
    skipped.csv   every input file that gave no score, with the reason (only when there are some)
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache import FrozenRows, frozen_rows, process_state
from ..checkpoint import load_checkpoint
from ..data import LABEL_NAMES, require_labels
from ..data.perturb import Perturbation, compose
from ..public_names import public_name
from ..audit.formats import measured_fake_only_jpeg_warning
from .abstention import BAND_COLUMNS, add_band_columns
from .compare import build_run, checkpoint_identity, write_run
from .gallery import draw_gallery, gallery_entries
from .html_report import render_report
from .metrics import METRIC_DEFINITIONS, detection_metrics, mean_row, one_class, worst_row
from .report import (
    CLEAN,
    MEAN,
    json_ready,
    markdown_report,
    plot_per_generator,
    plot_reliability,
    plot_robustness,
    write_metrics_csv,
    write_rows_csv,
)
from .sets import EvalSet, LoadedSets, load_sets
from .tables import DEFAULT_COLUMNS, check_columns, write_tables

logger = logging.getLogger(__name__)

OUTPUT_FILES = ("metrics.csv", "metrics.json", "metrics.md", "scores.csv", "per_generator.png", "robustness.png",
                "reliability.png", "table.md", "table.tex", "table.csv", "report.html", "run.json", "run-sets.json")
MEAN_RULE = ("ACC averages every group; ACC real / ACC fake the groups with real / fake images; AP, ROC-AUC and "
             "oracle ACC only the groups with both classes.")


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


def score(model, processor, records, perturbation=None, state=None, fake_perturbation=None,
          **cache) -> tuple[FrozenRows, np.ndarray]:
    """(scored rows, fake probabilities): the cached frozen work for this condition, then the head.

    `fake_perturbation`, when given, replaces `perturbation` for the fake images only (`--fake-only-jpeg`); the
    rows come back in the records' order either way.
    """
    if fake_perturbation is None:
        rows = frozen_rows(records, processor, model, perturbation=perturbation, state=state, **cache)
        return rows, head_scores(model, rows)
    parts = [frozen_rows(part, processor, model, perturbation=treatment, state=state, **cache)
             for part, treatment in (([r for r in records if r.label != 1], perturbation),
                                     ([r for r in records if r.label == 1], fake_perturbation)) if part]
    rows = parts[0] if len(parts) == 1 else parts[0].joined(parts[1], records)
    return rows, head_scores(model, rows)


def generator_table(labels: np.ndarray, scores: np.ndarray, generators: np.ndarray, threshold: float,
                    order: list[str] | None = None, band=None) -> dict:
    """{group: metrics} for every group (in `order`, default sorted; groups without images left out), then the
    mean row under "mean"; with an unsure `band`, each row also has coverage and covered ACC (`abstention`)."""
    table = {}
    present = set(generators.tolist())
    for name in order if order is not None else sorted(present):
        if name in present:
            mask = generators == name
            table[name] = detection_metrics(labels[mask], scores[mask], threshold)
    table[MEAN] = mean_row(dict(table))
    return table if band is None else add_band_columns(table, labels, scores, generators, band, threshold, MEAN)


@dataclass
class Scored:
    """Every condition's results, and the clean condition's rows and scores (for the gallery)."""

    conditions: dict = field(default_factory=dict)
    score_rows: list = field(default_factory=list)
    images: int = 0
    skipped: list = field(default_factory=list)
    clean: tuple | None = None  # (FrozenRows, scores (N,)) of the clean condition


def _as_sets(data) -> list[EvalSet]:
    """`data` as sets: a path (one unnamed set), or a list of `EvalSet` / (name, path) pairs (named sets)."""
    if isinstance(data, (str, os.PathLike)):
        return [EvalSet(Path(str(data)).name or str(data), str(data), named=False)]
    sets = [item if isinstance(item, EvalSet) else EvalSet(str(item[0]), str(item[1])) for item in data]
    if MEAN in {item.name for item in sets if item.named}:
        raise ValueError(f"A set is named {MEAN!r}, the name of the mean row; name it otherwise (--data NAME=PATH).")
    return sets


def _score_conditions(model, processor, loaded: LoadedSets, perturbations, equalize, threshold, state, cache,
                      fake_only_jpeg: Perturbation | None = None) -> Scored:
    """Score every condition (equalize, then the condition's perturbation; the composed name keys the cache).
    With `fake_only_jpeg`, the fake images are JPEG-compressed first (before equalize and the perturbation)."""
    scored = Scored(skipped=list(loaded.skipped))
    order = [item.name for item in loaded.sets] if loaded.named else None
    for perturbation in [None, *perturbations]:
        name = CLEAN if perturbation is None else perturbation.name
        treatment = compose(equalize, perturbation)
        for_fakes = None if fake_only_jpeg is None else compose(fake_only_jpeg, equalize, perturbation)
        rows, scores = score(model, processor, loaded.records, treatment, state, for_fakes, **cache)
        if perturbation is None:
            scored.skipped += rows.skipped
        if not state.is_main_process:
            continue
        if perturbation is None:
            scored.clean = (rows, scores)
        scored.images = scored.images or len(rows)
        groups = np.asarray(rows.column("generator"), dtype=object)
        table = generator_table(rows.labels, scores, groups, threshold, order, model.config.unsure_band)
        scored.conditions[name] = {
            "perturbation": None if perturbation is None else perturbation.kind,
            "strength": None if perturbation is None else perturbation.value,
            "settings": None if perturbation is None else perturbation.settings,
            "generators": table,
            "worst": worst_row({group: row for group, row in table.items() if group != MEAN}),
        }
        scored.score_rows += _score_rows(name, rows, scores, threshold, loaded)
    return scored


def _warn_one_class(table: dict) -> list[str]:
    """Log (and return) one warning per group with one class only: it has no AP / AUC and is left out of the means."""
    messages = []
    for name, row in table.items():
        if name != MEAN and one_class(row):
            have = f"{row['n_fake']} fake and no real" if row["n_real"] == 0 else f"{row['n_real']} real and no fake"
            messages.append(f"set {name!r} has {have} images: no AP or AUC; it is left out of the mean AP and mean AUC "
                            "(its ACC still counts in the mean ACC).")
            logger.warning(messages[-1])
    return messages


def _check_records(loaded: LoadedSets) -> None:
    """Every record labelled, and no generator named like the mean row."""
    require_labels(loaded.records, "evaluation")
    if any(record.generator == MEAN for record in loaded.records):
        raise ValueError(f"A generator folder is named {MEAN!r}, the name of the mean row; rename it, or name the set.")


def _warnings(scored: Scored, fake_only_jpeg: int | None, seed: int = 0) -> list[str]:
    """The run's warnings (logged here): one-class sets, and the audit's warning about --fake-only-jpeg, with the
    metadata AUC it gives on a sample of the scored images. ValueError when no image could be scored."""
    if not scored.score_rows:
        raise ValueError("None of the images could be read; see the skipped files above.")
    warnings = _warn_one_class(scored.conditions[CLEAN]["generators"])
    if fake_only_jpeg is not None:
        warnings.append(measured_fake_only_jpeg_warning(scored.clean[0].records, int(fake_only_jpeg), seed))
        logger.warning(warnings[-1])
    return warnings


def _check_options(threshold, gallery_size, equalize, columns) -> tuple[str, ...]:
    """Raise a ValueError naming a bad option and the fix; returns the validated table columns."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}; pass a fake probability in [0, 1].")
    if isinstance(gallery_size, bool) or not isinstance(gallery_size, int) or gallery_size < 0:
        raise ValueError(f"gallery_size={gallery_size!r}; pass the number of mistakes to show per kind and set (e.g. 6).")
    if equalize is not None and equalize.kind != "equalize":
        raise ValueError(f"equalize={equalize.name!r} is not an equalization; build it with parse_equalize('jpeg:95').")
    return check_columns(columns)


def _model_settings(config, threshold: float | None, columns: tuple[str, ...]) -> tuple[float, tuple[str, ...]]:
    """(the threshold, the checkpoint's when None; the table's columns): with an unsure band, coverage and covered
    ACC join the columns; without one they cannot be asked for."""
    threshold = float(config.decision_threshold if threshold is None else threshold)
    if config.unsure_band is None:
        if set(columns) & set(BAND_COLUMNS):
            raise ValueError(f"--columns {' '.join(BAND_COLUMNS)} need a checkpoint with an unsure band; choose one "
                             "with item calibrate --unsure-error E (or --unsure-coverage C), or leave them out.")
        return threshold, columns
    return threshold, columns + tuple(c for c in BAND_COLUMNS if c not in columns)


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
    *,
    max_image_pixels: int | None = None,
    equalize: Perturbation | None = None,
    max_per_class: int | None = None,
    seed: int = 0,
    columns=DEFAULT_COLUMNS,
    report: bool = True,
    gallery_size: int = 6,
    protocol: str | None = None,
    fake_only_jpeg: int | None = None,
    data_options=None,
) -> dict | None:
    """Evaluate the checkpoint `model_dir` on `data`, clean and under each perturbation; write every output file.

    Args:
        data: a folder, manifest or data set (one unnamed set, grouped by its generators; `data_options`: its
            `SourceOptions`), or a list of `EvalSet` / (name, path) pairs: named sets, the table's rows in order.
        equalize: an "equalize" `Perturbation` applied to every image before each condition's perturbation.
        max_per_class: keep a balanced sample of up to this many real and fake images per set, drawn with `seed`.
        columns: the metric columns of table.md / .tex / .csv. report: write report.html with a gallery of
            the `gallery_size` most confident false positives and false negatives per set (0: no gallery).
        fake_only_jpeg: JPEG-compress the fake images only, at this quality, first (a format shortcut: warned).

    Returns the results dict written to metrics.json ("conditions" -> name -> "generators" -> group -> metrics) and
    "files" (what was written); under `accelerate launch` all fill the caches, only the main one scores (others: None).
    """
    columns = _check_options(threshold, gallery_size, equalize, columns)
    state = process_state()
    loaded = load_sets(_as_sets(data), layout, split, generator, max_per_class, seed, protocol, data_options)
    _check_records(loaded)
    model, processor = load_checkpoint(model_dir, revision)
    threshold, columns = _model_settings(model.config, threshold, columns)
    cache = dict(cache_dir=cache_dir, batch_size=batch_size, storage_dtype=storage_dtype, decode_workers=decode_workers,
                 decode_timeout_s=decode_timeout_s, max_image_pixels=max_image_pixels)
    scored = _score_conditions(model, processor, loaded, perturbations, equalize, threshold, state, cache,
                               None if fake_only_jpeg is None else Perturbation("jpeg", int(fake_only_jpeg)))
    if not state.is_main_process:
        return None
    settings = {"model": public_name(model_dir), "threshold": threshold, "equalize": getattr(equalize, "name", None),
                "max_per_class": max_per_class, "seed": seed, "columns": list(columns), "protocol": protocol,
                "revision": revision, "fake_only_jpeg": fake_only_jpeg}
    run = {"loaded": loaded, "scored": scored, "settings": settings, "warnings": _warnings(scored, fake_only_jpeg, seed),
           "model": model, "identity": checkpoint_identity(model_dir, revision), "perturbations": perturbations}
    return write_results(Path(output_dir), run, plots, report, gallery_size, equalize)


def _score_rows(condition: str, rows: FrozenRows, scores: np.ndarray, threshold: float, loaded: LoadedSets) -> list[dict]:
    out = []
    for record, annotation, value in zip(rows.records, rows.annotations, scores):
        predicted = int(value >= threshold)
        out.append({
            "condition": condition, "set": loaded.set_of(record), "path": record.path, "generator": record.generator,
            "label": LABEL_NAMES[record.label], "fake_probability": repr(float(value)), "predicted": LABEL_NAMES[predicted],
            "correct": int(predicted == record.label), "caption": annotation.caption, "nouns": "; ".join(annotation.nouns),
        })
    return out


def _title(run: dict) -> str:
    loaded, settings = run["loaded"], run["settings"]
    what = settings["protocol"] or (", ".join(item.name for item in loaded.sets) if loaded.named else loaded.sets[0].name)
    if len(what) > 60:
        what = what[:57] + "..."
    equalized = f", equalized {settings['equalize']}" if settings["equalize"] else ""
    return f"ITEM on {what}{equalized}"


def write_results(output: Path, run: dict, plots: bool, report: bool, gallery_size: int, equalize) -> dict:
    """Write every output file of an evaluation into `output`; returns the metrics.json content."""
    loaded, scored, settings = run["loaded"], run["scored"], run["settings"]
    conditions, threshold, title = scored.conditions, settings["threshold"], _title(run)
    output.mkdir(parents=True, exist_ok=True)
    write_metrics_csv(conditions, output / "metrics.csv", loaded.sets[0].name if not loaded.named else None)
    write_rows_csv(scored.score_rows, output / "scores.csv")
    (output / "metrics.md").write_text(markdown_report(conditions, threshold))
    files = ["metrics.csv", "scores.csv", "metrics.md", *write_tables(conditions, tuple(settings["columns"]), threshold,
                                                                       title, output)]
    if scored.skipped:
        write_rows_csv([{"path": item.path, "reason": item.reason} for item in scored.skipped], output / "skipped.csv")
        files.append("skipped.csv")
    drawn = []
    for name in ("per_generator.png", "robustness.png", "reliability.png"):  # an earlier run's plot is not this run's
        (output / name).unlink(missing_ok=True)
    if plots:
        drawn = _write_plots(output, run, title)
        files += drawn
    files += _write_run(output, run)
    if report:
        files += _write_report(output, run, title, gallery_size, equalize, drawn)
    results = {
        **settings, "data": [{"set": item.name, **loaded.counts[item.name]} for item in loaded.sets],
        "grouped_by": "set" if loaded.named else "generator", "images": scored.images, "mean_rule": MEAN_RULE,
        "metric_definitions": METRIC_DEFINITIONS, "warnings": run["warnings"], "conditions": conditions,
        "skipped": [{"path": item.path, "reason": item.reason} for item in scored.skipped],
        "files": files + ["metrics.json"],
    }
    (output / "metrics.json").write_text(json.dumps(json_ready(results), indent=2) + "\n")
    return results


def _write_plots(output: Path, run: dict, title: str) -> list[str]:
    """per_generator.png, reliability.png and (when a perturbation was evaluated) robustness.png; returns the
    names drawn. The command checks for matplotlib first (`plotting_available`)."""
    conditions, threshold = run["scored"].conditions, run["settings"]["threshold"]
    plot_per_generator(conditions[CLEAN]["generators"], output / "per_generator.png",
                       f"{title} (clean, threshold {threshold:.3g})")
    rows, scores = run["scored"].clean
    plot_reliability(rows.labels, scores, output / "reliability.png", f"{title} (clean)")
    drawn = ["per_generator.png", "reliability.png"]
    return drawn + (["robustness.png"] if plot_robustness(conditions, output / "robustness.png") else [])


def _write_run(output: Path, run: dict) -> list[str]:
    """run.json and run-sets.json: what the run used, for `item evaluate --compare` (see `compare.py`)."""
    loaded, (rows, _), settings = run["loaded"], run["scored"].clean, run["settings"]
    members = {item.name: ([], []) for item in loaded.sets}
    for record, key in zip(rows.records, rows.keys):
        keys, labels = members[loaded.set_of(record)]
        keys.append(key)
        labels.append(record.label)
    skipped = {}
    for item in run["scored"].skipped:  # a skipped file is counted under the set whose folder holds it
        owner = next((s.name for s in loaded.sets if Path(item.path).is_relative_to(Path(s.path))), "")
        skipped[owner] = skipped.get(owner, 0) + 1
    chosen = {key: settings[key] for key in ("threshold", "seed", "max_per_class", "equalize", "fake_only_jpeg",
                                              "protocol")}
    content, sets = build_run(run["identity"], members, [p.settings for p in run["perturbations"]], chosen, skipped)
    return write_run(output, content, sets)


def _write_report(output: Path, run: dict, title: str, gallery_size: int, equalize, plots: list[str]) -> list[str]:
    """report.html and, with a gallery, its pictures under gallery/; returns the names written."""
    loaded, scored, settings = run["loaded"], run["scored"], run["settings"]
    rows, scores = scored.clean
    mistakes = None
    if gallery_size:
        groups = rows.column("generator")  # the table's groups: named sets carry their name as generator
        mistakes = gallery_entries(rows, scores, groups, settings["threshold"], gallery_size)
        draw_gallery(run["model"], rows, mistakes, output, equalize, settings["threshold"])
    shown = {"model": settings["model"], "threshold": f"{settings['threshold']:.4g}",
             "sets": ", ".join(f"{item.name} ({loaded.counts[item.name]['real']} real, "
                               f"{loaded.counts[item.name]['fake']} fake)" for item in loaded.sets),
             "equalize": settings["equalize"] or "none", "images scored": scored.images,
             "skipped files": len(scored.skipped), "mean row": MEAN_RULE}
    if settings["max_per_class"]:
        shown["sampling"] = f"at most {settings['max_per_class']} real and fake images per set (seed {settings['seed']})"
    page = render_report(title, shown, scored.conditions, tuple(settings["columns"]), settings["threshold"],
                         [output / name for name in plots], mistakes, gallery_size)
    (output / "report.html").write_text(page, encoding="utf-8")
    return ["report.html", *(["gallery/"] if any(m.file for m in mistakes or []) else [])]
