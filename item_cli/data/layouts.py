"""The field's data layouts, read into records with an explicit label mapping (0 = real, 1 = fake).

    CNNDetection / UniversalFakeDetect / NPR   root/<generator>/[<category>/]{0_real,1_fake}/*
    GenImage                                   root/<generator>/.../{train,val}/{ai,nature}/*   (ai = fake)
    CSV manifest                               path[,label][,generator], header optional

Labels come from folder names or the manifest's label column, never from the sort order of folder names
(`imagefolder` would load GenImage's ai = 0, nature = 1: the opposite meaning).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from .files import FileFinder, Skipped, display_path

LABEL_NAMES = ("real", "fake")  # index = label id; the same mapping as ItemConfig.id2label
REAL, FAKE, UNLABELLED = 0, 1, -1
LAYOUTS = ("auto", "cnndetection", "genimage", "csv")
CNNDETECTION_FOLDERS = {"0_real": REAL, "1_fake": FAKE}
GENIMAGE_FOLDERS = {"nature": REAL, "ai": FAKE}
GENIMAGE_SPLITS = ("train", "val", "test")
# Label values accepted in a CSV manifest (case-insensitive).
CSV_LABELS = {
    "0": REAL, "real": REAL, "0_real": REAL, "nature": REAL, "human": REAL, "authentic": REAL,
    "1": FAKE, "fake": FAKE, "1_fake": FAKE, "ai": FAKE, "artificial": FAKE, "generated": FAKE, "synthetic": FAKE,
}
MANIFEST_GENERATOR = "all"  # generator of manifest rows without a generator column


@dataclass(frozen=True)
class Record:
    """One image of a data set, as the data says it now: its label and groups are never cached.

    `path` is the image file, or for a row of a data set (`sources`) the row's identity, e.g.
    `hf:org/name:test#12`; such a record's `row.read_bytes()` fetches its stored image bytes when asked.
    """

    path: str
    label: int  # 0 real, 1 fake, -1 unlabelled
    generator: str
    category: str = ""
    split: str = ""
    row: object = field(default=None, compare=False, repr=False)  # sources.DatasetRow / RowBytes, None for a file


def detect_layout(source: str | os.PathLike) -> str:
    """`"csv"` for a file, `"cnndetection"` or `"genimage"` for a folder, from the label folders it holds."""
    source = Path(source)
    if source.is_file():
        return "csv"
    if not source.is_dir():
        raise ValueError(f"Data source {display_path(source)!r} does not exist; pass a data folder or a CSV manifest.")
    names = _folder_names(source)
    cnn, gen = bool(names & CNNDETECTION_FOLDERS.keys()), bool(names & GENIMAGE_FOLDERS.keys())
    if cnn and gen:
        raise ValueError(
            f"{display_path(source)!r} holds both 0_real/1_fake and ai/nature folders; pass --layout cnndetection or "
            "--layout genimage to say which."
        )
    if cnn or gen:
        return "cnndetection" if cnn else "genimage"
    raise ValueError(
        f"No label folders found under {display_path(source)!r}. Expected root/<generator>/[<category>/]{{0_real,1_fake}} "
        "(CNNDetection) or root/<generator>/{train,val}/{ai,nature} (GenImage), or pass a CSV manifest "
        "with columns path[,label][,generator]."
    )


def _folder_names(root: Path) -> set[str]:
    """The names of every folder under `root` (root included), each real folder visited once."""
    names, seen, pending = {root.name}, set(), [root]
    while pending:
        folder = pending.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            children = [Path(entry.path) for entry in os.scandir(folder)
                        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=True)]
        except OSError:
            continue
        names.update(child.name for child in children)
        pending.extend(children)
    return names


def scan_folder(root: str | os.PathLike, layout: str, split: str | None = None) -> tuple[list[Record], list[Skipped]]:
    """Records of a CNNDetection-style or GenImage-style folder, and the files that are not part of it.

    The generator is the first folder under `root` (label folders directly in `root`, or `root` itself being one,
    give `root`'s name); for CNNDetection the folders between generator and label folder are the category, for
    GenImage the label folder's parent names the split (`split` keeps one).
    """
    root = Path(root).absolute()
    label_folders = CNNDETECTION_FOLDERS if layout == "cnndetection" else GENIMAGE_FOLDERS
    records, skipped = [], []
    for path, problem in FileFinder().find([root]):
        if problem is not None:
            skipped.append(problem)
            continue
        parts = path.relative_to(root).parts[:-1]  # folders between root and the file
        if root.name in label_folders:
            parts, label_name, owner = (), root.name, root.parent.name
        else:
            hit = next((i for i, name in enumerate(parts) if name in label_folders), None)
            if hit is None:
                skipped.append(Skipped(str(path), f"not inside a {' or '.join(label_folders)} folder, so it has no label"))
                continue
            parts, label_name, owner = parts[:hit], parts[hit], root.name
        generator = parts[0] if parts else owner
        if layout == "cnndetection":
            record = Record(str(path), label_folders[label_name], generator, "/".join(parts[1:]))
        else:
            folder_split = parts[-1] if parts and parts[-1] in GENIMAGE_SPLITS else ""
            if split is not None and folder_split != split:
                continue
            if parts and parts[0] in GENIMAGE_SPLITS:
                generator = owner
            record = Record(str(path), label_folders[label_name], generator, "", folder_split)
        records.append(record)
    return records, skipped


def parse_label(value: str, where: str) -> int:
    """A manifest label as 0 (real) / 1 (fake); empty gives -1 (unlabelled); anything else a `ValueError`."""
    text = str(value).strip().lower()
    if text == "":
        return UNLABELLED
    if text not in CSV_LABELS:
        raise ValueError(
            f"{where}: label {value!r} is neither real nor fake. Use 0/real or 1/fake "
            f"(also accepted: {', '.join(sorted(CSV_LABELS))})."
        )
    return CSV_LABELS[text]


def read_manifest(manifest: str | os.PathLike) -> tuple[list[Record], list[Skipped]]:
    """Records of a CSV manifest `path[,label][,generator]`; relative paths are relative to the CSV's folder.

    A header row naming the columns (`path`, `label`, `generator`, any order, more columns ignored) is used when
    present; without one the columns are taken in that order. Missing files and repeated files are skipped.
    """
    manifest = Path(manifest).absolute()
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"CSV manifest {display_path(manifest)!r} is empty; write one row per image: path[,label][,generator].")
    header = [cell.strip().lower() for cell in rows[0]]
    if "path" in header:
        columns = {name: header.index(name) for name in ("path", "label", "generator") if name in header}
        rows, first_line = rows[1:], 2
    else:
        columns = {name: i for i, name in enumerate(("path", "label", "generator")[: len(rows[0])])}
        first_line = 1
    finder, records, skipped = FileFinder(), [], []
    for line, row in enumerate(rows, start=first_line):
        where = f"{display_path(manifest)}:{line}"
        cell = {name: row[index].strip() if index < len(row) else "" for name, index in columns.items()}
        if not cell.get("path"):
            skipped.append(Skipped(where, "empty path"))
            continue
        path = Path(cell["path"]).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        label = parse_label(cell.get("label", ""), where)
        problem = finder.check_file(path)
        if problem is not None:
            skipped.append(Skipped(str(path), f"{problem.reason} (listed in {where})"))
            continue
        records.append(Record(str(path), label, cell.get("generator") or MANIFEST_GENERATOR))
    return records, skipped
