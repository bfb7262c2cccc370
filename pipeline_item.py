"""`pipeline("image-classification", model=ITEM_CHECKPOINT, trust_remote_code=True)`.

Standard output: `[{"label": "fake", "score": 0.93}, {"label": "real", "score": 0.07}]` per image.
With `explain=True`, each image gets a dict instead: the standard `labels` list, `fake_probability`,
`is_fake` (at `threshold`, by default `config.decision_threshold`), the `verdict` ("real" or "fake" as `is_fake`
says, or "unsure" when the fake probability lies in the checkpoint's `unsure_band`, `low <= p < high`), the
`unsure_band` (or None), the `caption`, and the `objects` (noun, box, detector score, similarity), least aligned
object first: which named object looks least like its word.
`pipe.draw_explanation(image, result)` draws that result onto the image.

Each `explain=True` result also carries `provenance` (see `provenance_item.py`): Content Credentials, generator
metadata and known invisible watermarks, read from the file when the input is a path or bytes; for a PIL image or
array, what the pixels alone can say (a watermark) and that the file's credentials could not be read. It is
reported beside the verdict: `provenance=False` leaves it out, and `provenance_policy="signed-ai-decides"` lets a
trusted, valid C2PA claim of AI generation set `is_fake` (with `decided_by` saying so).

Images are batched *before* preprocessing, so that the captioner, the detector and the backbone each run
once per batch of `batch_size` images (the base Pipeline would caption one image at a time).

An input that is not a readable image raises a `ValueError` naming it; with `on_error="record"` it gives
`{"input": ..., "error": reason}` in its place instead, and the other images are scored.
"""

import os

import torch

from transformers import Pipeline

from .images_item import load_image
from .provenance_item import POLICIES, apply_policy, read_provenance
from .visualization_item import draw_explanation

ON_ERROR = ("raise", "record")


class ItemImageClassificationPipeline(Pipeline):
    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError("The ITEM pipeline needs the checkpoint's ItemProcessor (processor_config.json).")
        # The captioner and detector follow the model: same device, and half precision when it is in half.
        half = self.model.dtype in (torch.float16, torch.bfloat16)
        self.processor.to(self.device, self.model.dtype if half else None)

    def __call__(self, inputs, **kwargs):
        """Score one image or a list (paths, image bytes, PIL images, uint8 arrays); see the module docstring."""
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []  # the base class would index the first element
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, top_k=None, explain=None, captions=None, threshold=None, on_error=None,
                             provenance=None, provenance_policy=None):
        preprocess = {} if captions is None else {"captions": captions}
        if provenance is not None:
            preprocess["provenance"] = bool(provenance)
        if provenance_policy is not None:
            if provenance_policy not in POLICIES:
                raise ValueError(f"provenance_policy={provenance_policy!r}; choose one of {', '.join(POLICIES)}.")
            preprocess["provenance_policy"] = provenance_policy
        if on_error is not None:
            if on_error not in ON_ERROR:
                raise ValueError(f"on_error={on_error!r}; choose 'raise' (the default) or 'record'.")
            preprocess["on_error"] = on_error
        postprocess = {}
        if top_k is not None:
            postprocess["top_k"] = top_k
        if explain is not None:
            postprocess["explain"] = explain
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold={threshold!r}; pass a fake probability in [0, 1].")
            postprocess["threshold"] = float(threshold)
        return preprocess, {}, postprocess

    def preprocess(self, images, captions=None):
        """RGB images -> model inputs and the annotations (caption, nouns, boxes) that made them."""
        annotations = self.processor.annotate(images, captions=captions)
        inputs = self.processor.encode(images, annotations, return_tensors="pt")
        return {"model_inputs": dict(inputs), "annotations": annotations}

    def _forward(self, batch):
        outputs = self.model(**batch["model_inputs"])
        return {
            "probabilities": outputs.logits.float().softmax(dim=-1),
            "similarities": outputs.similarities,
            "object_mask": outputs.object_mask,
            "annotations": batch["annotations"],
        }

    def postprocess(self, outputs, top_k=None, explain=False, threshold=None):
        """One image's result from a one-image slice of `_forward`'s output."""
        result = explanation(outputs["probabilities"][0], outputs["similarities"][0], outputs["object_mask"][0],
                             outputs["annotations"][0], self.model.config, threshold, top_k)
        return result if explain else result["labels"]

    # ---------------------------------------------------------------- batching whole images
    def run_single(self, inputs, preprocess_params, forward_params, postprocess_params):
        return next(iter(self._iterate([inputs], 1, preprocess_params, forward_params, postprocess_params)))

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        return self._iterate(inputs, batch_size, preprocess_params, forward_params, postprocess_params)

    def _iterate(self, inputs, batch_size, preprocess_params, forward_params, postprocess_params):
        """Results in input order, `batch_size` images per network call."""
        captions = preprocess_params.pop("captions", None)
        on_error = preprocess_params.pop("on_error", "raise")
        provenance = (preprocess_params.pop("provenance", True) and postprocess_params.get("explain", False),
                      preprocess_params.pop("provenance_policy", "report"))
        if isinstance(captions, str):
            captions = [captions]
        if captions is not None and hasattr(inputs, "__len__") and len(captions) != len(inputs):
            raise ValueError(f"Got {len(inputs)} images but {len(captions)} captions; pass one caption per image.")
        batch, index = [], 0
        for item in inputs:
            batch.append((index, item))
            index += 1
            if len(batch) == batch_size:
                yield from self._run_batch(batch, captions, on_error, forward_params, postprocess_params, provenance)
                batch = []
        if batch:
            yield from self._run_batch(batch, captions, on_error, forward_params, postprocess_params, provenance)

    def _run_batch(self, batch, captions, on_error, forward_params, postprocess_params, provenance=(False, "report")):
        results, images, image_captions = {}, [], []
        for index, item in batch:
            try:
                images.append((index, load_image(item)))
            except (ValueError, TypeError) as error:
                if on_error == "raise":
                    raise type(error)(f"Image {index} of the input: {error}") from None
                results[index] = {"input": _describe(item), "error": str(error)}
                continue
            image_captions.append(None if captions is None or index >= len(captions) else captions[index])
        if images:
            model_inputs = self.preprocess(
                [image for _, image in images], captions=None if captions is None else image_captions
            )
            outputs = self.forward(model_inputs, **forward_params)
            inputs = dict(batch)
            for row, (index, image) in enumerate(images):
                one = {name: value[row : row + 1] for name, value in outputs.items()}
                results[index] = self.postprocess(one, **postprocess_params)
                if provenance[0]:
                    found = read_provenance(inputs[index], pixels=image)  # a file's own bytes, or only its pixels
                    results[index] = apply_policy(results[index], found.to_dict(), provenance[1])
        for index, _ in batch:
            yield results[index]

    @staticmethod
    def read_image(image):
        """An image as the pipeline reads it (a path, bytes, PIL image or array -> upright 8-bit RGB); a
        `ValueError` naming it when it is not a readable image."""
        return load_image(image)

    @staticmethod
    def read_provenance(source, pixels=None, trust_anchors=None):
        """The `Provenance` of a path, file bytes or decoded image (see `provenance_item.read_provenance`)."""
        return read_provenance(source, pixels=pixels, trust_anchors=trust_anchors)

    @staticmethod
    def draw_explanation(image, result, max_size: int | None = None):
        """The explanation picture of one `explain=True` result: verdict, caption, and each object's box coloured
        by how well it matches its word (see `visualization_item.draw_explanation`)."""
        return draw_explanation(image, result, max_size=max_size)

    def _ensure_tensor_on_device(self, inputs, device):
        if isinstance(inputs, torch.Tensor):
            return inputs.to(device)
        if isinstance(inputs, dict):
            return {key: self._ensure_tensor_on_device(value, device) for key, value in inputs.items()}
        return inputs


