"""The most confident mistakes of an evaluation, drawn as explanation pictures for the HTML report.

Per group (set or generator) of the clean condition: the false positives (real images scored at or above the
threshold) with the highest fake probability, and the false negatives (fake images below it) with the lowest,
k of each. Only these few images go through the checkpoint's pipeline (`explain=True`), with the caption the
evaluation cached for them (so the captioner does not run, and the picture explains the very caption that
was scored) and with the same equalization the evaluation applied to the image.
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


def draw_gallery(model_dir, mistakes: list[Mistake], output: Path, perturbation=None, threshold: float | None = None,
                 revision: str | None = None, batch_size: int = 8) -> None:
    """Draw each mistake's explanation picture into `output`/gallery/ (one file per distinct image path), setting
    `file` (or `error`) on every mistake. Loads the checkpoint's pipeline once."""
    import torch
    from transformers import pipeline

    if not mistakes:
        return
    folder = output / GALLERY_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = pipeline("image-classification", model=str(model_dir), revision=revision, trust_remote_code=True, device=device)
    unique = list({m.path: m for m in mistakes}.values())  # the same image in two sets is drawn once
    drawn: dict[str, tuple[str | None, str | None]] = {}
    for start in range(0, len(unique), batch_size):
        drawn.update(_draw_batch(pipe, unique[start:start + batch_size], folder, perturbation, threshold))
    for mistake in mistakes:
        mistake.file, mistake.error = drawn[mistake.path]


def _draw_batch(pipe, batch: list[Mistake], folder: Path, perturbation, threshold) -> dict:
    """{path: (picture file name, None) or (None, reason)} for one batch of images."""
    out, images, kept = {}, [], []
    for mistake in batch:
        try:
            image = pipe.read_image(mistake.path)
        except ValueError as error:  # the file changed or went away since it was scored
            logger.warning("gallery: cannot draw %s: %s", mistake.path, error)
            out[mistake.path] = (None, str(error))
            continue
        images.append(image if perturbation is None else perturbation(image))
        kept.append(mistake)
    if not images:
        return out
    options = {} if threshold is None else {"threshold": float(threshold)}
    results = pipe(images, captions=[m.caption for m in kept], explain=True, batch_size=len(images), **options)
    for mistake, image, result in zip(kept, images, results):
        name = picture_name(mistake.path)
        pipe.draw_explanation(image, result, max_size=PICTURE_SIZE).save(folder / name, format="PNG")
        out[mistake.path] = (name, None)
    return out


def gallery_entries(rows, scores: np.ndarray, groups: list[str], threshold: float, size: int) -> list[Mistake]:
    """The `Mistake`s of scored rows (`FrozenRows`, their (N,) scores and group names), in gallery order."""
    chosen = confident_mistakes(np.asarray(groups, dtype=object), rows.labels, scores, threshold, size)
    entries = []
    for group, kinds in chosen.items():
        for kind, indices in kinds.items():
            for i in indices:
                record = rows.records[i]
                entries.append(Mistake(group, kind, record.path, "real" if record.label == 0 else "fake",
                                       float(scores[i]), rows.annotations[i].caption))
    return entries
