"""Labelled image data in the three layouts the field uses, as a `datasets.Dataset`.

    CNNDetection / UniversalFakeDetect / NPR / C2P-CLIP   root/<generator>/[<category>/]{0_real,1_fake}/*
    GenImage                                              root/<generator>/[...]/{train,val}/{ai,nature}/*
    CSV manifest                                          path[,label][,generator] (header optional)

Every layout gets the same explicit label mapping, 0 = real and 1 = fake, whatever the folder names sort to
(`imagefolder` would load GenImage's `ai` as 0 and `nature` as 1: the opposite meaning). The dataset has the
columns `path` (absolute), `label` (`ClassLabel(names=["real", "fake"])`, -1 where a manifest gives none),
`generator`, `category` and `split` ("" where the layout has none). Images are not decoded here: the cache
stages read them, and report and skip unreadable files there too.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from pathlib import Path

from item_detector.processing_item import IMAGE_EXTENSIONS

LABEL_NAMES = ("real", "fake")  # index = label id; the same mapping as ItemConfig.id2label
REAL, FAKE = 0, 1
LAYOUTS = ("auto", "cnndetection", "genimage", "csv")
# Folder names that carry a label, per layout. Never inferred from sort order.
CNNDETECTION_FOLDERS = {"0_real": REAL, "1_fake": FAKE}
GENIMAGE_FOLDERS = {"nature": REAL, "ai": FAKE}
GENIMAGE_SPLITS = ("train", "val", "test")
# Label values accepted in a CSV manifest (case-insensitive).
CSV_LABELS = {
    "0": REAL, "real": REAL, "0_real": REAL, "nature": REAL, "human": REAL, "authentic": REAL,
    "1": FAKE, "fake": FAKE, "1_fake": FAKE, "ai": FAKE, "artificial": FAKE, "generated": FAKE, "synthetic": FAKE,
}
MANIFEST_GENERATOR = "all"  # generator of manifest rows without a generator column


def features():
    """The `datasets.Features` of a loaded dataset (explicit ClassLabel: 0 = real, 1 = fake)."""
    from datasets import ClassLabel, Features, Value

    return Features(
        {
            "path": Value("string"),
            "label": ClassLabel(names=list(LABEL_NAMES)),
            "generator": Value("string"),
            "category": Value("string"),
            "split": Value("string"),
        }
    )


def report_skipped(path, reason: str, errors: list | None) -> None:
    """Print one skipped file on stderr and append `(path, reason)` to `errors`."""
    print(f"skipped {path}: {reason}", file=sys.stderr)
    if errors is not None:
        errors.append((str(path), str(reason)))


def _files(folder: Path, errors: list | None) -> list[Path]:
    """Image files under `folder` (recursively, sorted); other non-hidden files are reported and skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue  # .DS_Store and friends
            path = Path(dirpath) / name
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(path.resolve())
            else:
                report_skipped(path, f"not an image file (extension {path.suffix or 'none'!r})", errors)
    return found


def _label_folders(root: Path, names: dict) -> list[Path]:
    """Every folder under `root` (root included) whose name is a key of `names`, sorted."""
    hits = [root] if root.name in names else []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in dirnames:
            if name in names:
                hits.append(Path(dirpath) / name)
        dirnames[:] = [name for name in dirnames if name not in names]  # no need to look inside
    return hits


def detect_layout(source: str | os.PathLike) -> str:
    """`"csv"` for a file, `"cnndetection"` or `"genimage"` for a folder, from the label folders it holds."""
    source = Path(source)
    if source.is_file():
        return "csv"
    if not source.is_dir():
        raise ValueError(f"Data source {str(source)!r} does not exist; pass a data folder or a CSV manifest.")
    cnn = _label_folders(source, CNNDETECTION_FOLDERS)
    gen = _label_folders(source, GENIMAGE_FOLDERS)
    if cnn and gen:
        raise ValueError(
            f"{str(source)!r} holds both 0_real/1_fake and ai/nature folders; pass layout='cnndetection' or "
            "layout='genimage' (--layout) to say which."
        )
    if cnn:
        return "cnndetection"
    if gen:
        return "genimage"
    raise ValueError(
        f"No label folders found under {str(source)!r}. Expected root/<generator>/[<category>/]{{0_real,1_fake}} "
        "(CNNDetection) or root/<generator>/{train,val}/{ai,nature} (GenImage), or pass a CSV manifest "
        "with columns path[,label][,generator]."
    )


