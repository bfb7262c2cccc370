"""Which columns of a data set hold the image, the label, the generator and the row's identity, and how a
label value becomes 0 (real) / 1 (fake): a ClassLabel by its names, 0/1, or words (`--label-map`, else the
label words a CSV manifest accepts). Anything else is one `ValueError` naming the column and the value."""

from __future__ import annotations

from dataclasses import dataclass

from .files import display_path
from .layouts import CSV_LABELS, UNLABELLED

WEBDATASET_IMAGE_COLUMNS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "ppm")
MAX_ROW_BYTES = 1 << 30  # the same limit as for an image file (decode.MAX_FILE_BYTES)


def parse_label_map(text: str | None) -> dict[str, int]:
    """`"real=0,fake=1"` -> {"real": 0, "fake": 1}; the right side is 0/1 or any accepted label word."""
    if not text:
        return {}
    mapping = {}
    for part in text.split(","):
        value, sep, target = part.rpartition("=")
        label = CSV_LABELS.get(target.strip().lower())
        if not sep or not value.strip() or label is None:
            raise ValueError(
                f"--label-map {text!r}: {part.strip()!r} is not VALUE=LABEL with LABEL 0/real or 1/fake; "
                "write e.g. --label-map real=0,fake=1 or --label-map human=real,sd=fake."
            )
        mapping[value.strip()] = label
    return mapping


@dataclass
class Columns:
    """Which columns hold what, and how a row's label value becomes 0 (real) / 1 (fake)."""

    image: str
    label: str | None
    generator: str | None
    identity: str | None
    label_names: list[str] | None = None  # a ClassLabel's names
    generator_names: list[str] | None = None
    label_map: dict | None = None
    webdataset: bool = False

    def label_of(self, value) -> int:
        """A row's label; a `ValueError` naming the column and the value when it is neither real nor fake."""
        if value is None or self.label is None or (self.label_names is not None and value < 0):
            return UNLABELLED  # datasets writes -1 for a missing ClassLabel
        name = self.label_names[value] if self.label_names is not None else value
        text = str(name).strip()
        if text in self.label_map:
            return self.label_map[text]
        if isinstance(name, bool) or text.lower() not in CSV_LABELS:
            raise ValueError(
                f"Label column {self.label!r} holds {name!r}, which is neither real nor fake. Map it with "
                f"--label-map {text}=0 (real) or {text}=1 (fake), e.g. --label-map real=0,fake=1 "
                f"(values understood without a map: {', '.join(sorted(CSV_LABELS))})."
            )
        return CSV_LABELS[text.lower()]

    def generator_of(self, value, default: str) -> str:
        if self.generator is None or value is None:
            return default
        return str(self.generator_names[value] if self.generator_names is not None else value)


def resolve_columns(features, source: str, options: SourceOptions) -> Columns:
    """The columns `options` name (checked to exist) or the defaults: the data set's one `Image` feature (a
    WebDataset's image extension), a `label` column (or its one ClassLabel), `__key__` for WebDataset ids.
    Raises `ValueError` naming the column, and for labels any ClassLabel name that is neither real nor fake."""
    from datasets import ClassLabel, Image

    names = list(features)
    where = display_path(source)

    def need(column, flag):
        if column is not None and column not in features:
            raise ValueError(f"{flag} {column!r}: data set {where!r} has no such column; its columns are {names}.")
        return column

    image = need(options.image_column, "--image-column")
    if image is None:
        images = [name for name, feature in features.items() if isinstance(feature, Image)]
        images = images or [name for name in WEBDATASET_IMAGE_COLUMNS if name in features]
        if len(images) != 1:
            raise ValueError(f"Data set {where!r} has {len(images)} image columns ({images}) among {names}; "
                             "say which with --image-column NAME.")
        image = images[0]
    label = need(options.label_column, "--label-column")
    if label is None:
        class_labels = [name for name, feature in features.items() if isinstance(feature, ClassLabel)]
        label = "label" if "label" in features else "cls" if "cls" in features else (
            class_labels[0] if len(class_labels) == 1 else None)
    webdataset = "__key__" in features
    columns = Columns(
        image, label, need(options.generator_column, "--generator-column"), need(options.id_column, "--id-column"),
        label_map=parse_label_map(options.label_map), webdataset=webdataset,
    )
    if label is not None and isinstance(features[label], ClassLabel):
        columns.label_names = list(features[label].names)
        for value in range(len(columns.label_names)):
            columns.label_of(value)  # every class must be real or fake, before any network runs
    if columns.generator is not None and isinstance(features[columns.generator], ClassLabel):
        columns.generator_names = list(features[columns.generator].names)
    return columns


def image_only(data_set, column: str):
    """`data_set` with the image column as stored bytes ({"bytes", "path"}), not decoded by `datasets`."""
    from datasets import Image

    feature = data_set.features[column] if data_set.features is not None else None
    if isinstance(feature, Image):
        return data_set.cast_column(column, Image(decode=False))
    return data_set


def stored_bytes(value) -> bytes:
    """The image bytes of one row's image value: {"bytes", "path"} of an `Image(decode=False)` column, or raw
    bytes. Raises `OSError` with the reason when the row holds no image (the row is then skipped)."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data is None and path:
            try:
                with open(path, "rb") as handle:  # an Image column that refers to a local file
                    return handle.read(MAX_ROW_BYTES + 1)
            except OSError as error:
                raise OSError(f"its image file cannot be read ({error.strerror or error})") from None
        value = data
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if value is None:
        raise OSError("the row has no image")
    raise OSError(f"the image column holds {type(value).__name__}, not image bytes")
