"""The frozen work of ITEM, computed once per image and kept: a cache of what the networks computed, and nothing else.

    records (the data as given now) --content keys--> stage 1 rows: caption, nouns, boxes        (annotations)
                                                    stage 2 rows: backbone embeddings per slot   (features)

`frozen_rows` looks every image up by the sha256 of its bytes in the stage folders its settings select (see
`keys`), computes only the missing rows (each image decoded once, in worker processes; the captioner, spaCy
and the detector, then the backbone, each once per batch), writes them as they are done (see `store`), and
joins the rows onto the records: labels, generators, categories and splits always come from the data as given
now. Adding 10 images to a cached folder of 1,000 computes 10 rows; a renamed, copied or relabelled file computes
none; a file whose bytes changed computes its rows again.

Under `accelerate launch` each process computes one contiguous shard of the missing images; all of them then
read the complete rows. On several machines, put `--cache-dir` on a shared file system.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from item_detector.processing_item import ItemAnnotations

from ..data import Record, Skipped
from ..data.decode import ImageReader
from .compute import Work, compute_missing
from .keys import annotation_fingerprint, content_keys, feature_fingerprint
from .store import StageStore, checksum

logger = logging.getLogger(__name__)

STORAGE_DTYPES = ("float16", "float32")


def default_cache_dir() -> Path:
    """`$ITEM_CACHE`, else `$XDG_CACHE_HOME/item` or `~/.cache/item`."""
    if os.environ.get("ITEM_CACHE"):
        return Path(os.environ["ITEM_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "item"


def process_state(timeout_s: int = 6 * 3600):
    """accelerate's process state (one process without a launcher); CPU-only machines use gloo."""
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=timeout_s))
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if state.num_processes != launched:
        raise ValueError(
            f"Launched as {launched} processes, but accelerate's state has {state.num_processes}: every process would "
            "compute the whole cache. On a machine without GPUs pass --use_cpu to `item train` (TrainingArguments)."
        )
    return state


# ---------------------------------------------------------------------------------------------- results
class FeatureArrays:
    """Embeddings of N images gathered from memory-mapped chunks: no copy until rows are taken.

    `take(indices)` -> image_embeds, text_embeds (n, 1 + K, D) and object_mask (n, K) as numpy arrays in the
    storage dtype (object_mask as bool).
    """

    def __init__(self, sources: list[tuple[np.ndarray, np.ndarray, np.ndarray]], locations: np.ndarray):
        self.sources = sources  # per chunk: (image_embeds, text_embeds, object_mask)
        self.locations = locations  # (N, 2): chunk, row

    def __len__(self) -> int:
        return len(self.locations)

    @property
    def dtype(self) -> np.dtype:
        return self.sources[0][0].dtype if self.sources else np.dtype("float32")

    @property
    def nbytes(self) -> int:
        return 0 if not self.sources else len(self) * 2 * self.sources[0][0][0].nbytes

    def select(self, indices) -> "FeatureArrays":
        return FeatureArrays(self.sources, self.locations[np.asarray(indices, dtype=np.int64)])

    def take(self, indices=None) -> dict[str, np.ndarray]:
        locations = self.locations if indices is None else self.locations[np.asarray(indices, dtype=np.int64)]
        if not self.sources:
            return {"image_embeds": np.zeros((0, 0, 0), np.float32), "text_embeds": np.zeros((0, 0, 0), np.float32),
                    "object_mask": np.zeros((0, 0), bool)}
        image, text, mask = self.sources[0]
        out = {
            "image_embeds": np.empty((len(locations), *image.shape[1:]), image.dtype),
            "text_embeds": np.empty((len(locations), *text.shape[1:]), text.dtype),
            "object_mask": np.empty((len(locations), *mask.shape[1:]), bool),
        }
        for chunk in np.unique(locations[:, 0]) if len(locations) else []:
            where = np.flatnonzero(locations[:, 0] == chunk)
            rows = locations[where, 1]
            image, text, mask = self.sources[chunk]
            out["image_embeds"][where], out["text_embeds"][where], out["object_mask"][where] = image[rows], text[rows], mask[rows]
        return out


