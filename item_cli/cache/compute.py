"""Computing the missing rows: images decoded once (in worker processes), the captioner, spaCy and the detector
on the images without annotations, the backbone on the images without features, each once per batch; rows are
buffered and written as chunks as they are done, so an interrupted run keeps what it finished."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from item_detector.processing_item import ItemAnnotations

from ..console import Progress
from ..data.decode import ImageReader
from .store import StageStore, checksum

FLUSH_ROWS = 256  # rows buffered before they are written as one chunk ...
FLUSH_SECONDS = 60.0  # ... or after this long: a killed run loses at most this much work


@dataclass
class _Buffer:
    """Rows computed but not yet written; flushed as one chunk per stage."""

    annotations: dict = field(default_factory=lambda: {"key": [], "annotation": []})
    features: dict = field(default_factory=lambda: {"key": [], "annotation": [], "image_embeds": [], "text_embeds": [],
                                                    "object_mask": []})
    last_flush: float = field(default_factory=time.monotonic)

    def due(self) -> bool:
        rows = max(len(self.annotations["key"]), len(self.features["key"]))
        return rows >= FLUSH_ROWS or (rows and time.monotonic() - self.last_flush >= FLUSH_SECONDS)

    def flush(self, annotation_store: StageStore, feature_store: StageStore | None, storage_dtype: str) -> None:
        if self.annotations["key"]:
            annotation_store.write(pa.table(self.annotations))
        if feature_store is not None and self.features["key"]:
            pa_type = pa.float16() if storage_dtype == "float16" else pa.float32()
            columns = dict(self.features)
            for name in ("image_embeds", "text_embeds"):
                flat = np.stack(columns[name]).astype(storage_dtype).reshape(len(columns[name]), -1)
                columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=pa_type), flat.shape[1])
            mask = np.stack(columns["object_mask"]).astype(np.uint8)
            columns["object_mask"] = pa.FixedSizeListArray.from_arrays(pa.array(mask.reshape(-1)), max(mask.shape[1], 1)) \
                if mask.shape[1] else pa.array([[]] * len(mask), type=pa.list_(pa.uint8(), 0))
            feature_store.write(pa.table(columns))
        self.__init__()


@dataclass
class Work:
    """What one process computes: images (by record index) and which stages each one lacks."""

    processor: object
    model: object
    perturbation: object
    annotation_store: StageStore
    feature_store: StageStore | None
    storage_dtype: str
    known: dict  # key -> annotation JSON already in the cache


def compute_missing(work: Work, items: list[tuple[int, str, str]], batch_size: int, reader: ImageReader, device) -> dict[str, str]:
    """Compute and write the missing rows of `items` (index, path, key); returns {key: reason} for images that
    could not be read."""
    failures, buffer = {}, _Buffer()
    # a tqdm bar on a terminal, a line every 30 s in a log file: with real networks the longest step of a run
    progress = Progress(len(items), "Computing captions, boxes and features")
    batch = []
    try:
        for decoded in reader.read(path for _, path, _ in items):
            _, _, key = items[decoded.index]
            if decoded.error is not None:
                failures[key] = decoded.error
                progress.update(1)
            elif decoded.key != key:
                failures[key] = "the file changed while it was being read; run again"
                progress.update(1)
            else:
                image = decoded.image if work.perturbation is None else work.perturbation(decoded.image)
                batch.append((key, image))
            if len(batch) == batch_size:
                compute_batch(work, batch, buffer, device)
                progress.update(len(batch))
                batch = []
            if buffer.due():
                buffer.flush(work.annotation_store, work.feature_store, work.storage_dtype)
        if batch:
            compute_batch(work, batch, buffer, device)
            progress.update(len(batch))
    finally:  # Ctrl-C keeps every finished row
        buffer.flush(work.annotation_store, work.feature_store, work.storage_dtype)
        progress.close()
    return failures


def compute_batch(work: Work, batch: list[tuple[str, object]], buffer: _Buffer, device) -> None:
    import torch

    keys, images = [key for key, _ in batch], [image for _, image in batch]
    missing = [i for i, key in enumerate(keys) if key not in work.known]
    for i, annotation in zip(missing, work.processor.annotate([images[i] for i in missing]) if missing else []):
        text = json.dumps(annotation.to_dict(), sort_keys=True)
        work.known[keys[i]] = text
        buffer.annotations["key"].append(keys[i])
        buffer.annotations["annotation"].append(text)
    if work.feature_store is None:
        return
    texts = [work.known[key] for key in keys]
    annotations = [ItemAnnotations.from_dict(json.loads(text)) for text in texts]
    inputs = work.processor.encode(images, annotations, return_tensors="pt")
    with torch.no_grad():
        embeddings = work.model.forward_features(**{name: value.to(device) for name, value in inputs.items()})
    image_embeds, text_embeds = embeddings.image_embeds.float().cpu().numpy(), embeddings.text_embeds.float().cpu().numpy()
    mask = inputs["object_mask"].cpu().numpy()
    for i, key in enumerate(keys):
        buffer.features["key"].append(key)
        buffer.features["annotation"].append(checksum(texts[i]))
        buffer.features["image_embeds"].append(image_embeds[i])
        buffer.features["text_embeds"].append(text_embeds[i])
        buffer.features["object_mask"].append(mask[i])
