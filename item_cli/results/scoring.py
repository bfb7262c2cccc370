"""Scoring inputs into result rows: through the pipeline (every network), or from the frozen-work cache (the head).

Both give, per input, the `explain=True` result or the reason it was skipped, with the sha256 of the bytes that
were scored (hashed by the decoding worker: a file changed since it was listed is scored, and keyed, as read).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..data import Skipped
from .rows import FAILED, UNREADABLE, scored_row, skipped_row


def detect(pipe, decoded_images, batch_size: int = 8, threshold: float | None = None, provenance_policy: str = "report"):
    """Yield `(path, explanation dict or Skipped, the decoded image or None)` for every `Decoded` of
    `decoded_images`, in order; each result gets its file's provenance (read by the decoding worker from the same
    bytes) beside the verdict, as `provenance_policy` says.

    Images are scored `batch_size` at a time in one pipeline call; if a batch fails, its images are scored one by
    one, so that one image the networks cannot take costs only itself.
    """
    batch = []
    for decoded in decoded_images:
        if decoded.error is not None:
            yield decoded.path, Skipped(decoded.path, decoded.error), None
            continue
        batch.append(decoded)
        if len(batch) == batch_size:
            yield from _score(pipe, batch, threshold, provenance_policy)
            batch = []
    if batch:
        yield from _score(pipe, batch, threshold, provenance_policy)


def _score(pipe, batch, threshold, provenance_policy: str):
    from item_detector.provenance_item import apply_policy

    for decoded, result in _score_batch(pipe, batch, threshold):
        if isinstance(result, Skipped):
            yield decoded.path, result, None
        elif decoded.provenance is None:
            yield decoded.path, result, decoded.image
        else:
            yield decoded.path, apply_policy(result, decoded.provenance, provenance_policy), decoded.image


def _score_batch(pipe, batch, threshold):
    # The pipeline gets decoded pixels: the workers already read each file's provenance from its bytes. A checkpoint
    # whose remote code predates provenance (no `read_provenance`) knows no `provenance` option.
    options = {"explain": True, "provenance": False} if hasattr(pipe, "read_provenance") else {"explain": True}
    if threshold is not None:
        options["threshold"] = threshold
    try:
        results = pipe([decoded.image for decoded in batch], batch_size=len(batch), **options)
    except Exception:  # noqa: BLE001 - isolate the image that failed: score one by one
        results = None
    for i, decoded in enumerate(batch):
        if results is not None:
            yield decoded, results[i]
            continue
        try:
            yield decoded, pipe(decoded.image, **options)
        except Exception as error:  # noqa: BLE001 - one image must not end the run
            yield decoded, Skipped(decoded.path, f"scoring failed ({type(error).__name__}: {error})")


def load_pipeline(model: str, device=None, revision=None):
    """The checkpoint's own image-classification pipeline (remote code)."""
    import torch
    from transformers import pipeline

    from ..model_source import check_model_source

    check_model_source(model, revision)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return pipeline("image-classification", model=model, trust_remote_code=True, device=device, revision=revision)


class _Keys:
    """Passes `Decoded`s through, remembering each one's content key and whether decoding failed."""

    def __init__(self, decoded: Iterable):
        self.decoded, self.keys, self.decode_failed = decoded, {}, set()

    def __iter__(self):
        for item in self.decoded:
            self.keys[item.path] = item.key
            if item.error is not None:
                self.decode_failed.add(item.path)
            yield item


def pipeline_rows(pipe, decoded: Iterable, todo: dict[str, str], batch_size: int, threshold: float,
                  checkpoint: str, provenance_policy: str = "report") -> Iterator[tuple[dict, object]]:
    """(result row, decoded image or None) per input, in order. `todo`: path -> its content key hashed before
    decoding (kept when the worker could not hash the file)."""
    seen = _Keys(decoded)
    for path, outcome, image in detect(pipe, seen, batch_size, threshold, provenance_policy):
        key = seen.keys.get(path) or todo.get(path)
        if isinstance(outcome, Skipped):
            readable = path in seen.decode_failed and seen.keys.get(path) is not None
            yield skipped_row(path, key, outcome.reason, UNREADABLE if readable else FAILED, checkpoint), None
        else:
            yield scored_row(path, key, outcome, checkpoint), image


def head_explanations(model, rows, indices: list[int], threshold: float | None = None) -> list[dict]:
    """The `explain=True` results of cached rows (`FrozenRows`) at `indices`: their embeddings through the head
    and their cached annotations; no frozen network runs."""
    import torch
    from item_detector.pipeline_item import explanation

    if not indices:
        return []
    arrays = rows.features.take(indices)
    device = next(model.head.parameters()).device  # the model may have been left on its accelerator
    with torch.no_grad():
        out = model(**{name: torch.from_numpy(value).to(device) for name, value in arrays.items()})
    probabilities, similarities, object_mask = out.logits.float().softmax(-1).cpu(), out.similarities.cpu(), out.object_mask.cpu()
    return [explanation(probabilities[j], similarities[j], object_mask[j], rows.annotations[i], model.config, threshold)
            for j, i in enumerate(indices)]


def cached_rows(model, processor, todo: dict[str, str], all_inputs: list, cache_options: dict, state,
                threshold: float, checkpoint: str, head_batch_size: int = 256) -> Iterator[dict]:
    """Result rows of this process's `todo` (identity -> content key) through the frozen-work cache: rows cached
    by `item cache` / `item evaluate` cost only the head; missing ones are computed and cached first.

    `all_inputs` is every process's todo, as paths or `Record`s (the cache computes its missing rows with all
    processes together)."""
    from ..cache import frozen_rows
    from ..data import UNLABELLED, Record

    records = [Record(item, UNLABELLED, "") if isinstance(item, str) else item for item in all_inputs]
    frozen = frozen_rows(records, processor, model, features=True, state=state, **cache_options)
    for skipped in frozen.skipped:
        if skipped.path in todo:
            yield skipped_row(skipped.path, todo[skipped.path], skipped.reason, FAILED, checkpoint)
    mine = [i for i, record in enumerate(frozen.records) if record.path in todo]
    for start in range(0, len(mine), head_batch_size):
        indices = mine[start:start + head_batch_size]
        for i, result in zip(indices, head_explanations(model, frozen, indices, threshold)):
            yield scored_row(frozen.records[i].path, frozen.keys[i], result, checkpoint)