@dataclass
class FrozenRows:
    """The data joined with its frozen work: one entry per image that could be read, in the data's order."""

    records: list[Record]
    keys: list[str]
    annotations: list[ItemAnnotations]
    features: FeatureArrays | None = None
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([record.label for record in self.records], dtype=np.int64)

    def column(self, name: str) -> list:
        return [getattr(record, name) for record in self.records]

    def joined(self, other: "FrozenRows", records: list[Record]) -> "FrozenRows":
        """These rows and `other`'s as one, in the order of `records` (each record object is in one of them)."""
        features = None
        if self.features is not None and other.features is not None:
            shifted = other.features.locations + np.array([len(self.features.sources), 0], dtype=np.int64)
            locations = np.concatenate([self.features.locations, shifted]) if len(shifted) else self.features.locations
            features = FeatureArrays(self.features.sources + other.features.sources, locations)
        both = FrozenRows(self.records + other.records, self.keys + other.keys, self.annotations + other.annotations,
                          features)
        position = {id(record): index for index, record in enumerate(records)}
        joined = both.select(sorted(range(len(both)), key=lambda index: position[id(both.records[index])]))
        joined.skipped = self.skipped + other.skipped
        return joined

    def select(self, indices) -> "FrozenRows":
        indices = [int(i) for i in indices]
        return FrozenRows(
            [self.records[i] for i in indices], [self.keys[i] for i in indices], [self.annotations[i] for i in indices],
            None if self.features is None else self.features.select(indices), [],
        )


# ---------------------------------------------------------------------------------------------- lookup
def _annotation_rows(store: StageStore, wanted: set[str]) -> dict[str, str]:
    """key -> annotation JSON for the wanted keys found in the stage (first chunk in name order wins)."""
    while True:
        found, used = {}, {}
        for chunk in store.chunks():
            keys = chunk.table.column("key").to_pylist()
            for row, key in enumerate(keys):
                if key in wanted and key not in found:
                    found[key] = (chunk, row)
                    used[chunk.name] = chunk
        if all(store.verify(chunk) for chunk in used.values()):
            return {key: chunk.table.column("annotation")[row].as_py() for key, (chunk, row) in found.items()}


def _feature_rows(store: StageStore, wanted: dict[str, str], slots: int, dim: int) -> tuple[list, dict[str, tuple[int, int]]]:
    """(per-chunk arrays, key -> (chunk, row)) for the wanted keys whose row was computed from the annotation
    row `wanted[key]` (its checksum)."""
    while True:
        found, used = {}, {}
        for chunk in store.chunks():
            keys = chunk.table.column("key").to_pylist()
            digests = chunk.table.column("annotation").to_pylist()
            for row, (key, digest) in enumerate(zip(keys, digests)):
                if wanted.get(key) == digest and key not in found:
                    found[key] = (chunk, row)
                    used[chunk.name] = chunk
        if all(store.verify(chunk) for chunk in used.values()):
            break
    order = list(used)
    sources = [_arrays(used[name].table, slots, dim) for name in order]
    index = {name: i for i, name in enumerate(order)}
    return sources, {key: (index[chunk.name], row) for key, (chunk, row) in found.items()}


