"""Data sets as SOURCE strings: Hub data sets, `save_to_disk` folders, Parquet / Arrow files, WebDataset shards.

    hf:ORG/NAME                       a Hub data set (`--data-config`, `--split`, `--data-revision`)
    path/to/saved/                    a `Dataset.save_to_disk` folder (dataset_info.json + state.json, or
                                      dataset_dict.json)
    path/to/repo/                     a folder laid out like a Hub data-set repository: a README.md whose YAML
                                      names `configs:`, or Parquet / Arrow / .tar files at its top or in data/
    a.parquet, data/*.parquet         Parquet files or globs (likewise .arrow)
    shards/train-{0..9}.tar, *.tar    WebDataset shards or globs

Anything else (a folder with 0_real/1_fake or ai/nature label folders, a CSV manifest) is read by `layouts`.
Every form is loaded by `datasets` (`load_dataset`, `load_from_disk`), so a Hub id on a user's machine takes the
same code path as the local Hub-like folder the tests use.

Each row becomes a `Record` whose `path` is its identity, readable and stable (`hf:org/name@rev:split#123`,
`train.parquet#123`, `shard-0001.tar/000123`, or the `--id-column` value), never a path of this machine beyond
the SOURCE's own name. Its image is read as the stored bytes (`Image(decode=False)`): `Record.row.read_bytes()`
fetches them when they are needed, from the memory-mapped Arrow table (map-style data) or from the streamed
row (`iter_source_records`), so the cache key is the sha256 of the same bytes a file of that picture holds, and
decoding goes through the same worker processes (`decode.ImageReader`).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .columns import WEBDATASET_IMAGE_COLUMNS, image_only, resolve_columns, stored_bytes
from .files import Skipped, display_path
from .layouts import Record

HUB_PREFIX = "hf:"
FILE_KINDS = {".parquet": "parquet", ".arrow": "arrow", ".tar": "webdataset"}


# ---------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class SourceOptions:
    """How to read a data-set SOURCE (the `--data-config`, `--split`, ... options of every command)."""

    config: str | None = None
    split: str | None = None
    revision: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    label_map: str | None = None  # "real=0,fake=1"
    generator_column: str | None = None
    id_column: str | None = None

    def columns_given(self) -> list[str]:
        """The data-set-only options given, as their flags (they mean nothing to a folder or a manifest)."""
        flags = {"config": "--data-config", "revision": "--data-revision", "image_column": "--image-column",
                 "label_column": "--label-column", "label_map": "--label-map",
                 "generator_column": "--generator-column", "id_column": "--id-column"}
        return [flag for name, flag in flags.items() if getattr(self, name) is not None]


# ---------------------------------------------------------------------------------------------- dispatch
def source_kind(source: str | os.PathLike) -> str | None:
    """"hub", "disk", "repo", "parquet", "arrow", "webdataset", or None (a label-folder layout or a CSV)."""
    text = os.fspath(source)
    if text.startswith(HUB_PREFIX):
        return "hub"
    kind = FILE_KINDS.get(Path(text).suffix.lower())
    if kind is not None:
        return kind
    folder = Path(text).expanduser()
    if not folder.is_dir():
        return None
    if (folder / "dataset_dict.json").is_file() or ((folder / "state.json").is_file()
                                                    and (folder / "dataset_info.json").is_file()):
        return "disk"
    readme = folder / "README.md"
    if readme.is_file() and re.search(r"^configs:", _front_matter(readme), re.MULTILINE):
        return "repo"
    for place in (folder, folder / "data"):
        if place.is_dir() and any(entry.suffix.lower() in FILE_KINDS for entry in place.iterdir() if entry.is_file()):
            return "repo"
    return None


def _front_matter(readme: Path) -> str:
    text = readme.read_text(encoding="utf-8", errors="replace")
    return text.split("---", 2)[1] if text.startswith("---") and text.count("---") >= 2 else ""


def source_name(source: str) -> str:
    """A data set's short name: the default generator of its rows (`hf:org/sd15-fakes` -> "sd15-fakes")."""
    text = source[len(HUB_PREFIX):] if source.startswith(HUB_PREFIX) else source
    name = Path(text.rstrip("/")).name
    for suffix in FILE_KINDS:
        name = name[: -len(suffix)] if name.lower().endswith(suffix) else name
    return name.replace("*", "").strip("-_.") or "data"


