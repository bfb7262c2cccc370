"""The most confident mistakes of an evaluation, drawn as explanation pictures for the HTML report.

Per group (set or generator) of the clean condition: the false positives (real images scored at or above the
threshold) with the highest fake probability, and the false negatives (fake images below it) with the lowest,
k of each. No network runs: each picture is drawn from what the evaluation cached for that image (its caption,
nouns and boxes, and its embeddings through the head), so it explains the very score in the tables, on the image
as the evaluation saw it (with the same equalization).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

GALLERY_FOLDER = "gallery"
KINDS = ("false positives", "false negatives")
PICTURE_SIZE = 512  # longest side of a gallery picture, in pixels


@dataclass
class Mistake:
    """One gallery entry. `file` is the picture's name under gallery/ (None when it could not be drawn)."""

    group: str
    kind: str
    path: str
    label: str
    fake_probability: float
    caption: str
    row: int  # index in the evaluation's rows
    file: str | None = None
    error: str | None = None


def confident_mistakes(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray, threshold: float,
                       size: int) -> dict[str, dict[str, list[int]]]:
    """{group: {"false positives": indices, "false negatives": indices}}, groups in first-seen order.

    Args:
        groups, labels, scores: (N,) group names, labels (0 real, 1 fake) and fake probabilities.
        threshold: the decision threshold (fake at or above it). size: at most this many of each kind.

    False positives are sorted by descending score, false negatives by ascending score; ties keep data order.
    """
    groups, labels, scores = np.asarray(groups), np.asarray(labels), np.asarray(scores, dtype=np.float64)
    out = {}
    for group in dict.fromkeys(groups.tolist()):
        members = np.flatnonzero(groups == group)
        positives = members[(labels[members] == 0) & (scores[members] >= threshold)]
        negatives = members[(labels[members] == 1) & (scores[members] < threshold)]
        out[group] = {
            KINDS[0]: positives[np.argsort(-scores[positives], kind="stable")][:size].tolist(),
            KINDS[1]: negatives[np.argsort(scores[negatives], kind="stable")][:size].tolist(),
        }
    return out


def picture_name(path: str) -> str:
    """A collision-free file name for the picture of `path`: a readable stem and a short hash of the full path
    (two sets may both hold a.jpg); only [A-Za-z0-9._-] characters."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:40].strip("._") or "image"
    return f"{stem}-{hashlib.sha256(str(path).encode('utf-8')).hexdigest()[:10]}.png"


def draw_gallery(model, rows, mistakes: list[Mistake], output: Path, perturbation=None, threshold: float | None = None) -> None:
    """Draw each mistake's explanation picture into `output`/gallery/ (one file per distinct image path), setting
    `file` (or `error`) on every mistake. `rows` are the evaluation's `FrozenRows`: only the head runs."""
    from item_detector.images_item import load_image
    from item_detector.visualization_item import draw_explanation

    from ..results.scoring import head_explanations

    if not mistakes:
        return
    folder = output / GALLERY_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    unique = list({m.path: m for m in mistakes}.values())  # the same image in two sets is drawn once
    results = head_explanations(model, rows, [m.row for m in unique], threshold)
    drawn = {}
    for i, mistake in enumerate(unique):
        row = rows.records[mistake.row].row  # a data-set row: its stored bytes (`item_cli.data.sources`)
        try:
            image = load_image(mistake.path if row is None else row.read_bytes())
        except (ValueError, OSError) as error:  # the file changed or went away since it was scored
            logger.warning("gallery: cannot draw %s: %s", mistake.path, error)
            drawn[mistake.path] = (None, str(error))
            continue
        image = image if perturbation is None else perturbation(image)
        result = results[i]
        name = picture_name(mistake.path)
        draw_explanation(image, result, max_size=PICTURE_SIZE).save(folder / name, format="PNG")
        drawn[mistake.path] = (name, None)
    for mistake in mistakes:
        mistake.file, mistake.error = drawn[mistake.path]


def gallery_entries(rows, scores: np.ndarray, groups: list[str], threshold: float, size: int) -> list[Mistake]:
    """The `Mistake`s of scored rows (`FrozenRows`, their (N,) scores and group names), in gallery order."""
    chosen = confident_mistakes(np.asarray(groups, dtype=object), rows.labels, scores, threshold, size)
    entries = []
    for group, kinds in chosen.items():
        for kind, indices in kinds.items():
            for i in indices:
                record = rows.records[i]
                entries.append(Mistake(group, kind, record.path, "real" if record.label == 0 else "fake",
                                       float(scores[i]), rows.annotations[i].caption, i))
    return entries
