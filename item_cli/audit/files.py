"""What a file says about itself before any pixel is decoded: format, size, JPEG settings, metadata.

Pillow's `Image.open` parses only the header (for JPEG: every marker segment up to the compressed data,
which holds the quantization tables, the sampling factors, EXIF and ICC; for PNG: the chunks before the
first image data). Nothing here calls `load()`, `getexif()` on a PNG (which would decode it) or reads the
pixel data, so the cost per file is a few kilobytes of I/O whatever the image size.

A row of a data set (a record with `row`, see `item_cli.data.sources`) has no file: its stored image bytes are
read the same way (its "file size" is their length), fetched one row at a time.
"""

from __future__ import annotations

import io
import logging
import numbers
import os
import struct
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from item_cli.jpeg_quality import estimate_jpeg_quality
from item_detector.provenance_formats_item import header_signals

logger = logging.getLogger(__name__)

# JpegImagePlugin.get_sampling's codes (the `subsampling` values Pillow accepts when saving).
SUBSAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
EXIF_MAKE, EXIF_MODEL, TIFF_EXIF_IFD = 0x010F, 0x0110, 0x8769
# Errors a malformed EXIF block can raise while Pillow parses it; the file itself stays readable.
_EXIF_ERRORS = (OSError, ValueError, SyntaxError, struct.error, EOFError, KeyError, IndexError, TypeError)


@dataclass(frozen=True)
class FileMetadata:
    """One image file as its header describes it.

    jpeg_quality: the IJG quality estimated from the quantization tables (None when not a JPEG).
    jpeg_tables: "IJG" when the tables are exactly libjpeg's at that quality, "custom" otherwise (cameras,
    Photoshop), None when not a JPEG. subsampling: "4:2:0", "4:2:2", "4:4:4" or "other" for colour JPEGs,
    None otherwise. exif / camera / icc / text: the file carries EXIF, an EXIF camera make or model, an ICC
    colour profile, a text comment (JPEG COM, PNG tEXt/zTXt/iTXt before the image data). provenance: the
    provenance signals the header carries ("C2PA manifest", "digital source type", "generation parameters").
    """

    path: str
    label: int
    generator: str
    format: str
    mode: str
    width: int
    height: int
    file_bytes: int
    jpeg_quality: int | None
    jpeg_tables: str | None
    subsampling: str | None
    exif: bool
    camera: bool
    icc: bool
    text: bool
    provenance: tuple[str, ...] = ()

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def aspect_ratio(self) -> float:
        """Width over height."""
        return self.width / self.height

    @property
    def bits_per_pixel(self) -> float:
        """Compressed bits per pixel: file size relative to image size, a proxy for compression strength."""
        return 8.0 * self.file_bytes / self.pixels

    def to_dict(self) -> dict:
        return asdict(self) | {
            "pixels": self.pixels,
            "aspect_ratio": round(self.aspect_ratio, 6),
            "bits_per_pixel": round(self.bits_per_pixel, 6),
        }


def _field(record, key: str):
    """A record's value for `key`, from a dict or from an object's attribute (e.g. a data-loader record)."""
    return record.get(key) if isinstance(record, Mapping) else getattr(record, key, None)


def check_records(records: Sequence) -> list[dict]:
    """Validate audit input: records with "path", "label" (0 = real, 1 = fake) and optional "generator".

    A record is a dict, or any object with `path`, `label` and `generator` attributes (the data loader's
    records). Returns normalised dicts ({"path": str, "label": int, "generator": str}, and "row" for a data-set
    row: what fetches its bytes); a missing or empty generator becomes "all". Raises TypeError / ValueError naming the first bad record and the fix.
    """
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise TypeError(
            f"records must be a list of dicts with 'path', 'label' and 'generator'; got {type(records).__name__}."
        )
    checked = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping) and not hasattr(record, "path"):
            raise TypeError(
                f"records[{index}] is a {type(record).__name__}; each record must be a dict with 'path' and 'label'."
            )
        path = _field(record, "path")
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"records[{index}] has no usable 'path' ({path!r}); give the image file's path.")
        label = _field(record, "label")
        if isinstance(label, bool) or not isinstance(label, numbers.Real) or label not in (0, 1):
            raise ValueError(
                f"records[{index}] ({os.fspath(path)}) has label {label!r}; use 0 for real and 1 for fake images"
                " (unlabelled images cannot be audited: leave them out)."
            )
        generator = str(_field(record, "generator") or "all")
        row = _field(record, "row")
        checked.append({"path": os.fspath(path), "label": int(label), "generator": generator}
                       | ({"row": row} if row is not None else {}))
    return checked


