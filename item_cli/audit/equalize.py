"""The audit of equalized data, and the warnings `item train` logs about its training data.

`--equalize jpeg:95` re-encodes every image alike before any network sees it. What a detector can still
tell from the files' form after that is what the equalized files show, so `audit_equalized` re-encodes each
image exactly as the evaluation and training do (`Perturbation.encode`), writes the files to a temporary
folder, audits those, and reports them under the original paths. Format, JPEG settings and metadata
shortcuts disappear; a size shortcut (equalization keeps every image's size) stays, and the audit says so.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from item_cli.audit.files import check_records

logger = logging.getLogger(__name__)

WARNING_SAMPLE = 20000  # training images the warning audit reads at most (a class-stratified, seeded sample)
EQUALIZED_SAMPLE = 2000  # ... and re-encodes at most, when the training equalizes


def _write_equalized(record: dict, index: int, folder: Path, equalize) -> tuple[dict | None, dict | None]:
    """(the record of the re-encoded file, None) or (None, {"path", "reason"}) for one image."""
    from item_detector.images_item import load_image

    try:
        data = equalize.encode(load_image(record["path"]))
    except (ValueError, OSError) as error:
        return None, {"path": record["path"], "reason": f"cannot be re-encoded ({error})"}
    target = folder / f"{index:08d}.jpg"
    target.write_bytes(data)
    return {**record, "path": str(target)}, None


def audit_equalized(records: Sequence, equalize, workers: int = 4, **options):
    """Audit `records` as `equalize` (an "equalize" `Perturbation`) re-encodes them; `options` go to `audit`.

    Returns the `AuditReport` with the original paths, the images that could not be re-encoded among its
    skipped files, and a note that says what was audited.
    """
    from item_cli.audit import audit

    if getattr(equalize, "kind", None) != "equalize":
        raise ValueError(f"equalize={equalize!r}; pass an equalization, e.g. parse_equalize('jpeg:95').")
    checked = check_records(records)
    with tempfile.TemporaryDirectory(prefix="item-audit-") as folder:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL releases the GIL while it codes
            done = list(pool.map(lambda item: _write_equalized(item[1], item[0], Path(folder), equalize),
                                 enumerate(checked)))
        written = [record for record, _ in done if record is not None]
        failed = [problem for _, problem in done if problem is not None]
        originals = {record["path"]: checked[i]["path"] for i, (record, _) in enumerate(done) if record is not None}
        report = audit(written, **options)
    report.files = [dataclasses.replace(f, path=originals.get(f.path, f.path)) for f in report.files]
    report.skipped = failed + [{**item, "path": originals.get(item["path"], item["path"])} for item in report.skipped]
    report.notes.insert(0, f"Audited the images as --equalize re-encodes them ({equalize.name}: every image decoded and "
                           "saved alike, metadata dropped), not the files on disk. Image sizes are kept, so a size "
                           "shortcut survives equalization.")
    return report


def _stratified(records: list[dict], limit: int, seed: int) -> list[dict]:
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


def audit_warnings(records: Sequence, equalize=None, seed: int = 0) -> list[str]:
    """One-line warnings about metadata shortcuts in labelled training `records` (empty: none found).

    Reads the headers of at most `WARNING_SAMPLE` images (class-stratified, seeded); with `equalize`, audits at
    most `EQUALIZED_SAMPLE` of them as that equalization re-encodes them. Unlabelled records are left out;
    nothing is logged here (the caller logs the lines).
    """
    labelled = [record for record in check_records([r for r in records if _label(r) in (0, 1)])]
    labelled = _stratified(labelled, EQUALIZED_SAMPLE if equalize is not None else WARNING_SAMPLE, seed)
    if len({record["label"] for record in labelled}) < 2:
        return []
    if equalize is not None:
        report = audit_equalized(labelled, equalize, seed=seed, log=False)
        fix = "it survives equalization (sizes and content are kept): resize or crop both classes alike"
    else:
        from item_cli.audit import audit

        report = audit(labelled, seed=seed, log=False)
        fix = "train with --equalize jpeg:95 to re-encode both classes alike"
    what = f"{len(labelled)} of the training images" + (f", as {equalize.name} re-encodes them" if equalize else "")
    return [f"shortcut audit of {what}: {warning} A detector can learn this instead of the image content; "
            f"run `item audit` for the tables; {fix}." for warning in report.warnings]


def _label(record):
    return record.get("label") if isinstance(record, dict) else getattr(record, "label", None)