def scan_cnndetection(root: str | os.PathLike, errors: list | None = None) -> list[dict]:
    """Records of `root/<generator>/[<category>/]{0_real,1_fake}/*`.

    The first folder under `root` is the generator, what lies between it and the label folder the category;
    label folders directly in `root` (or `root` itself being one) give the generator `root`'s name.
    """
    root = Path(root).resolve()
    records = []
    for folder in _label_folders(root, CNNDETECTION_FOLDERS):
        parts = folder.relative_to(root).parts[:-1] if folder != root else ()
        generator = parts[0] if parts else (root.name if folder != root else root.parent.name)
        category = "/".join(parts[1:])
        label = CNNDETECTION_FOLDERS[folder.name]
        records += [
            {"path": str(path), "label": label, "generator": generator, "category": category, "split": ""}
            for path in _files(folder, errors)
        ]
    return records


def scan_genimage(root: str | os.PathLike, split: str | None = None, errors: list | None = None) -> list[dict]:
    """Records of `root/<generator>/[...]/{train,val}/{ai,nature}/*` (ai = fake, nature = real).

    `split` ("train", "val") keeps one split; the generator is the first folder under `root`.
    """
    root = Path(root).resolve()
    records = []
    for folder in _label_folders(root, GENIMAGE_FOLDERS):
        parts = folder.relative_to(root).parts[:-1] if folder != root else ()
        folder_split = parts[-1] if parts and parts[-1] in GENIMAGE_SPLITS else ""
        if split is not None and folder_split != split:
            continue
        generator = parts[0] if parts and parts[0] not in GENIMAGE_SPLITS else root.name
        label = GENIMAGE_FOLDERS[folder.name]
        records += [
            {"path": str(path), "label": label, "generator": generator, "category": "", "split": folder_split}
            for path in _files(folder, errors)
        ]
    return records


def parse_label(value: str, where: str) -> int:
    """A manifest label as 0 (real) / 1 (fake); empty gives -1 (unknown); anything else a `ValueError`."""
    text = str(value).strip().lower()
    if text == "":
        return -1
    if text not in CSV_LABELS:
        raise ValueError(
            f"{where}: label {value!r} is neither real nor fake. Use 0/real or 1/fake "
            f"(also accepted: {', '.join(sorted(CSV_LABELS))})."
        )
    return CSV_LABELS[text]


def read_manifest(manifest: str | os.PathLike, errors: list | None = None) -> list[dict]:
    """Records of a CSV manifest `path[,label][,generator]`; relative paths are relative to the CSV's folder.

    A header row naming the columns (`path`, `label`, `generator`, any order, more columns ignored) is used
    when present; without one the columns are taken in that order. Missing files are reported and skipped.
    """
    manifest = Path(manifest).resolve()
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"CSV manifest {str(manifest)!r} is empty; write one row per image: path[,label][,generator].")
    header = [cell.strip().lower() for cell in rows[0]]
    if "path" in header:
        columns = {name: header.index(name) for name in ("path", "label", "generator") if name in header}
        rows = rows[1:]
        first_line = 2
    else:
        columns = {name: i for i, name in enumerate(("path", "label", "generator")[: len(rows[0])])}
        first_line = 1
    records = []
    for line, row in enumerate(rows, start=first_line):
        where = f"{manifest}:{line}"
        def cell(name):
            index = columns.get(name)
            return row[index].strip() if index is not None and index < len(row) else ""
        raw_path = cell("path")
        if not raw_path:
            report_skipped(where, "empty path", errors)
            continue
        path = Path(raw_path).expanduser()
        path = (path if path.is_absolute() else manifest.parent / path).resolve()
        label = parse_label(cell("label"), where)
        if not path.is_file():
            report_skipped(path, f"file not found (listed in {where})", errors)
            continue
        records.append(
            {"path": str(path), "label": label, "generator": cell("generator") or MANIFEST_GENERATOR, "category": "", "split": ""}
        )
    return records


def check_readable(records: list[dict], errors: list | None = None) -> list[dict]:
    """Keep the records whose file opens as an image (header only, fast); report and skip the others.

    Truncated files pass this check; the cache stages decode every image and report those too.
    """
    from PIL import Image, UnidentifiedImageError

    kept = []
    for record in records:
        try:
            with Image.open(record["path"]) as image:
                image.size  # noqa: B018 - parsing the header is the check
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
            report_skipped(record["path"], f"cannot read as an image ({error})", errors)
            continue
        kept.append(record)
    return kept


