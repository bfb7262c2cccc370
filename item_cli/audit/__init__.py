"""Shortcut audit: can the files' metadata alone tell real from fake, before any detector looks at pixels?

The field's most common benchmarking mistake is a detector that learned the file format instead of the
generator: JPEG reals beside PNG fakes, 256x256 fakes beside photos of every size, reals with EXIF and fakes
without. `audit(records)` reads every file's header (never its pixels), summarises the metadata per class and
per generator, and measures with a small cross-validated classifier how well the metadata alone separate the
classes. A high ROC-AUC means that a detector scoring well on this data may have learned the files, not the
images; the warning says which property gives it away, with the numbers.

    from item_cli.audit import audit
    report = audit([{"path": "a.jpg", "label": 0, "generator": "sd15"}, ...])
    print(report.to_markdown()); report.warnings; report.to_dict()

`audit_equalized(records, Perturbation("equalize", 95))` audits the files as `--equalize jpeg:95` re-encodes
them (what survives equalization); `audit_warnings(records)` gives the one-line warnings `item train` logs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from item_cli.audit.equalize import EQUALIZED_SAMPLE, WARNING_SAMPLE, record_label, stratified, write_all_equalized
from item_cli.audit.files import FileMetadata, check_records, read_all
from item_cli.audit.markdown import render
from item_cli.audit.model import FEATURE_GROUPS, group_files, metadata_aucs, subsample, usable_folds
from item_cli.audit.summary import CLASS_NAMES, describe, summarize
from item_cli.console import json_ready

logger = logging.getLogger(__name__)

MAX_SHORTCUTS = 3  # properties named in a warning
# How a generator's metadata AUC was measured, by `compared_with`.
COMPARISONS = {
    "own reals": "its fakes vs its reals",
    "all reals": "its fakes vs the reals of every generator",
    "all fakes": "its reals vs the fakes of every generator",
}


@dataclass
class AuditReport:
    """What an audit found. AUCs are NaN when they could not be computed (e.g. one class only).

    metadata_auc: cross-validated ROC-AUC of a classifier that sees only file metadata (0.5 = no shortcut).
    feature_aucs: the same, per property group alone, highest first. shortcuts: the groups named in the
    warning, each {"feature", "auc", "description"}. per_class: {"real": summary, "fake": summary}.
    per_generator: {generator: {"real": summary | None, "fake": summary | None, "metadata_auc": float,
    "compared_with": "own reals" | "all reals" | "all fakes"}}. skipped: {"path", "reason"} per
    unreadable file. files: the metadata read per file.
    """

    metadata_auc: float
    feature_aucs: dict[str, float]
    shortcuts: list[dict]
    warnings: list[str]
    per_class: dict[str, dict | None]
    per_generator: dict[str, dict]
    skipped: list[dict]
    folds: int
    seed: int
    warn_auc: float
    modelled_images: int
    notes: list[str] = field(default_factory=list)
    files: list[FileMetadata] = field(default_factory=list, repr=False)

    @property
    def flagged(self) -> bool:
        """True when the metadata alone reach `warn_auc`, overall or for one generator."""
        return bool(self.warnings)

    def to_dict(self, include_files: bool = False) -> dict:
        """JSON-ready content (NaN becomes None); `include_files` adds one entry per file read."""
        content = {
            "metadata_auc": self.metadata_auc,
            "flagged": self.flagged,
            "warnings": self.warnings,
            "shortcuts": self.shortcuts,
            "feature_aucs": self.feature_aucs,
            "per_class": self.per_class,
            "per_generator": self.per_generator,
            "images_read": len(self.files),
            "modelled_images": self.modelled_images,
            "skipped": self.skipped,
            "settings": {"folds": self.folds, "seed": self.seed, "warn_auc": self.warn_auc},
            "notes": self.notes,
        }
        if include_files:
            content["files"] = [f.to_dict() for f in self.files]
        return json_ready(content)

    def to_markdown(self) -> str:
        """Markdown tables a researcher can paste: verdict, per class, per property, per generator, skipped."""
        return render(self)


def _check_settings(folds: int, seed: int, warn_auc: float, max_model_images: int) -> None:
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds={folds!r}: cross-validation needs an integer number of folds of at least 2 (e.g. 5).")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed={seed!r}: pass an integer seed (e.g. 0).")
    if not isinstance(warn_auc, (int, float)) or not 0.5 < warn_auc <= 1.0:
        raise ValueError(f"warn_auc={warn_auc!r}: pick an AUC above 0.5 and at most 1 (e.g. 0.8).")
    if isinstance(max_model_images, bool) or not isinstance(max_model_images, int) or max_model_images < 4:
        raise ValueError(f"max_model_images={max_model_images!r}: pass an integer of at least 4 (e.g. 20000).")


def _shortcuts(files: Sequence[FileMetadata], overall: float, groups: dict, warn_auc: float) -> list[dict]:
    """The property groups to name: those that reach `warn_auc` alone; failing that, when only their
    combination does, the strongest two that do better than chance."""
    ranked = [(name, auc) for name, auc in _ranked(groups).items() if not math.isnan(auc)]
    chosen = [name for name, auc in ranked if auc >= warn_auc][:MAX_SHORTCUTS]
    if not chosen and overall >= warn_auc:
        chosen = [name for name, auc in ranked if auc > 0.6][:2]
    return [
        {"feature": name, "auc": groups[name], "description": describe(name, group_files(name, files))}
        for name in chosen
    ]


def _ranked(groups: dict) -> dict:
    """Highest AUC first (to two decimals); ties in FEATURE_GROUPS order, which puts causes (format, size)
    before their consequences (file size); NaN last."""
    order = list(FEATURE_GROUPS)

    def key(item):
        name, auc = item
        return (math.isnan(auc), 0.0 if math.isnan(auc) else -round(auc, 2), order.index(name))

    return dict(sorted(groups.items(), key=key))


def _warning(prefix: str, auc: float, shortcuts: list[dict]) -> str:
    if not shortcuts:
        return f"{prefix}AUC {auc:.2f} from metadata alone, from no single property: check the per-class table."
    words = "; ".join(f"{s['description']} ({s['feature']} alone: AUC {s['auc']:.2f})" for s in shortcuts)
    return f"{prefix}AUC {auc:.2f} from metadata alone: {words}."


def _generator_subset(files: Sequence[FileMetadata], generator: str) -> tuple[list[FileMetadata], str]:
    """The generator's files, completed with the other class from everywhere when it has only one."""
    own = [f for f in files if f.generator == generator]
    labels = {f.label for f in own}
    if labels == {1}:
        return own + [f for f in files if f.label == 0 and f.generator != generator], "all reals"
    if labels == {0}:
        return own + [f for f in files if f.label == 1 and f.generator != generator], "all fakes"
    return own, "own reals"


