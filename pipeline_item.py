"""`pipeline("image-classification", model=ITEM_CHECKPOINT, trust_remote_code=True)`.

Standard output: `[{"label": "fake", "score": 0.93}, {"label": "real", "score": 0.07}]` per image.
With `explain=True`, each image gets a dict instead: the standard `labels` list, `fake_probability`,
`is_fake` (at `config.decision_threshold`), the `caption`, and the `objects` (noun, box, detector score,
similarity), least aligned object first: which named object looks least like its word.

Images are batched *before* preprocessing, so that the captioner, the detector and the backbone each run
once per batch of `batch_size` images (the base Pipeline would caption one image at a time).
"""

import torch

from transformers import Pipeline


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

    def _sanitize_parameters(self, top_k=None, explain=None, captions=None):
        preprocess = {} if captions is None else {"captions": captions}
        postprocess = {}
        if top_k is not None:
            postprocess["top_k"] = top_k
        if explain is not None:
            postprocess["explain"] = explain
        return preprocess, {}, postprocess

    def preprocess(self, images, captions=None):
        images = images if isinstance(images, list) else [images]
        inputs = self.processor(images=images, captions=captions, return_tensors="pt", return_annotations=True)
        annotations = {key: inputs.pop(key) for key in ("caption", "nouns", "boxes", "box_scores")}
        return {"model_inputs": dict(inputs), "annotations": annotations}

    def _forward(self, batch):
        outputs = self.model(**batch["model_inputs"])
        return {
            "probabilities": outputs.logits.float().softmax(dim=-1),
            "similarities": outputs.similarities,
            "annotations": batch["annotations"],
        }

    def postprocess(self, outputs, top_k=None, explain=False):
        """One image's result from a one-image slice of `_forward`'s output."""
        id2label = self.model.config.id2label
        probabilities = outputs["probabilities"][0]
        top_k = len(id2label) if top_k is None else min(top_k, len(id2label))
        order = probabilities.argsort(descending=True)[:top_k]
        labels = [{"label": id2label[int(i)], "score": float(probabilities[i])} for i in order]
        if not explain:
            return labels
        fake_index = self.model.config.label2id.get("fake", 1)
        fake_probability = float(probabilities[fake_index])
        annotations = {key: value[0] for key, value in outputs["annotations"].items()}
        similarities = outputs["similarities"][0]
        objects = [
            {"noun": noun, "box": box, "box_score": score, "similarity": float(similarities[1 + j])}
            for j, (noun, box, score) in enumerate(
                zip(annotations["nouns"], annotations["boxes"], annotations["box_scores"])
            )
            if box is not None
        ]
        objects.sort(key=lambda item: item["similarity"])
        return {
            "labels": labels,
            "fake_probability": fake_probability,
            "is_fake": fake_probability >= self.model.config.decision_threshold,
            "threshold": self.model.config.decision_threshold,
            "caption": annotations["caption"],
            "global_similarity": float(similarities[0]),
            "objects": objects,
            "unfound_nouns": [n for n, b in zip(annotations["nouns"], annotations["boxes"]) if b is None],
        }

    # ---------------------------------------------------------------- batching whole images
    def run_single(self, inputs, preprocess_params, forward_params, postprocess_params):
        return next(iter(self._iterate([inputs], 1, preprocess_params, forward_params, postprocess_params)))

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        return self._iterate(inputs, batch_size, preprocess_params, forward_params, postprocess_params)

    def _iterate(self, inputs, batch_size, preprocess_params, forward_params, postprocess_params):
        captions = preprocess_params.pop("captions", None)
        if isinstance(captions, str):
            captions = [captions]
        batch, offset = [], 0
        for item in inputs:
            batch.append(item)
            if len(batch) == batch_size:
                yield from self._run_batch(batch, captions, offset, preprocess_params, forward_params, postprocess_params)
                offset += len(batch)
                batch = []
        if batch:
            yield from self._run_batch(batch, captions, offset, preprocess_params, forward_params, postprocess_params)

    def _run_batch(self, batch, captions, offset, preprocess_params, forward_params, postprocess_params):
        batch_captions = None if captions is None else list(captions[offset : offset + len(batch)])
        model_inputs = self.preprocess(batch, captions=batch_captions, **preprocess_params)
        outputs = self.forward(model_inputs, **forward_params)
        for i in range(len(batch)):
            one = {
                "probabilities": outputs["probabilities"][i : i + 1],
                "similarities": outputs["similarities"][i : i + 1],
                "annotations": {key: value[i : i + 1] for key, value in outputs["annotations"].items()},
            }
            yield self.postprocess(one, **postprocess_params)

    def _ensure_tensor_on_device(self, inputs, device):
        if isinstance(inputs, torch.Tensor):
            return inputs.to(device)
        if isinstance(inputs, dict):
            return {key: self._ensure_tensor_on_device(value, device) for key, value in inputs.items()}
        return inputs