def source_label(source: str, options: SourceOptions) -> str:
    """The readable, stable prefix of every row identity: a Hub id with its revision, config and split, or the
    local SOURCE's last component (no folders of this machine)."""
    if source.startswith(HUB_PREFIX):
        label = source + (f"@{options.revision}" if options.revision else "")
    else:
        label = Path(source.rstrip("/")).name
    label += f"/{options.config}" if options.config else ""
    return label + (f":{options.split}" if options.split else "")


def _data_files(source: str) -> list[str]:
    files = sorted(glob.glob(os.path.expanduser(source)))
    if not files:
        raise ValueError(f"No files match {display_path(source)!r}; pass existing Parquet, Arrow or .tar files or a glob.")
    return files


def open_data_set(source: str, options: SourceOptions, streaming: bool):
    """The `Dataset` (memory-mapped) or, with `streaming`, `IterableDataset` of one split of `source`."""
    import datasets
    from datasets.exceptions import DatasetGenerationError

    kind = source_kind(source)
    if kind is None:
        raise ValueError(f"{display_path(source)!r} is not a data set (hf:ORG/NAME, a save_to_disk folder, Parquet, "
                         "Arrow or WebDataset .tar files).")
    if kind not in ("hub", "repo") and (options.config or options.revision):
        raise ValueError(f"--data-config and --data-revision apply to hf: data sets and Hub-like folders, not to "
                         f"{display_path(source)!r}.")
    try:
        if kind == "disk":
            loaded = datasets.load_from_disk(os.path.expanduser(source))
        elif kind in ("hub", "repo"):
            path = source[len(HUB_PREFIX):] if kind == "hub" else os.path.expanduser(source)
            loaded = datasets.load_dataset(path, options.config, split=options.split, revision=options.revision,
                                           streaming=streaming)
        else:
            if options.split not in (None, "train"):
                raise ValueError(f"--split {options.split!r}: Parquet, Arrow and .tar files hold one split; drop --split.")
            loaded = datasets.load_dataset(kind, data_files=_data_files(source), split="train", streaming=streaming)
    except FileNotFoundError as error:  # datasets' answer for a missing repo, config or file
        raise ValueError(f"Cannot load data set {display_path(source)!r}: {error}") from None
    except DatasetGenerationError as error:  # files that do not make one table (e.g. unrelated Parquet files)
        cause = error.__cause__ or error
        raise ValueError(f"Cannot read {display_path(source)!r} as one data set ({type(cause).__name__}: "
                         f"{str(cause).splitlines()[0] if str(cause) else ''}); point --data at its files, e.g. "
                         "'data/*.parquet'.") from None
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        loaded = _one_split(loaded, source, options.split)
    return loaded  # a save_to_disk folder stays a memory-mapped `Dataset` even with `streaming`: nothing to stream


def _one_split(splits, source: str, split: str | None):
    if split is not None:
        if split not in splits:
            raise ValueError(f"Data set {display_path(source)!r} has no split {split!r}; choose one of {sorted(splits)}.")
        return splits[split]
    if len(splits) != 1:
        raise ValueError(f"Data set {display_path(source)!r} has splits {sorted(splits)}; choose one with --split NAME.")
    return next(iter(splits.values()))


# ---------------------------------------------------------------------------------------------- row bytes
class DatasetRow:
    """A row's image bytes in a memory-mapped `Dataset`, fetched when asked (nothing is held meanwhile)."""

    __slots__ = ("table", "index")

    def __init__(self, table: "_ImageTable", index: int):
        self.table, self.index = table, index

    def read_bytes(self) -> bytes:
        return stored_bytes(self.table.data_set[self.index][self.table.column])


