"""The audit's warning about a condition that makes the classes differ in file format by construction.

Some papers evaluate with the fake images alone JPEG-compressed (e.g. at quality 96), to "match" JPEG reals. It
does not remove a format shortcut: it moves it. The fakes all carry one fresh JPEG at one quality (and 4:2:0
chroma subsampling from PIL's encoder), the reals whatever compression their source gave them, so the two
classes still differ in their compression history, and a detector that scores well may be reading that. ITEM
offers it only as the explicit, named `item evaluate --fake-only-jpeg Q`; `--equalize jpeg:Q` re-encodes both
classes alike instead.
"""

from __future__ import annotations


def fake_only_jpeg_warning(quality: int) -> str:
    """The warning a run with `--fake-only-jpeg quality` logs and records in metrics.json."""
    return (f"--fake-only-jpeg {quality}: only the FAKE images were JPEG-compressed (quality {quality}), the real ones "
            "kept their own files. This puts a format difference between the classes (every fake carries one "
            f"fresh JPEG at quality {quality}, each real its source's compression): a detector can score well by "
            "reading the compression instead of the content. Report it as this named condition, never as 'clean'; "
            "--equalize jpeg:Q re-encodes both classes alike.")


FAKE_ONLY_SAMPLE = 400  # images the evaluation's measurement re-encodes at most (class-stratified, seeded)


def audit_fake_only_jpeg(records, quality: int, workers: int = 4, **options):
    """Audit `records` as `--fake-only-jpeg quality` leaves them: every fake re-encoded as a JPEG of `quality` (as
    the evaluation does it), every real as it is on disk. `options` go to `audit`.

    Returns the `AuditReport` with the original paths, this condition's warning first among its warnings, and a
    note that says what was audited. Its metadata AUC measures the format difference the condition puts between
    the classes (near 1.0 when the reals are not JPEGs of that quality).
    """
    import tempfile
    from pathlib import Path

    from ..data.perturb import Perturbation
    from . import audit
    from .equalize import write_all_equalized
    from .files import check_records

    checked = check_records(records)
    encoder = Perturbation("equalize", int(quality))  # the same encoder as the condition: PIL JPEG, no metadata
    with tempfile.TemporaryDirectory(prefix="item-audit-fake-jpeg-") as folder:
        fakes = [record for record in checked if record["label"] == 1]
        written, failed, originals = write_all_equalized(fakes, encoder, Path(folder), workers)
        report = audit([record for record in checked if record["label"] == 0] + written, **{"log": False, **options})
    report.files = [_with_path(f, originals.get(f.path, f.path)) for f in report.files]
    report.skipped = failed + [{**item, "path": originals.get(item["path"], item["path"])} for item in report.skipped]
    report.notes.insert(0, f"Audited with the fake images re-encoded as JPEG quality {quality} and the real images as "
                           "they are on disk (--fake-only-jpeg), not the files on disk.")
    report.warnings.insert(0, fake_only_jpeg_warning(int(quality)))
    return report


def _with_path(metadata, path: str):
    import dataclasses

    return dataclasses.replace(metadata, path=path)


def measured_fake_only_jpeg_warning(records, quality: int, seed: int = 0) -> str:
    """`fake_only_jpeg_warning`, with the metadata ROC-AUC the condition gives on a sample of `records` (at most
    FAKE_ONLY_SAMPLE images, class-stratified with `seed`) when it can be measured."""
    from .equalize import stratified
    from .files import check_records

    sample = stratified(check_records([r for r in records if getattr(r, "label", None) in (0, 1)]), FAKE_ONLY_SAMPLE,
                        seed)
    text = fake_only_jpeg_warning(int(quality))
    report = audit_fake_only_jpeg(sample, quality, seed=seed)
    if report.metadata_auc == report.metadata_auc:  # not NaN: enough images of both classes were read
        text += (f" Measured: on {report.modelled_images} of the images so treated, the file metadata alone separate "
                 f"the classes with ROC-AUC {report.metadata_auc:.2f} (0.5: no shortcut).")
    return text