def _arrays(table: pa.Table, slots: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A feature chunk's columns as numpy views of the memory map (no copy)."""

    def column(name, *shape):
        values = table.column(name).combine_chunks().flatten()
        return values.to_numpy(zero_copy_only=True).reshape(len(table), *shape)

    return column("image_embeds", slots, dim), column("text_embeds", slots, dim), column("object_mask", slots - 1)


# ---------------------------------------------------------------------------------------------- the entry point
def frozen_rows(
    records: list[Record],
    processor,
    model=None,
    *,
    cache_dir: str | os.PathLike | None = None,
    features: bool = True,
    perturbation=None,
    storage_dtype: str = "float16",
    batch_size: int = 16,
    decode_workers: int = 2,
    decode_timeout_s: float = 60.0,
    max_image_pixels: int | None = None,
    state=None,
) -> FrozenRows:
    """Annotations (and, with `features`, backbone embeddings) of every record: from the cache, computing only
    the rows that are missing. Images that cannot be read are reported in `.skipped` and left out.

    Args:
        records: the data as given now (`item_cli.data.load_records`).
        processor: the checkpoint's `ItemProcessor` (its captioner, detector and settings).
        model: the checkpoint's `ItemForImageClassification` (its backbone; needed with `features`).
        cache_dir: the cache's root folder (default `default_cache_dir()`).
        perturbation: a test-time `Perturbation` applied to every image before anything sees it (own rows).
        storage_dtype: "float16" (half the disk; read back as float32 by the head) or "float32".
        batch_size: images per network call.
    """
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype={storage_dtype!r}; store features as one of {STORAGE_DTYPES}.")
    if features and model is None:
        raise ValueError("Cached features need the model (its backbone computes them); pass model=.")
    state = state or process_state()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    keys, skipped = _keys(records, state)
    wanted = {key for key in keys if key is not None}
    annotation_store = StageStore(root, annotation_fingerprint(processor, perturbation)).open()
    feature_store = None
    if features:
        feature_store = StageStore(root, feature_fingerprint(annotation_store.key, processor, model, storage_dtype, perturbation)).open()
    slots, dim = 1 + processor.max_objects, model.config.embedding_dim if features else 0
    found = _lookup(annotation_store, feature_store, wanted, slots, dim)
    todo = _missing(records, keys, *found)
    failures = {}
    mine = todo if state.num_processes == 1 else [todo[i] for i in np.array_split(np.arange(len(todo)), state.num_processes)[state.process_index]]
    if mine:
        processor.to(state.device)
        if features:
            model.to(state.device)
        work = Work(processor, model, perturbation, annotation_store, feature_store, storage_dtype, dict(found[0]))
        with ImageReader(workers=decode_workers, timeout_s=decode_timeout_s, max_pixels=max_image_pixels) as reader:
            failures = compute_missing(work, mine, batch_size, reader, state.device)
    failures = _gather(failures, state)
    if todo:  # new rows were written (gathering the failures waited for every process): merge, then read again
        if state.is_main_process:
            for store in filter(None, (annotation_store, feature_store)):
                store.compact()
        state.wait_for_everyone()
        found = _lookup(annotation_store, feature_store, wanted, slots, dim)
    return _join(records, keys, skipped, failures, *found)


def _lookup(annotation_store, feature_store, wanted: set[str], slots: int, dim: int) -> tuple[dict, list | None, dict]:
    """(key -> annotation JSON, feature chunk arrays or None, key -> (chunk, row)) of the wanted keys."""
    known = _annotation_rows(annotation_store, wanted)
    if feature_store is None:
        return known, None, {}
    sources, locations = _feature_rows(feature_store, {k: checksum(v) for k, v in known.items()}, slots, dim)
    return known, sources, locations


def _missing(records, keys, known: dict, sources, locations: dict) -> list[tuple[int, Record, str]]:
    """(index, record, key) of each distinct content whose annotations, or features, are not cached yet (the
    record: what `ImageReader` reads, a file or a data-set row's bytes)."""
    first = {}
    for index, key in enumerate(keys):
        if key is not None and key not in first and (key not in known or (sources is not None and key not in locations)):
            first[key] = index  # one computation per content, however many paths hold it
    return [(index, records[index], key) for key, index in first.items()]


def _keys(records: list[Record], state) -> tuple[list[str | None], list[Skipped]]:
    """Content keys of the records (hashed by all processes together), and the files (or data-set rows) that
    cannot be read. A row's key is the sha256 of its stored bytes, as a file's."""
    share = np.array_split(np.arange(len(records)), state.num_processes)[state.process_index]
    mine = [
        ("error", value.strerror or str(value)) if isinstance(value, OSError) else ("key", value)
        for value in content_keys([records[i] for i in share])
    ]
    keys, skipped = [], []
    for record, (kind, value) in zip(records, _gather_list(mine, state)):
        keys.append(value if kind == "key" else None)
        if kind == "error":
            skipped.append(Skipped(record.path, f"cannot be read ({value})"))
    return keys, skipped


def _gather(failures: dict, state) -> dict:
    if state.num_processes == 1:
        return failures
    merged = {}
    for part in _gather_list([failures], state):
        merged.update(part)
    return merged


def _gather_list(values: list, state) -> list:
    """Every process's list, concatenated in process order."""
    from accelerate.utils import gather_object

    return gather_object(values) if state.num_processes > 1 else values


def _join(records, keys, skipped, failures, known: dict, sources, locations: dict) -> FrozenRows:
    """The records with their rows, in the data's order; images without rows are skipped, with the reason."""
    kept, kept_keys, annotations, places, parsed = [], [], [], [], {}
    for record, key in zip(records, keys):
        if key is None:
            continue
        if key in failures:
            skipped.append(Skipped(record.path, failures[key]))
            continue
        if key not in known or (sources is not None and key not in locations):
            skipped.append(Skipped(record.path, "its rows are missing from the cache after computing them; run again"))
            continue
        if key not in parsed:
            parsed[key] = ItemAnnotations.from_dict(json.loads(known[key]))
        kept.append(record)
        kept_keys.append(key)
        annotations.append(parsed[key])
        if sources is not None:
            places.append(locations[key])
    order = {record.path: i for i, record in enumerate(records)}
    skipped.sort(key=lambda item: order.get(item.path, -1))
    arrays = None if sources is None else FeatureArrays(sources, np.asarray(places, dtype=np.int64).reshape(-1, 2))
    return FrozenRows(kept, kept_keys, annotations, arrays, skipped)
