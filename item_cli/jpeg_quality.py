"""Estimate the IJG (libjpeg) quality factor a JPEG file was saved with, from its quantization tables alone.

libjpeg, libjpeg-turbo, Pillow, OpenCV and most web tools write JPEG files whose quantization tables are the
example tables of the JPEG standard (ITU-T T.81, Annex K) scaled by one number derived from the quality
factor 1..100. Reading the tables back (Pillow parses them from the file header, `image.quantization`,
without decoding any pixel) and finding the quality whose scaled tables match best recovers the setting
exactly for such files. Cameras, phones and Photoshop use tables of their own; for those the nearest IJG
quality is an approximation, and `JpegQuality.standard` is False.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Annex K example tables, in natural (row-major) order, as Pillow returns them (it undoes the zigzag order).
IJG_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int64,
).reshape(-1)
IJG_CHROMINANCE = np.full((8, 8), 99, dtype=np.int64)
IJG_CHROMINANCE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
IJG_CHROMINANCE = IJG_CHROMINANCE.reshape(-1)

QUALITIES = np.arange(1, 101)


def ijg_scale_factor(quality: int) -> int:
    """The percentage libjpeg scales the example tables by at `quality` (clamped to 1..100)."""
    quality = min(max(int(quality), 1), 100)
    return 5000 // quality if quality < 50 else 200 - 2 * quality


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """`base` scaled for `quality` as libjpeg does with baseline tables: rounded, then clamped to 1..255."""
    scaled = (base * ijg_scale_factor(quality) + 50) // 100
    return np.clip(scaled, 1, 255)


# Every quality's pair of tables, computed once: shape (100, 64) each.
_LUMINANCE_BY_QUALITY = np.stack([ijg_table(IJG_LUMINANCE, q) for q in QUALITIES])
_CHROMINANCE_BY_QUALITY = np.stack([ijg_table(IJG_CHROMINANCE, q) for q in QUALITIES])


@dataclass(frozen=True)
class JpegQuality:
    """The IJG quality whose tables are closest to a file's tables.

    quality: 1..100. standard: the file's tables are exactly the IJG tables at that quality (a libjpeg-style
    encoder wrote it), so `quality` is the setting used. mean_error: mean absolute difference per table entry
    between the file's tables and the IJG tables at `quality` (0 when standard).
    """

    quality: int
    standard: bool
    mean_error: float


def _as_table(values: Sequence[int], index: int) -> np.ndarray:
    table = np.asarray(list(values), dtype=np.int64).reshape(-1)
    if table.size != 64:
        raise ValueError(f"Quantization table {index} has {table.size} entries; a JPEG table has 64 (8x8).")
    return table


def estimate_jpeg_quality(quantization: Mapping[int, Sequence[int]] | None) -> JpegQuality | None:
    """Estimate the IJG quality factor from a JPEG's quantization tables (Pillow's `image.quantization`).

    Table 0 is compared with the luminance table and table 1 (when present, i.e. a colour JPEG) with the
    chrominance table; further tables are ignored, as libjpeg writes two. Returns None when there is no table
    (not a JPEG, or a JPEG without a DQT segment). Ties go to the highest quality.
    """
    if not quantization:
        return None
    if not isinstance(quantization, Mapping):
        raise TypeError(
            "quantization must be a mapping of table index to 64 values (image.quantization);"
            f" got {type(quantization).__name__}."
        )
    indices = sorted(quantization)
    luminance = _as_table(quantization[indices[0]], indices[0])
    errors = np.abs(_LUMINANCE_BY_QUALITY - luminance).sum(axis=1)
    entries = 64
    if len(indices) > 1:
        chrominance = _as_table(quantization[indices[1]], indices[1])
        errors = errors + np.abs(_CHROMINANCE_BY_QUALITY - chrominance).sum(axis=1)
        entries = 128
    # Highest quality among the best matches: reverse, take the first minimum, map back.
    best = len(QUALITIES) - 1 - int(np.argmin(errors[::-1]))
    error = int(errors[best])
    return JpegQuality(quality=int(QUALITIES[best]), standard=error == 0, mean_error=error / entries)