class _ImageTable:
    """The image column of one map-style data set, shared by all its rows."""

    def __init__(self, data_set, column: str, label: str, identities: list | None):
        self.data_set, self.column, self.label, self.identities = data_set.select_columns([column]), column, label, identities

    def name_of(self, index: int) -> str:
        return f"{self.label}#{index if self.identities is None else self.identities[index]}"


class RowBytes:
    """A streamed row's image bytes (held while the row is in flight), or why it has none."""

    __slots__ = ("data", "problem")

    def __init__(self, data: bytes | None, problem: str | None = None):
        self.data, self.problem = data, problem

    def read_bytes(self) -> bytes:
        if self.data is None:
            raise OSError(self.problem or "the row has no image")
        return self.data


def record_bytes(record) -> bytes | None:
    """The image bytes of a data-set row (`Record.row`), or None for a record of a file."""
    row = getattr(record, "row", None)
    return None if row is None else row.read_bytes()


# ---------------------------------------------------------------------------------------------- map-style records
def load_data_set_records(source: str, options: SourceOptions, generator: str | None = None) -> tuple[list[Record], list[Skipped]]:
    """Every row of a data set as a `Record` (map-style, memory-mapped: each row's bytes fetched when decoded).

    Labels are checked up front: the ClassLabel's names, or the column's distinct values, each must be real or
    fake (or mapped by `--label-map`), else one `ValueError` names the column and the value."""
    data_set = open_data_set(source, options, streaming=False)
    columns = resolve_columns(data_set.features, source, options)
    if columns.label is not None and columns.label_names is None:
        for value in data_set.unique(columns.label):
            columns.label_of(value)
    label = source_label(source, options)
    identities = _identities(data_set, columns, label)
    table = _ImageTable(image_only(data_set, columns.image), columns.image, label, identities)
    wanted = [name for name in (columns.label, columns.generator) if name is not None]
    values = data_set.select_columns(wanted).to_dict() if wanted else {}
    labels = values.get(columns.label, [None] * len(data_set)) if columns.label else [None] * len(data_set)
    generators = values.get(columns.generator, [None] * len(data_set)) if columns.generator else [None] * len(data_set)
    default = generator or source_name(source)
    records = [
        Record(table.name_of(index), columns.label_of(labels[index]),
               generator or columns.generator_of(generators[index], default), split=options.split or "",
               row=DatasetRow(table, index))
        for index in range(len(data_set))
    ]
    if not records:
        raise ValueError(f"Data set {display_path(source)!r} has no rows.")
    return records, []


def _identities(data_set, columns: Columns, label: str) -> list[str] | None:
    """Each row's identity after the `#` (None: the row index)."""
    if columns.identity is not None:
        return [str(value) for value in data_set[columns.identity]]
    if columns.webdataset:
        return [_webdataset_id(url, key, label) for url, key in zip(data_set["__url__"], data_set["__key__"])]
    return None


def _webdataset_id(url: str | None, key: str, label: str) -> str:
    """A WebDataset sample's identity: `shard.tar/KEY`, or `KEY` when the SOURCE is that one shard."""
    shard = Path(url).name if url else ""
    return f"{shard}/{key}" if shard and shard != label.partition(":")[0] else str(key)


