"""Data as the user gives it now: folders and manifests -> records (path, label, generator, category, split).

Nothing here is cached: labels, generators and splits are read from the data on every run, and joined onto the
cached frozen work (`item_cli.cache`) by each image's content.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .files import FileFinder, Skipped, display_path, find_files
from .layouts import (
    FAKE,
    LABEL_NAMES,
    LAYOUTS,
    REAL,
    UNLABELLED,
    Record,
    detect_layout,
    read_manifest,
    scan_folder,
)
from .sources import SourceOptions, iter_source_records, load_data_set_records, record_bytes, source_kind

__all__ = [
    "FAKE", "LABEL_NAMES", "LAYOUTS", "REAL", "UNLABELLED", "FileFinder", "Record", "Skipped", "SourceOptions",
    "detect_layout", "display_path", "find_files", "iter_source_records", "load_records", "record_bytes",
    "require_labels", "source_kind", "split_train_val", "summary",
]


def load_records(
    source: str | os.PathLike,
    layout: str = "auto",
    split: str | None = None,
    generator: str | None = None,
    options: SourceOptions | None = None,
) -> tuple[list[Record], list[Skipped]]:
    """Read a data folder, CSV manifest or data set into records, with an explicit label mapping.

    Args:
        source: a CNNDetection-style or GenImage-style folder, a CSV manifest, or a data set (`sources`:
            `hf:ORG/NAME`, a save_to_disk folder, Parquet / Arrow / WebDataset files or globs).
        layout: "auto" (from what `source` holds), "cnndetection", "genimage" or "csv".
        split: GenImage only: keep "train" or "val".
        generator: give every image this generator name, e.g. for CNNDetection's ProGAN training folder
            `progan_train/<category>/{0_real,1_fake}`, whose first level is the category, not a generator.
        options: how to read a data set (`--data-config`, `--image-column`, `--label-map`, ...); `split` is
            the data set's split.

    Returns:
        (records in a deterministic order: sorted folders and files, or manifest order; the entries that are not
        part of the data, with the reason).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}; choose one of {LAYOUTS}.")
    options = dataclasses.replace(options or SourceOptions(), split=split)
    if source_kind(source) is not None:
        if layout != "auto":
            raise ValueError(f"--layout {layout} applies to folders and CSV manifests; {display_path(source)!r} is a "
                             "data set (drop --layout).")
        return load_data_set_records(os.fspath(source), options, generator)
    if options.columns_given():
        raise ValueError(f"{', '.join(options.columns_given())} apply to data sets (hf:, save_to_disk, Parquet, Arrow, "
                         f".tar); {display_path(source)!r} is a folder or CSV manifest.")
    source = Path(source).expanduser()
    if not source.exists():
        raise ValueError(f"Data source {display_path(source)!r} does not exist; pass a data folder or a CSV manifest.")
    if layout == "auto":
        layout = detect_layout(source)
    if split is not None and layout != "genimage":
        raise ValueError(f"split={split!r} applies to GenImage folders only; {display_path(source)!r} is {layout!r}.")
    if layout == "csv":
        if not source.is_file():
            raise ValueError(f"layout='csv' needs a CSV file, but {display_path(source)!r} is a folder.")
        records, skipped = read_manifest(source)
    elif not source.is_dir():
        raise ValueError(f"layout={layout!r} needs a folder, but {display_path(source)!r} is a file.")
    else:
        records, skipped = scan_folder(source, layout, split)
    if generator is not None:
        records = [dataclasses.replace(record, generator=generator) for record in records]
    if not records:
        raise ValueError(f"No images found in {display_path(source)!r} (layout {layout!r}).")
    return records, skipped


def require_labels(records: list[Record], what: str = "this command") -> None:
    """Raise a `ValueError` when some images have no label."""
    missing = sum(1 for record in records if record.label not in (REAL, FAKE))
    if missing:
        raise ValueError(
            f"{missing} of {len(records)} images have no label, but {what} needs labels. Give every manifest row a "
            "label column (0/real or 1/fake), or use a 0_real/1_fake or ai/nature folder layout."
        )


def split_train_val(records: list[Record], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of a (train, val) split, stratified by generator and label so both keep every group."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}; pass a fraction in (0, 1), e.g. 0.1.")
    rng = np.random.default_rng(seed)
    groups: dict = {}
    for index, record in enumerate(records):
        groups.setdefault((record.generator, record.label), []).append(index)
    val = []
    for key in sorted(groups):
        members = np.array(groups[key])
        count = min(max(int(round(len(members) * val_fraction)), 1), len(members) - 1) if len(members) >= 2 else 0
        val += rng.choice(members, size=count, replace=False).tolist()
    val_set = set(val)
    train = [i for i in range(len(records)) if i not in val_set]
    if not train or not val:
        raise ValueError(
            f"Cannot split {len(records)} images into train and validation with val_fraction={val_fraction}; "
            "pass more data or a separate validation set (--val-data)."
        )
    return train, sorted(val)


def summary(records: list[Record]) -> dict:
    """Image counts per generator and label, e.g. {"progan": {"real": 10, "fake": 10}}."""
    counts: dict = {}
    for record in records:
        name = LABEL_NAMES[record.label] if record.label in (REAL, FAKE) else "unlabelled"
        counts.setdefault(record.generator, {}).setdefault(name, 0)
        counts[record.generator][name] += 1
    return counts
