"""ITEM's speed against the cost of its own frozen networks and against a one-pass CLIP detector.

For a variant (a profile, or one speed lever) and a batch size, on the same random images:

- each stage alone, chained through the public API (each takes the previous one's output):
  `processor.caption`, `extract_nouns`, `ground`, `encode`, then `model.forward_features` (the image tower over
  the image and its crops, or the regions of its one pass, and the text tower) and `model.forward_head`;
- the whole pipeline as a user runs it (`ItemImageClassificationPipeline`);
- a UniversalFakeDetect-style baseline: CLIP preprocessing, one CLIP ViT-L/14 image encode, one linear layer.

The work is fixed: the captioner writes the fixed caption (`networks.force_caption`), spaCy finds its nouns
(checked), `box_threshold` 0 keeps one box per noun, the images are random 640 x 480 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .networks import Networks, fixed_caption
from .timing import Timer, peak_memory_mb, reset_peak_memory

STAGES = ("captioning", "noun_extraction", "detection", "crops_and_preprocessing", "backbone", "head")


@dataclass
class Workload:
    image_size: tuple[int, int] = (640, 480)
    n_objects: int = 4
    seed: int = 0


def random_images(count: int, size: tuple[int, int], seed: int = 0) -> list:
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(count)]


def run_stages(nets: Networks, images: list, timer: Timer, expected_nouns: list[str]) -> dict:
    """Every stage alone, chained; returns what they computed (annotations, inputs, embeddings)."""
    import torch

    from item_detector.processing_item import ItemAnnotations

    model, processor = nets.model, nets.processor
    with torch.inference_mode():
        captions = timer("captioning", lambda: processor.caption(images))
        nouns = timer("noun_extraction", lambda: processor.extract_nouns(captions))
        if any(found != expected_nouns for found in nouns):
            raise RuntimeError(f"spaCy found {nouns[0]} in {captions[0]!r}, expected {expected_nouns}: the workload is broken.")
        boxes = timer("detection", lambda: processor.ground(images, nouns))[0]
        annotations = [ItemAnnotations(c, n, b) for c, n, b in zip(captions, nouns, boxes)]
        inputs = timer("crops_and_preprocessing", lambda: processor.encode(images, annotations))
        inputs = {name: value.to(next(model.head.parameters()).device) for name, value in inputs.items()}
        embeddings = timer("backbone", lambda: model.forward_features(**inputs))
        image_embeds, text_embeds, mask = embeddings.image_embeds, embeddings.text_embeds, inputs["object_mask"]
        logits = timer("head", lambda: model.forward_head(image_embeds, text_embeds, mask))
    return {"annotations": annotations, "image_embeds": image_embeds.float().cpu(), "text_embeds": text_embeds.float().cpu(),
            "object_mask": mask.cpu(), "fake_probability": logits.float().softmax(-1)[:, 1].cpu()}


def run_pipeline(nets: Networks, images: list, timer: Timer) -> list:
    from item_detector.pipeline_item import ItemImageClassificationPipeline

    pipe = ItemImageClassificationPipeline(model=nets.model, processor=nets.processor, device=timer.device)
    results = timer("pipeline", lambda: pipe(images, batch_size=len(images)))
    if len(results) != len(images):
        raise RuntimeError(f"the pipeline returned {len(results)} results for {len(images)} images")
    return results


def run_baseline(nets: Networks, images: list, timer: Timer):
    """A UniversalFakeDetect-style detector: one image-tower pass over the whole image and a linear probe."""
    import torch

    image_processor = nets.processor.image_processor
    device = nets.baseline_head.weight.device

    def baseline():
        with torch.inference_mode():
            pixels = torch.as_tensor(image_processor(images=images, return_tensors="np")["pixel_values"], device=device)
            features = nets.baseline_encoder.get_image_features(pixel_values=pixels.to(nets.baseline_head.weight.dtype))
            return nets.baseline_head(getattr(features, "pooler_output", features)).sigmoid()

    return timer("baseline_universalfakedetect", baseline)


def measure(nets: Networks, batch: int, workload: Workload, repeats: int, warmup: bool = True,
            stages: bool = True) -> tuple[dict, dict | None]:
    """(timings, what the stages computed) of one variant at one batch size: the stages alone (optional; their
    outputs feed the accuracy comparisons), the pipeline, the baseline."""
    _, nouns = fixed_caption(workload.n_objects)
    images = random_images(batch, workload.image_size, seed=workload.seed + batch)
    timer = Timer(next(nets.model.head.parameters()).device)
    reset_peak_memory(timer.device)  # on a GPU: this batch size's own peak, not the run's so far
    if warmup:  # untimed: the first call at a batch shape pays for allocations
        scratch = Timer(timer.device)
        run_pipeline(nets, images, scratch)
        run_baseline(nets, images, scratch)
    computed = None
    for repeat in range(repeats):
        # Alternate which goes first, so that neither always pays the first call at a new batch shape.
        parts = [lambda: run_pipeline(nets, images, timer), lambda: run_baseline(nets, images, timer)]
        if stages:
            parts.insert(0, lambda: run_stages(nets, images, timer, nouns))
        for part in parts if repeat % 2 == 0 else reversed(parts):
            out = part()
            computed = out if isinstance(out, dict) else computed
    result = {"pipeline": timer.summary("pipeline", batch), "baseline": timer.summary("baseline_universalfakedetect", batch),
              "peak_memory_mb": peak_memory_mb(timer.device)}
    result["cost_vs_baseline"] = result["pipeline"]["seconds"] / result["baseline"]["seconds"]
    if stages:
        result["stages"] = {name: timer.summary(name, batch) for name in STAGES}
        result["stages_sum_seconds"] = sum(stage["seconds"] for stage in result["stages"].values())
        result["overhead_ratio"] = result["pipeline"]["seconds"] / result["stages_sum_seconds"]
        result["objects_per_image"] = float(computed["object_mask"].sum()) / batch
    return result, computed