# ---------------------------------------------------------------------------------------------- streaming
def iter_source_records(source: str, options: SourceOptions | None = None, rank: int = 0, world_size: int = 1,
                        generator: str | None = None) -> Iterator[Record | Skipped]:
    """Stream the rows of a data set: a `Record` (whose `row` holds the bytes) or a `Skipped` per row.

    Process `rank` of `world_size` gets a disjoint share; together the ranks answer every row exactly once:
    - rows with an identity of their own (`--id-column`, WebDataset's `__url__`/`__key__`) are split by
      `datasets.distributed.split_dataset_by_node` (whole shards per process when the number of shards is a
      multiple of `world_size`, else every process reads all rows and keeps 1 in `world_size`);
    - a save_to_disk folder (memory-mapped, not streamed) is read by row index: rows i with i % world_size ==
      rank, identity `#i` as in `load_records`;
    - otherwise a row's identity is its position (shard `k`, row `i` in it: `#k/i`, or `#i` for one shard),
      which `split_dataset_by_node` does not keep in its shard mode, so the shards are dealt out here:
      shard k to process k % world_size when there are at least `world_size` shards, else every process reads
      every shard and keeps the rows whose running position p has p % world_size == rank.
    Within a process rows come in the data set's order. Memory stays flat: one row at a time is held here.
    A label that is neither real nor fake raises `ValueError` (checked on the features first, then per row).
    """
    options = options or SourceOptions()
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}, world_size={world_size}; pass 0 <= rank < world_size.")
    data_set = open_data_set(source, options, streaming=True)
    features = data_set.features
    if features is None:  # a format whose columns are known only once read (e.g. JSON beside the images)
        features = _features_of_first_row(data_set)
    columns = resolve_columns(features, source, options)
    data_set = image_only(data_set, columns.image)
    label, default = source_label(source, options), generator or source_name(source)

    def record(row: dict, identity: str) -> Record | Skipped:
        where = f"{label}#{identity}"
        try:
            content = RowBytes(stored_bytes(row[columns.image]))
        except OSError as error:
            return Skipped(where, str(error))
        return Record(where, columns.label_of(row.get(columns.label) if columns.label else None),
                      generator or columns.generator_of(row.get(columns.generator), default),
                      split=options.split or "", row=content)

    for row, identity in _rows_of_rank(data_set, columns, label, rank, world_size):
        yield record(row, identity)


def _rows_of_rank(data_set, columns, label: str, rank: int, world_size: int) -> Iterator[tuple[dict, str]]:
    """(row, identity) of the rows process `rank` answers (see `iter_source_records`)."""
    if columns.identity is not None or columns.webdataset:
        from datasets.distributed import split_dataset_by_node

        mine = split_dataset_by_node(data_set, rank=rank, world_size=world_size) if world_size > 1 else data_set
        for row in mine:
            yield row, str(row[columns.identity]) if columns.identity else _webdataset_id(row.get("__url__"), row["__key__"], label)
        return
    if not hasattr(data_set, "num_shards"):  # a save_to_disk Dataset: memory-mapped already, read by row index
        for index in range(rank, len(data_set), world_size):
            yield data_set[index], str(index)
        return
    shards = data_set.num_shards
    position = 0
    for shard in range(shards):
        if shards >= world_size and shard % world_size != rank:
            continue
        part = data_set.shard(num_shards=shards, index=shard, contiguous=True) if shards > 1 else data_set
        for index, row in enumerate(part):
            keep = shards >= world_size or position % world_size == rank
            position += 1
            if keep:
                yield row, f"{shard}/{index}" if shards > 1 else str(index)


def _features_of_first_row(data_set):
    from datasets import Features, Image, Value

    first = next(iter(data_set), None)
    if first is None:
        raise ValueError("The data set has no rows.")
    return Features({name: Image() if name in WEBDATASET_IMAGE_COLUMNS else Value("string") for name in first})


def record_chunks(source: str, options: SourceOptions | None = None, size: int = 4096, max_bytes: int = 256 << 20,
                  generator: str | None = None) -> Iterator[tuple[list[Record], list[Skipped]]]:
    """The streamed rows of `source` in chunks of up to `size` rows or `max_bytes` of image bytes (records,
    skipped): a command that reads every row once (`item cache`) holds one chunk's bytes at a time, whatever the
    data set's size. Every process reads the same chunks (the cache shares out the work of each chunk)."""
    records, skipped, held = [], [], 0
    for item in iter_source_records(source, options, generator=generator):
        (skipped if isinstance(item, Skipped) else records).append(item)
        held += len(item.row.data) if isinstance(item, Record) else 0
        if len(records) + len(skipped) >= size or held >= max_bytes:
            yield records, skipped
            records, skipped, held = [], [], 0
    if records or skipped:
        yield records, skipped