def explanation(probabilities, similarities, object_mask, annotation, config, threshold=None, top_k=None) -> dict:
    """The `explain=True` result of one image, from the model's outputs and the annotations they came from.

    Args:
        probabilities: (num_labels,) softmax of the logits. similarities: (1 + K,) per-pair cosine similarities.
        object_mask: (K,) the object slots the model used. annotation: the image's `ItemAnnotations`.
        config: the model's `ItemConfig` (labels, decision threshold). threshold: overrides its threshold.
    """
    id2label = config.id2label
    top_k = len(id2label) if top_k is None else min(top_k, len(id2label))
    order = probabilities.argsort(descending=True)[:top_k]
    labels = [{"label": id2label[int(i)], "score": float(probabilities[i])} for i in order]
    threshold = config.decision_threshold if threshold is None else threshold
    fake_probability = float(probabilities[config.label2id.get("fake", 1)])
    slots = list(zip(annotation.nouns, annotation.boxes, annotation.box_scores))
    used = [j < len(object_mask) and bool(object_mask[j]) for j in range(len(slots))]
    objects = [  # only the objects the model saw: a box too small, or outside what the image tower sees, was not
        {"noun": noun, "box": box, "box_score": score, "similarity": float(similarities[1 + j])}
        for j, (noun, box, score) in enumerate(slots) if used[j]
    ]
    objects.sort(key=lambda item: item["similarity"])
    is_fake = fake_probability >= threshold
    band = getattr(config, "unsure_band", None)  # a config saved before the band existed has none
    return {
        "labels": labels,
        "fake_probability": fake_probability,
        "is_fake": is_fake,
        "verdict": config.verdict(fake_probability, is_fake) if band is not None else ("fake" if is_fake else "real"),
        "threshold": threshold,
        "unsure_band": None if band is None else list(band),
        "caption": annotation.caption,
        "global_similarity": float(similarities[0]),
        "objects": objects,
        "unfound_nouns": [noun for j, (noun, _, _) in enumerate(slots) if not used[j]],
    }


def _describe(item) -> str:
    """How an input is named in an error record: its path, or its type."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return f"<{type(item).__name__}>"