def _per_generator(
    files: Sequence[FileMetadata], folds: int, seed: int, warn_auc: float, limit: int, overall_flagged: bool
) -> tuple[dict, list[str]]:
    """Summaries and metadata AUC per generator, plus warnings for generators with a shortcut of their own
    (only when the whole data set is not already flagged, which would repeat the same warning)."""
    generators = sorted({f.generator for f in files})
    results, warnings = {}, []
    for generator in generators:
        own = [f for f in files if f.generator == generator]
        subset, compared_with = _generator_subset(files, generator)
        modelled = subsample(subset, limit, seed)
        auc, _ = metadata_aucs(modelled, folds, seed, by_group=False)
        results[generator] = {
            "real": summarize([f for f in own if f.label == 0]),
            "fake": summarize([f for f in own if f.label == 1]),
            "metadata_auc": auc,
            "compared_with": compared_with,
        }
        if len(generators) > 1 and not overall_flagged and auc >= warn_auc:
            _, groups = metadata_aucs(modelled, folds, seed)
            shortcuts = _shortcuts(subset, auc, groups, warn_auc)
            what = COMPARISONS[compared_with]
            warnings.append(_warning(f"Generator {generator!r} ({what}): ", auc, shortcuts))
    return results, warnings


def audit(
    records: Sequence, folds: int = 5, seed: int = 0, warn_auc: float = 0.8, max_model_images: int = 20000,
    log: bool = True,
) -> AuditReport:
    """Audit a labelled image set for metadata shortcuts, from the file headers only.

    records: dicts (or objects with these attributes) with "path", "label" (0 = real, 1 = fake) and
    "generator" (missing: "all").
    folds, seed: stratified cross-validation of the metadata classifier. warn_auc: the metadata ROC-AUC from
    which a warning is issued. max_model_images: the classifier sees at most this many images (a seeded,
    class-stratified sample); the summaries always cover every readable file.
    Unreadable files are skipped, logged and listed in `skipped`; the audit never stops for one. With `log`
    (the default) every warning is also logged; callers that word the warnings themselves pass log=False.
    """
    _check_settings(folds, seed, warn_auc, max_model_images)
    files, skipped = read_all(check_records(records))
    by_class = {label: [f for f in files if f.label == label] for label in (0, 1)}
    notes = []
    modelled = subsample(files, max_model_images, seed)
    if usable_folds(np.array([f.label for f in modelled]), folds) < 2:
        notes.append("Metadata AUC not computed: it needs at least 2 readable images of each class.")
        overall, groups = math.nan, {name: math.nan for name in FEATURE_GROUPS}
    else:
        overall, groups = metadata_aucs(modelled, folds, seed)
    if len(modelled) < len(files):
        notes.append(
            f"The metadata classifier saw a class-stratified sample of {len(modelled)} of {len(files)} images."
        )
    flagged = not math.isnan(overall) and overall >= warn_auc
    shortcuts = _shortcuts(files, overall, groups, warn_auc) if flagged else []  # words from every file
    warnings = [_warning("", overall, shortcuts)] if flagged else []
    per_generator, generator_warnings = _per_generator(files, folds, seed, warn_auc, max_model_images, flagged)
    warnings += generator_warnings
    for warning in warnings if log else ():
        logger.warning("audit: %s", warning)
    return AuditReport(
        metadata_auc=overall, feature_aucs=_ranked(groups), shortcuts=shortcuts, warnings=warnings,
        per_class={CLASS_NAMES[label]: summarize(group) for label, group in by_class.items()},
        per_generator=per_generator, skipped=skipped, folds=folds, seed=seed, warn_auc=float(warn_auc),
        modelled_images=len(modelled), notes=notes, files=files,
    )


