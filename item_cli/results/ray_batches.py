"""Scoring with Ray Data: `ds.map_batches(BatchScorer, fn_constructor_kwargs=..., num_gpus=1, concurrency=N)`.

For clusters that run Ray rather than accelerate. Each actor loads the pipeline once (one GPU per actor, given by
Ray) and turns a batch of `{"path": [...], "bytes": [...]}` (`ray.data.read_binary_files(..., include_paths=True)`)
into the same result rows `item detect --output` writes (`rows.SCHEMA`), as a dict of columns. Ray is not a
dependency of this project and is not imported here.

Unlike `item detect`, the bytes are decoded inside the actor (not in a bounded worker process): a decoder that
crashes takes the actor down and Ray restarts it. An image that is not readable gives a row with the reason.
"""

from __future__ import annotations

from item_detector.images_item import load_image

from ..data.decode import content_key
from .identity import checkpoint_folder, checkpoint_identity, default_threshold
from .rows import SCHEMA, UNREADABLE, scored_row, skipped_row


class BatchScorer:
    def __init__(self, model: str, revision: str | None = None, device: str | None = None, batch_size: int = 8,
                 threshold: float | None = None):
        from . import scoring

        folder = checkpoint_folder(model, revision)
        self.checkpoint = checkpoint_identity(folder)
        self.threshold = default_threshold(folder) if threshold is None else threshold
        self.batch_size = batch_size
        self.pipe = scoring.load_pipeline(model, device, revision)

    def __call__(self, batch: dict) -> dict[str, list]:
        """Result rows of one batch, as columns."""
        rows, images, places = [], [], []
        for path, data in zip(batch["path"], batch["bytes"]):
            data = bytes(data)
            key = content_key(data)
            try:
                images.append(load_image(data))
            except (ValueError, TypeError) as error:
                rows.append(skipped_row(str(path), key, str(error), UNREADABLE, self.checkpoint))
                continue
            places.append(len(rows))
            rows.append((str(path), key))
        results = self.pipe(images, batch_size=self.batch_size, explain=True, threshold=self.threshold) if images else []
        for place, result in zip(places, results):
            path, key = rows[place]
            rows[place] = scored_row(path, key, result, self.checkpoint)
        return {name: [row[name] for row in rows] for name in SCHEMA.names}
