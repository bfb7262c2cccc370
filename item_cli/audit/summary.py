"""Summaries of file metadata per class and generator, and plain-words descriptions of a shortcut.

Descriptions are direction-neutral: they report what the data show for each class ("all fakes are PNG,
all reals JPEG" or the reverse), never what fakes are expected to be.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from item_cli.audit.files import FileMetadata

CLASS_NAMES = {0: "real", 1: "fake"}
PLURALS = {0: "reals", 1: "fakes"}


def shares(values: Iterable) -> dict:
    """{value: share}, most common first; empty for no values."""
    counts = Counter(v for v in values if v is not None)
    total = sum(counts.values())
    return {str(value): round(count / total, 4) for value, count in counts.most_common()} if total else {}


def stats(values: Iterable[float]) -> dict | None:
    """{"median", "min", "max", "count"} of the non-missing values; None when there are none."""
    kept = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if kept.size == 0:
        return None
    return {
        "median": float(np.median(kept)), "min": float(kept.min()), "max": float(kept.max()), "count": int(kept.size)
    }


def _share(files: Sequence[FileMetadata], test: Callable[[FileMetadata], bool]) -> float | None:
    return round(sum(map(test, files)) / len(files), 4) if files else None


def summarize(files: Sequence[FileMetadata]) -> dict | None:
    """JSON-ready summary of one group of files (a class, or a class within a generator); None when empty."""
    if not files:
        return None
    jpegs = [f for f in files if f.jpeg_quality is not None]
    sizes = Counter(f"{f.width}x{f.height}" for f in files)
    common_size, common_count = sizes.most_common(1)[0]
    return {
        "images": len(files),
        "formats": shares(f.format for f in files),
        "modes": shares(f.mode for f in files),
        "jpeg_quality": stats(f.jpeg_quality for f in jpegs),
        "jpeg_custom_tables_share": _share(jpegs, lambda f: f.jpeg_tables == "custom"),
        "subsampling": shares(f.subsampling for f in jpegs),
        "width": stats(f.width for f in files),
        "height": stats(f.height for f in files),
        "pixels": stats(f.pixels for f in files),
        "aspect_ratio": stats(f.aspect_ratio for f in files),
        "distinct_sizes": len(sizes),
        "most_common_size": {"size": common_size, "share": round(common_count / len(files), 4)},
        "file_bytes": stats(f.file_bytes for f in files),
        "bits_per_pixel": stats(f.bits_per_pixel for f in files),
        "exif_share": _share(files, lambda f: f.exif),
        "camera_share": _share(files, lambda f: f.camera),
        "icc_share": _share(files, lambda f: f.icc),
        "text_share": _share(files, lambda f: f.text),
        "provenance_share": _share(files, lambda f: bool(f.provenance)),
    }


def percent(share: float) -> str:
    """A share in words-friendly percent; never rounds a partial share up to 100% or down to 0%."""
    if 0 < share < 0.01:
        return "<1%"
    if 0.99 < share < 1:
        return ">99%"
    return f"{share:.0%}"


def quantified(share: float, plural: str) -> str:
    """"all fakes" or "93% of fakes"."""
    return f"all {plural}" if share >= 1 else f"{percent(share)} of {plural}"


def number(value: float, digits: int = 0) -> str:
    return f"{value:.{digits}f}"


def spread(summary: dict | None, digits: int = 0) -> str:
    """"95" when constant, else "median 90 (75-95)"; "-" when missing."""
    if summary is None:
        return "-"
    if summary["min"] == summary["max"]:
        return number(summary["median"], digits)
    low, high = number(summary["min"], digits), number(summary["max"], digits)
    return f"median {number(summary['median'], digits)} ({low}-{high})"


def byte_size(count: float) -> str:
    for unit, size in (("MB", 1e6), ("KB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} B"


def _categorical_words(by_class: dict, getter: Callable, what: str) -> str:
    """"all fakes are PNG, all reals JPEG", or the most different value's share in each class."""
    shares_by_class = {label: shares(map(getter, files)) for label, files in by_class.items()}
    tops = {label: next(iter(s.items())) for label, s in shares_by_class.items()}
    if tops[1][0] != tops[0][0]:
        fake, real = tops[1], tops[0]
        suffix = f" ({what})" if what else ""
        return f"{quantified(fake[1], 'fakes')} are {fake[0]}, {quantified(real[1], 'reals')} {real[0]}{suffix}"
    values = set(shares_by_class[0]) | set(shares_by_class[1])
    value = max(sorted(values), key=lambda v: abs(shares_by_class[1].get(v, 0) - shares_by_class[0].get(v, 0)))
    fake, real = shares_by_class[1].get(value, 0.0), shares_by_class[0].get(value, 0.0)
    return f"{what + ' ' if what else ''}{value} for {percent(fake)} of fakes, {percent(real)} of reals"