def _camera_in_exif(exif_bytes: bytes) -> bool:
    exif = Image.Exif()
    try:
        exif.load(exif_bytes)
        return bool(exif.get(EXIF_MAKE) or exif.get(EXIF_MODEL))
    except _EXIF_ERRORS:
        return False


def _jpeg_fields(image: Image.Image) -> dict:
    """Quality, table kind and chroma subsampling of a JPEG opened by Pillow; None values otherwise."""
    if not isinstance(image, JpegImagePlugin.JpegImageFile):
        return {"jpeg_quality": None, "jpeg_tables": None, "subsampling": None}
    estimate = estimate_jpeg_quality(getattr(image, "quantization", None))
    sampling = JpegImagePlugin.get_sampling(image)
    colour = image.mode not in ("L", "1", "I", "F")
    return {
        "jpeg_quality": estimate.quality if estimate else None,
        "jpeg_tables": None if estimate is None else ("IJG" if estimate.standard else "custom"),
        "subsampling": SUBSAMPLING_NAMES.get(sampling, "other") if colour else None,
    }


def _metadata_fields(image: Image.Image) -> dict:
    """EXIF, camera, ICC and text flags from what the header parse put in `image.info` (or TIFF tags)."""
    info = image.info
    tags = getattr(image, "tag_v2", None)  # TIFF keeps its metadata as tags, not in info
    exif_bytes = info.get("exif")
    exif = bool(exif_bytes) or bool(tags is not None and TIFF_EXIF_IFD in tags)
    camera = _camera_in_exif(exif_bytes) if isinstance(exif_bytes, bytes) and exif_bytes else False
    if tags is not None:
        camera = camera or bool(tags.get(EXIF_MAKE) or tags.get(EXIF_MODEL))
    # PNG text chunks are the only str-valued entries Pillow puts in a PNG's info; JPEG keeps COM as "comment".
    text = bool(info.get("comment")) or (image.format == "PNG" and any(isinstance(v, str) for v in info.values()))
    return {"exif": exif, "camera": camera, "icc": bool(info.get("icc_profile")), "text": text}


def image_source(record: Mapping):
    """What opens a checked record's image: its file path, or a data-set row's bytes (raises `OSError` when the
    row has none)."""
    row = record.get("row")
    return record["path"] if row is None else row.read_bytes()


def read_metadata(path: str, label: int, generator: str, data: bytes | None = None) -> FileMetadata:
    """Header-level metadata of one image file, or of a data-set row's image `data` (then `path` is the row's
    name). Raises ValueError with a short reason when it is unreadable."""
    try:
        file_bytes = os.stat(path).st_size if data is None else len(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # nothing is decoded here
            with (open(path, "rb") if data is None else io.BytesIO(data)) as handle, Image.open(handle) as image:
                width, height = image.size
                fields = _jpeg_fields(image) | _metadata_fields(image)
                fields["provenance"] = tuple(header_signals(image, handle))
                image_format, mode = image.format or "unknown", image.mode
    except FileNotFoundError:
        raise ValueError("file not found") from None
    except IsADirectoryError:
        raise ValueError("a folder, not an image file") from None
    except PermissionError:
        raise ValueError("permission denied") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"larger than Pillow's decompression-bomb limit ({error})") from None
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can identify") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        raise ValueError(f"unreadable header ({type(error).__name__}: {error})") from None
    if width < 1 or height < 1:
        raise ValueError(f"image size {width}x{height} has no pixels")
    return FileMetadata(path, label, generator, image_format, mode, width, height, file_bytes, **fields)


def read_all(records: Sequence[Mapping]) -> tuple[list[FileMetadata], list[dict]]:
    """(readable files, skipped) for validated `records`; skipped entries are {"path", "reason"}."""
    files, skipped = [], []
    for index, record in enumerate(records):
        try:
            data = None
            if record.get("row") is not None:
                try:
                    data = record["row"].read_bytes()
                except OSError as error:
                    raise ValueError(str(error)) from None
            files.append(read_metadata(record["path"], record["label"], record["generator"], data))
        except ValueError as error:
            logger.warning("audit: skipped %s: %s", record["path"], error)
            skipped.append({"path": record["path"], "reason": str(error)})
        if index and index % 10000 == 0:
            logger.info("audit: read %d of %d file headers", index, len(records))
    return files, skipped