def audit_equalized(records: Sequence, equalize, workers: int = 4, **options) -> AuditReport:
    """Audit `records` as `equalize` (an "equalize" `Perturbation`, e.g. `parse_equalize("jpeg:95")`) re-encodes
    them: each image decoded, re-encoded exactly as evaluation and training do, written to a temporary folder
    and audited there. `options` go to `audit`.

    Returns the `AuditReport` with the original paths, the images that could not be re-encoded among its skipped
    files, and a note that says what was audited. Format, JPEG settings and metadata shortcuts disappear; a size
    shortcut stays (equalization keeps sizes), and so does a difference in earlier compression (it is in the pixels).
    """
    if getattr(equalize, "kind", None) != "equalize":
        raise ValueError(f"equalize={equalize!r}; pass an equalization, e.g. parse_equalize('jpeg:95').")
    checked = check_records(records)
    with tempfile.TemporaryDirectory(prefix="item-audit-") as folder:
        written, failed, originals = write_all_equalized(checked, equalize, Path(folder), workers)
        report = audit(written, **options)
    report.files = [dataclasses.replace(f, path=originals.get(f.path, f.path)) for f in report.files]
    report.skipped = failed + [{**item, "path": originals.get(item["path"], item["path"])} for item in report.skipped]
    report.notes.insert(0, f"Audited the images as --equalize re-encodes them ({equalize.name}: every image decoded and "
                           "saved alike, metadata dropped), not the files on disk. Image sizes are kept, and so is the "
                           "trace of an earlier compression in the pixels: a size or file-size shortcut can survive.")
    return report


def audit_warnings(records: Sequence, equalize=None, seed: int = 0) -> list[str]:
    """One-line warnings about metadata shortcuts in labelled training `records` (empty: none found).

    Reads the headers of at most `WARNING_SAMPLE` images (class-stratified, seeded); with `equalize`, audits at
    most `EQUALIZED_SAMPLE` of them as that equalization re-encodes them. Unlabelled records are left out;
    nothing is logged here (the caller logs the lines).
    """
    labelled = check_records([r for r in records if record_label(r) in (0, 1)])
    labelled = stratified(labelled, EQUALIZED_SAMPLE if equalize is not None else WARNING_SAMPLE, seed)
    if len({record["label"] for record in labelled}) < 2:
        return []
    if equalize is not None:
        report = audit_equalized(labelled, equalize, seed=seed, log=False)
        fix = "equalization does not remove it (image sizes, and any earlier compression, stay in the pixels)"
    else:
        report = audit(labelled, seed=seed, log=False)
        fix = "train with --equalize jpeg:95 to re-encode both classes alike"
    what = f"{len(labelled)} of the training images" + (f", as {equalize.name} re-encodes them" if equalize else "")
    return [f"shortcut audit of {what}: {warning} A detector can learn this instead of the image content; "
            f"run `item audit` for the tables; {fix}." for warning in report.warnings]