def _flag_words(by_class: dict, getter: Callable, thing: str) -> str:
    """"EXIF in 97% of reals, 0% of fakes", the class with the higher share first."""
    share = {label: sum(map(getter, files)) / len(files) for label, files in by_class.items()}
    high, low = (0, 1) if share[0] >= share[1] else (1, 0)
    return f"{thing} in {percent(share[high])} of {PLURALS[high]}, {percent(share[low])} of {PLURALS[low]}"


def _for_class(summary: dict | None, label: int, digits: int = 0) -> str:
    """"95 for all fakes" when constant, else "median 90 (75-95) for fakes"."""
    if summary is not None and summary["min"] == summary["max"]:
        return f"{spread(summary, digits)} for all {PLURALS[label]}"
    return f"{spread(summary, digits)} for {PLURALS[label]}"


def _quality_words(by_class: dict) -> str:
    parts = []
    for label in (1, 0):
        quality = stats(f.jpeg_quality for f in by_class[label] if f.jpeg_quality is not None)
        parts.append(f"no {PLURALS[label]} are JPEG" if quality is None else _for_class(quality, label))
    return "JPEG quality " + ", ".join(parts)


def _size_words(by_class: dict) -> str:
    parts = []
    sizes = {label: Counter(f"{f.width}x{f.height}" for f in files) for label, files in by_class.items()}
    for label in (1, 0):
        other = sizes[1 - label]
        if len(sizes[label]) == 1:
            parts.append(f"all {PLURALS[label]} are {next(iter(sizes[label]))}")
            continue
        files = by_class[label]
        width, height = np.median([f.width for f in files]), np.median([f.height for f in files])
        text = f"{PLURALS[label]} vary ({len(sizes[label])} sizes, median {width:.0f}x{height:.0f}"
        if len(other) == 1:  # how often this class has the other class's only size
            size = next(iter(other))
            text += f"; {percent(sizes[label][size] / len(files))} are {size}"
        parts.append(text + ")")
    return ", ".join(parts)


def _aspect_words(by_class: dict) -> str:
    parts = [_for_class(stats(f.aspect_ratio for f in by_class[label]), label, 2) for label in (1, 0)]
    return "aspect ratio (width/height) " + ", ".join(parts)


def _file_size_words(by_class: dict) -> str:
    parts = []
    for label in (1, 0):
        files = by_class[label]
        size = np.median([f.file_bytes for f in files])
        bits = np.median([f.bits_per_pixel for f in files])
        parts.append(f"{byte_size(size)} ({bits:.2f} bits/pixel) for {PLURALS[label]}")
    return "median file size " + ", ".join(parts)


def _tables_in_words(file: FileMetadata) -> str:
    names = {"IJG": "JPEG with standard libjpeg tables", "custom": "JPEG with custom tables"}
    return names.get(file.jpeg_tables, "not JPEG")


def describe(group: str, files: Sequence[FileMetadata]) -> str:
    """How property group `group` (a key of item_cli.audit.model.FEATURE_GROUPS) differs between reals and fakes."""
    by_class = {label: [f for f in files if f.label == label] for label in (0, 1)}
    if not by_class[0] or not by_class[1]:
        return "only one class present"
    words = {
        "file format": lambda: _categorical_words(by_class, lambda f: f.format, ""),
        "JPEG quality": lambda: _quality_words(by_class),
        "JPEG quantization tables": lambda: _categorical_words(by_class, _tables_in_words, ""),
        "chroma subsampling": lambda: _categorical_words(
            by_class, lambda f: f.subsampling or "n/a", "chroma subsampling"
        ),
        "image size": lambda: _size_words(by_class),
        "aspect ratio": lambda: _aspect_words(by_class),
        "file size": lambda: _file_size_words(by_class),
        "colour mode": lambda: _categorical_words(by_class, lambda f: f.mode, "colour mode"),
        "EXIF": lambda: _flag_words(by_class, lambda f: f.exif, "EXIF"),
        "camera make/model": lambda: _flag_words(by_class, lambda f: f.camera, "an EXIF camera make/model"),
        "ICC profile": lambda: _flag_words(by_class, lambda f: f.icc, "an ICC colour profile"),
        "text metadata": lambda: _flag_words(by_class, lambda f: f.text, "text metadata (comments, PNG text)"),
        "provenance metadata": lambda: _flag_words(
            by_class, lambda f: bool(f.provenance),
            "provenance metadata (C2PA manifests, XMP digital source type, generation parameters)"),
    }
    if group not in words:
        raise ValueError(f"Unknown property group {group!r}; choose one of {', '.join(words)}.")
    return words[group]()
