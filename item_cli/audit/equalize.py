"""Helpers of `audit_equalized` and `audit_warnings` (in the package): re-encoded copies and samples of records.

`--equalize jpeg:95` re-encodes every image alike before any network sees it. What a detector can still
tell from the files' form after that is what the equalized files show, so each image is re-encoded exactly as
the evaluation and training do (`Perturbation.encode`) and written to a temporary folder for the audit.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

WARNING_SAMPLE = 20000  # training images the warning audit reads at most (a class-stratified, seeded sample)
EQUALIZED_SAMPLE = 2000  # ... and re-encodes at most, when the training equalizes


def write_equalized(record: dict, index: int, folder: Path, equalize) -> tuple[dict | None, dict | None]:
    """(the record of the re-encoded file, None) or (None, {"path", "reason"}) for one image."""
    from item_detector.images_item import load_image

    from .files import image_source

    try:
        data = equalize.encode(load_image(image_source(record)))
    except (ValueError, OSError) as error:
        return None, {"path": record["path"], "reason": f"cannot be re-encoded ({error})"}
    target = folder / f"{index:08d}.jpg"
    target.write_bytes(data)
    return {**record, "path": str(target), "row": None}, None


def stratified(records: list[dict], limit: int, seed: int) -> list[dict]:
    """At most `limit` records, each label keeping its share, drawn with `seed`; all of them when fewer."""
    if len(records) <= limit:
        return records
    rng = np.random.default_rng(seed)
    labels = np.array([record["label"] for record in records])
    keep = []
    for label in (0, 1):
        members = np.flatnonzero(labels == label)
        count = int(round(limit * len(members) / len(records)))
        keep += rng.choice(members, size=min(count, len(members)), replace=False).tolist()
    return [records[i] for i in sorted(keep)]


def record_label(record):
    """A record's label, from a dict or from an object's attribute (None when it has none)."""
    return record.get("label") if isinstance(record, dict) else getattr(record, "label", None)


def write_all_equalized(records: list[dict], equalize, folder: Path, workers: int = 4) -> tuple[list[dict], list[dict], dict]:
    """(records of the re-encoded files, {"path", "reason"} of the images that failed, {new path: original path})."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL releases the GIL while it codes
        done = list(pool.map(lambda item: write_equalized(item[1], item[0], folder, equalize), enumerate(records)))
    written = [record for record, _ in done if record is not None]
    failed = [problem for _, problem in done if problem is not None]
    originals = {record["path"]: records[i]["path"] for i, (record, _) in enumerate(done) if record is not None}
    return written, failed, originals