def load_records(
    source: str | os.PathLike,
    layout: str = "auto",
    split: str | None = None,
    generator: str | None = None,
    errors: list | None = None,
    check_images: bool = True,
) -> list[dict]:
    """Scan `source` into records (dicts with path, label, generator, category, split); see `load_dataset`."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}; choose one of {LAYOUTS}.")
    source = Path(source).expanduser()
    if not source.exists():
        raise ValueError(f"Data source {str(source)!r} does not exist; pass a data folder or a CSV manifest.")
    if layout == "auto":
        layout = detect_layout(source)
    if layout == "csv":
        if not source.is_file():
            raise ValueError(f"layout='csv' needs a CSV file, but {str(source)!r} is a folder.")
        records = read_manifest(source, errors)
    elif not source.is_dir():
        raise ValueError(f"layout={layout!r} needs a folder, but {str(source)!r} is a file.")
    elif layout == "cnndetection":
        records = scan_cnndetection(source, errors)
    else:
        records = scan_genimage(source, split=split, errors=errors)
    if split is not None and layout != "genimage":
        raise ValueError(f"split={split!r} applies to GenImage folders only; {str(source)!r} is {layout!r}.")
    if generator is not None:
        for record in records:
            record["generator"] = generator
    if check_images:
        records = check_readable(records, errors)
    if not records:
        raise ValueError(f"No readable images found in {str(source)!r} (layout {layout!r}).")
    return records


def load_dataset(
    source: str | os.PathLike,
    layout: str = "auto",
    split: str | None = None,
    generator: str | None = None,
    errors: list | None = None,
    check_images: bool = True,
):
    """Load a data folder or CSV manifest into a `datasets.Dataset` with an explicit label mapping.

    Args:
        source: a CNNDetection-style or GenImage-style folder, or a CSV manifest.
        layout: "auto" (from what `source` holds), "cnndetection", "genimage" or "csv".
        split: GenImage only: keep "train" or "val".
        generator: give every image this generator name, e.g. for CNNDetection's ProGAN training folder
            `progan_train/<category>/{0_real,1_fake}`, whose first level is the category, not a generator.
        errors: a list that receives `(path, reason)` for every file skipped (also printed on stderr).
        check_images: open each file's header and skip the ones that are not images.

    Returns:
        `datasets.Dataset` with columns path, label (ClassLabel real/fake; -1 = unknown), generator, category,
        split, in a deterministic order (sorted folders and files, or manifest order).
    """
    from datasets import Dataset

    records = load_records(source, layout, split, generator, errors, check_images)
    return Dataset.from_list(records, features=features())


def require_labels(dataset, what: str = "this command") -> None:
    """Raise a `ValueError` when some images have no label (-1)."""
    labels = dataset["label"]
    missing = sum(1 for label in labels if label not in (REAL, FAKE))
    if missing:
        raise ValueError(
            f"{missing} of {len(labels)} images have no label, but {what} needs labels. Give every manifest row a "
            "label column (0/real or 1/fake), or use a 0_real/1_fake or ai/nature folder layout."
        )


def data_fingerprint(dataset) -> str:
    """A hash of what the images are: path, size and modification time of every file, in order."""
    digest = hashlib.sha256()
    for path in dataset["path"]:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()[:16]


def split_train_val(dataset, val_fraction: float = 0.1, seed: int = 0):
    """Split a dataset into (train, val), stratified by label and generator so both keep every group."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}; pass a fraction in (0, 1), e.g. 0.1.")
    import numpy as np

    rng = np.random.default_rng(seed)
    groups: dict = {}
    for index, (label, generator) in enumerate(zip(dataset["label"], dataset["generator"])):
        groups.setdefault((generator, label), []).append(index)
    val = []
    for key in sorted(groups):
        members = np.array(groups[key])
        count = int(round(len(members) * val_fraction))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        else:
            count = 0
        val += rng.choice(members, size=count, replace=False).tolist()
    val_set = set(val)
    train = [i for i in range(len(dataset)) if i not in val_set]
    if not train or not val:
        raise ValueError(
            f"Cannot split {len(dataset)} images into train and validation with val_fraction={val_fraction}; "
            "pass more data or a separate validation set (--val-data)."
        )
    return dataset.select(train), dataset.select(sorted(val))


def summary(dataset) -> dict:
    """Image counts per generator and label, e.g. {"progan": {"real": 10, "fake": 10}}."""
    counts: dict = {}
    for label, generator in zip(dataset["label"], dataset["generator"]):
        name = LABEL_NAMES[label] if label in (REAL, FAKE) else "unlabelled"
        counts.setdefault(generator, {}).setdefault(name, 0)
        counts[generator][name] += 1
    return counts
