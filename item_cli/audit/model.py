"""How well file metadata alone tell real from fake: a small cross-validated classifier, numpy only.

The classifier is L2-regularised logistic regression fitted by Newton's method. Each numeric property is
encoded as its standardised value, quantile bins and indicators of its most frequent exact values, so that
non-monotone shortcuts ("fakes are all 512x512, reals are smaller and larger") are found as easily as
monotone ones; each categorical property is one-hot encoded. Every encoding is fitted on the training folds
only. The score is the mean ROC-AUC over stratified, seeded folds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from item_cli.audit.files import FileMetadata
from item_cli.evaluation.metrics import roc_auc

CATEGORICAL, NUMERIC = "categorical", "numeric"
MAX_CATEGORIES = 20  # one-hot columns per categorical property; rarer values share the all-zero code
FREQUENT_VALUES = 5  # exact-value indicators per numeric property
QUANTILES = (1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6)
JPEG_FORMATS = ("JPEG", "MPO")  # Pillow calls multi-picture JPEGs (many phone photos) MPO
JPEG_ONLY_GROUPS = ("JPEG quality", "JPEG quantization tables", "chroma subsampling")


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _quality(file: FileMetadata) -> float:
    return math.nan if file.jpeg_quality is None else float(file.jpeg_quality)


Column = tuple[str, Callable[[FileMetadata], object]]

# Property groups, each named as the verdict will name it; a group's columns are modelled together. The order
# breaks ties between equally separating groups in the verdict: causes before consequences.
FEATURE_GROUPS: dict[str, list[Column]] = {
    "file format": [(CATEGORICAL, lambda f: f.format)],
    "JPEG quality": [(NUMERIC, _quality)],
    "JPEG quantization tables": [(CATEGORICAL, lambda f: f.jpeg_tables or "not JPEG")],
    "chroma subsampling": [(CATEGORICAL, lambda f: f.subsampling or "n/a")],
    "image size": [
        (NUMERIC, lambda f: float(f.width)),
        (NUMERIC, lambda f: float(f.height)),
        (NUMERIC, lambda f: math.log(f.pixels)),
        (CATEGORICAL, lambda f: f"{f.width}x{f.height}"),
    ],
    "aspect ratio": [(NUMERIC, lambda f: round(math.log(f.aspect_ratio), 4))],
    "colour mode": [(CATEGORICAL, lambda f: f.mode)],
    "EXIF": [(CATEGORICAL, lambda f: _yes_no(f.exif))],
    "camera make/model": [(CATEGORICAL, lambda f: _yes_no(f.camera))],
    "ICC profile": [(CATEGORICAL, lambda f: _yes_no(f.icc))],
    # Before "text metadata": generation parameters are text, and the cause is the generator's provenance.
    "provenance metadata": [(CATEGORICAL, lambda f: _yes_no(bool(f.provenance)))],
    "text metadata": [(CATEGORICAL, lambda f: _yes_no(f.text))],
    # Last: file size mostly follows from the properties above (format, quality, size).
    "file size": [(NUMERIC, lambda f: math.log(f.file_bytes + 1)), (NUMERIC, lambda f: f.bits_per_pixel)],
}


def column_values(files: Sequence[FileMetadata], groups: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """(kind, values) for every column of `groups`: float arrays (NaN = missing) or object arrays of str."""
    columns = []
    for group in groups:
        for kind, getter in FEATURE_GROUPS[group]:
            dtype = np.float64 if kind == NUMERIC else object
            columns.append((kind, np.array([getter(f) for f in files], dtype=dtype)))
    return columns


def _numeric_block(train: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
    known = train[~np.isnan(train)]
    if known.size == 0:
        return []
    center, spread = float(np.median(known)), float(known.std()) or 1.0
    filled = np.where(np.isnan(values), center, values)
    block = [(filled - center) / spread]
    if np.isnan(train).any():
        block.append(np.isnan(values).astype(np.float64))
    edges = np.unique(np.quantile(known, QUANTILES))
    bins = np.searchsorted(edges, filled, side="right")
    block += [(bins == b).astype(np.float64) for b in range(len(edges) + 1)]
    distinct, counts = np.unique(known, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:FREQUENT_VALUES]
    block += [(values == distinct[i]).astype(np.float64) for i in order if counts[i] >= max(2, 0.05 * known.size)]
    return block


def _categorical_block(train: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
    common = [value for value, _ in Counter(train.tolist()).most_common(MAX_CATEGORIES)]
    return [(values == value).astype(np.float64) for value in common]


def design_matrix(columns: list[tuple[str, np.ndarray]], train: np.ndarray) -> np.ndarray:
    """Encode every row, with encodings fitted on the rows selected by the boolean mask `train`."""
    blocks = []
    for kind, values in columns:
        encode = _numeric_block if kind == NUMERIC else _categorical_block
        blocks += encode(values[train], values)
    rows = len(columns[0][1]) if columns else 0
    return np.column_stack(blocks) if blocks else np.zeros((rows, 0))


def _log_loss(design: np.ndarray, labels: np.ndarray, weights: np.ndarray, penalty: np.ndarray) -> float:
    logits = design @ weights
    return float(np.logaddexp(0.0, logits).sum() - labels @ logits + 0.5 * (penalty * weights**2).sum())


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1.0, iterations: int = 30) -> np.ndarray:
    """Weights (intercept first) of L2-regularised logistic regression, by Newton's method with backtracking.

    The penalty keeps the weights finite when the classes are perfectly separable, which is exactly the
    case a shortcut audit meets; the intercept is (almost) unpenalised.
    """
    design = np.column_stack([np.ones(len(features)), features])
    penalty = np.full(design.shape[1], float(l2))
    penalty[0] = 1e-6
    weights = np.zeros(design.shape[1])
    loss = _log_loss(design, labels, weights, penalty)
    for _ in range(iterations):
        probabilities = 1.0 / (1.0 + np.exp(-np.clip(design @ weights, -35.0, 35.0)))
        gradient = design.T @ (probabilities - labels) + penalty * weights
        curvature = probabilities * (1.0 - probabilities)
        hessian = (design * curvature[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        for _ in range(20):  # halve the step until the loss goes down: Newton can overshoot from zero
            candidate = weights - step
            candidate_loss = _log_loss(design, labels, candidate, penalty)
            if candidate_loss <= loss:
                break
            step = step / 2.0
        else:
            break
        converged = loss - candidate_loss < 1e-9 * max(1.0, abs(loss))
        weights, loss = candidate, candidate_loss
        if converged:
            break
    return weights


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index per row: each class shuffled with `seed`, then dealt round-robin into `folds` folds."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    for value in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == value))
        assignment[members] = np.arange(members.size) % folds
    return assignment


def usable_folds(labels: np.ndarray, folds: int) -> int:
    """`folds`, reduced so that every test fold holds both classes; below 2 no cross-validation is possible."""
    return min(int(folds), int((labels == 0).sum()), int((labels == 1).sum()))


def cross_validated_auc(
    columns: list[tuple[str, np.ndarray]], labels: np.ndarray, folds: int, seed: int
) -> float:
    """Mean ROC-AUC over stratified folds of a logistic regression on `columns`; NaN when it cannot run.

    Columns that take a single value carry no information; with none left the AUC is exactly 0.5.
    """
    folds = usable_folds(labels, folds)
    if folds < 2:
        return math.nan
    informative = [(kind, values) for kind, values in columns if len(set(values.tolist())) > 1]
    if not informative:
        return 0.5
    assignment = stratified_folds(labels, folds, seed)
    aucs = []
    for fold in range(folds):
        train = assignment != fold
        design = design_matrix(informative, train)
        weights = fit_logistic(design[train], labels[train].astype(np.float64))
        scores = weights[0] + design[~train] @ weights[1:]
        aucs.append(roc_auc(labels[~train], scores))
    return float(np.mean(aucs))


def subsample(files: Sequence[FileMetadata], limit: int, seed: int) -> list[FileMetadata]:
    """At most `limit` files, drawn per class in proportion (seeded), in their original order."""
    if len(files) <= limit:
        return list(files)
    labels = np.array([f.label for f in files])
    rng = np.random.default_rng(seed)
    keep = []
    for value in (0, 1):
        members = np.flatnonzero(labels == value)
        share = max(1, round(limit * members.size / len(files)))
        keep.append(rng.choice(members, size=min(share, members.size), replace=False))
    return [files[i] for i in sorted(np.concatenate(keep).tolist())]


def group_files(group: str, files: Sequence[FileMetadata]) -> list[FileMetadata]:
    """The files a property group is judged on: the JPEG files for JPEG-only properties, else all.

    Judged on every file, "JPEG quality" would only repeat "file format" whenever one class has no JPEG;
    among JPEG files it answers its own question (do the classes differ in how they were compressed?).
    """
    return [f for f in files if f.format in JPEG_FORMATS] if group in JPEG_ONLY_GROUPS else list(files)


def metadata_aucs(files: Sequence[FileMetadata], folds: int, seed: int, by_group: bool = True) -> tuple[float, dict]:
    """(AUC of all metadata together, {group: AUC of that group alone}) by cross-validation.

    A JPEG-only group's AUC is computed on the JPEG files (NaN unless both classes have some).
    """
    labels = np.array([f.label for f in files], dtype=np.int64)
    overall = cross_validated_auc(column_values(files, list(FEATURE_GROUPS)), labels, folds, seed)
    groups = {}
    if by_group:
        for group in FEATURE_GROUPS:
            judged = group_files(group, files)
            judged_labels = np.array([f.label for f in judged], dtype=np.int64)
            groups[group] = cross_validated_auc(column_values(judged, [group]), judged_labels, folds, seed)
    return overall, groups
