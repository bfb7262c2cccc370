"""What one `item benchmark` run measures, and its report.

Profiles (default, fast) at every batch size: each stage alone, the pipeline, the baseline, in one process on
the same images, so that "ITEM cost / baseline cost" compares like with like. With `levers`, each speed lever
alone at batch 1, and how closely each faster variant reproduces the default (`agreement`).
"""

from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..profiles import FAST_CAPTIONER, PROFILES, get_profile
from .agreement import box_recall, embedding_agreement
from .networks import Variant, build_networks
from .pipeline import STAGES, Workload, measure, random_images
from .timing import machine_info

FAST = PROFILES["fast"]
LEVERS = (
    Variant("default (BLIP-large, detector 800 px, crops, float32)"),
    Variant("detector at 400 px", detector_size=FAST.processor_options["detector_size"]),
    Variant("int8 dynamic quantization", int8=True),
    Variant("BLIP-base captioner", captioner=FAST_CAPTIONER),
    Variant("regions from one whole-image pass", regions=True),
    Variant.of(FAST),
)
TARGET_COST_VS_BASELINE = 5.0


@dataclass
class BenchmarkSettings:
    """What one benchmark run measures; `quick()` gives a cheaper variant."""

    device: str = "cpu"
    dtype: str = "float32"  # float16 / bfloat16 for the frozen networks on a GPU (the head stays float32)
    profiles: tuple[str, ...] = ("default", "fast")
    batch_sizes: tuple[int, ...] = (1, 8)
    repeats: int = 2  # each timing is the minimum over this many runs (interference only adds time)
    warmup: bool = True
    levers: bool = False  # also each lever alone at batch 1, with the agreement figures
    n_objects: int = 4
    caption_tokens: int = 20
    image_size: tuple[int, int] = (640, 480)
    size: str = "real"  # "tiny": the test suite's tiny networks (a smoke test)
    seed: int = 0
    workload_note: str = field(default=(
        "the captioner runs full greedy decoding for exactly caption_tokens tokens with the argmax forced to a fixed "
        "caption naming n_objects nouns; spaCy extracts them; box_threshold 0 keeps each noun's best box"))

    @classmethod
    def quick(cls, **overrides) -> "BenchmarkSettings":
        """One repeat, 2 objects, 12 caption tokens: a few minutes on 2 CPU cores."""
        return cls(**{"repeats": 1, "n_objects": 2, "caption_tokens": 12, **overrides})


def _build(variant: Variant, settings: BenchmarkSettings):
    return build_networks(variant, settings.size, settings.caption_tokens, settings.n_objects, settings.device,
                          settings.dtype, settings.seed)


def compare(reference: dict, nets, images: list) -> dict:
    """A variant on the default's own annotations (same captions, nouns and boxes): its embeddings and fake
    probabilities against the default's; and its detector's boxes for the default's nouns."""
    import torch

    from item_detector.processing_item import ItemAnnotations

    model, processor = nets.model, nets.processor
    inputs = {name: value.to(model.device) for name, value in processor.encode(images, reference["annotations"]).items()}
    with torch.inference_mode():
        embeddings = model.forward_features(**inputs)
        logits = model.forward_head(embeddings.image_embeds, embeddings.text_embeds, inputs["object_mask"])
        boxes, _ = processor.ground(images, [a.nouns for a in reference["annotations"]])
    other = {"image_embeds": embeddings.image_embeds.float(), "text_embeds": embeddings.text_embeds.float(),
             "object_mask": inputs["object_mask"], "fake_probability": logits.float().softmax(-1)[:, 1]}
    annotations = [ItemAnnotations(a.caption, a.nouns, b) for a, b in zip(reference["annotations"], boxes)]
    return {**embedding_agreement(reference, other), "boxes": box_recall(reference["annotations"], annotations)}


def run_benchmark(settings: BenchmarkSettings, log=print) -> dict:
    """Every measurement of `settings`; returns the report (JSON-ready)."""
    import torch

    started = time.perf_counter()
    workload = Workload(settings.image_size, settings.n_objects, settings.seed)
    report = {"settings": asdict(settings), "machine": machine_info(torch.device(settings.device)), "profiles": {},
              "levers": {}, "target_cost_vs_baseline": TARGET_COST_VS_BASELINE}
    reference, reference_images = None, random_images(1, settings.image_size, settings.seed + 1)
    for name in settings.profiles:
        log(f"profile {name}: building ...")
        nets = _build(Variant.of(get_profile(name)), settings)
        report["profiles"][name] = {"parameters": nets.parameters, "batches": {}}
        for batch in sorted(settings.batch_sizes):
            log(f"  batch {batch}: the stages alone, the pipeline, the baseline ({settings.repeats} repeats) ...")
            result, computed = measure(nets, batch, workload, settings.repeats, settings.warmup)
            report["profiles"][name]["batches"][str(batch)] = result
            log(f"  {result['pipeline']['seconds']:.2f} s, {result['cost_vs_baseline']:.2f}x the baseline")
            if batch == 1 and name == "default":
                reference = computed
        if reference is not None and name != "default":
            report["profiles"][name]["agreement"] = compare(reference, nets, reference_images)
        del nets
        gc.collect()
    if settings.levers:
        report["levers"] = measure_levers(settings, workload, reference, reference_images, log)
    report["total_seconds"] = time.perf_counter() - started
    return report


def measure_levers(settings: BenchmarkSettings, workload: Workload, reference, images, log) -> dict:
    """Each lever alone (and all together) at batch 1: pipeline and baseline, and agreement with the default."""
    levers = {}
    for variant in LEVERS:
        log(f"lever {variant.name!r}: building ...")
        nets = _build(variant, settings)
        result, computed = measure(nets, 1, workload, settings.repeats, settings.warmup)
        if reference is None:  # the first lever is the default itself
            reference = computed
        levers[variant.name] = {"variant": asdict(variant), **result, "agreement": compare(reference, nets, images)}
        log(f"  {result['pipeline']['seconds']:.2f} s, {result['cost_vs_baseline']:.2f}x the baseline")
        del nets
        gc.collect()
    return levers


# ---------------------------------------------------------------------------------------------- report
def format_report(report: dict) -> str:
    """Markdown: one column per (profile, batch size); then the levers table when measured."""
    columns = [(name, batch) for name, profile in report["profiles"].items() for batch in profile["batches"]]
    cell = lambda name, batch: report["profiles"][name]["batches"][batch]  # noqa: E731
    lines = ["| | " + " | ".join(f"{name}, batch {batch}" for name, batch in columns) + " |", "|---|" + "---|" * len(columns)]

    def row(label, values):
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    seconds = lambda entry: f"{entry['seconds']:.3f} s ({entry['images_per_second']:.2f} img/s)"  # noqa: E731
    for stage in STAGES:
        row(stage.replace("_", " "), [seconds(cell(n, b)["stages"][stage]) for n, b in columns])
    row("**whole pipeline**", [f"**{seconds(cell(n, b)['pipeline'])}**" for n, b in columns])
    row("overhead ratio (pipeline / sum of stages)", [f"{cell(n, b)['overhead_ratio']:.3f}" for n, b in columns])
    row("UniversalFakeDetect-style baseline", [seconds(cell(n, b)["baseline"]) for n, b in columns])
    row("**ITEM cost / baseline cost**", [f"**{cell(n, b)['cost_vs_baseline']:.2f}x**" for n, b in columns])
    row("peak memory (process)", [f"{cell(n, b)['peak_memory_mb'] / 1024:.1f} GiB" for n, b in columns])
    for name, profile in report["profiles"].items():
        if "agreement" in profile:
            lines += ["", f"{name} against default on the same inputs: " + agreement_text(profile["agreement"])]
    if report.get("levers"):
        lines += ["", "| lever (alone, batch 1) | pipeline | x baseline | image embedding cosine | text embedding cosine "
                  "| fake probability change (mean / max) | default boxes found again (IoU >= 0.5) |", "|---|---|---|---|---|---|---|"]
        for name, lever in report["levers"].items():
            a = lever["agreement"]
            lines.append(f"| {name} | {lever['pipeline']['seconds']:.2f} s | {lever['cost_vs_baseline']:.2f}x | "
                         f"{a['image_embeds']['cosine_mean']:.4f} (min {a['image_embeds']['cosine_min']:.4f}) | "
                         f"{a['text_embeds']['cosine_mean']:.4f} | {a['fake_probability_change']['mean']:.4f} / "
                         f"{a['fake_probability_change']['max']:.4f} | {a['boxes']['found_again']}/{a['boxes']['boxes']} |")
    machine = report["machine"]
    lines.append(f"\nmachine: {machine['cpu_model']}, {machine['cpu_count']} cores, torch {machine['torch']} "
                 f"({machine['torch_threads']} threads), transformers {machine['transformers']}, device {machine['device']}"
                 + (f" ({machine['gpu']})" if "gpu" in machine else ""))
    return "\n".join(lines)


def agreement_text(agreement: dict) -> str:
    return (f"image embeddings cosine {agreement['image_embeds']['cosine_mean']:.4f} (min {agreement['image_embeds']['cosine_min']:.4f}), "
            f"text {agreement['text_embeds']['cosine_mean']:.4f}; fake probability change {agreement['fake_probability_change']['mean']:.4f} "
            f"mean, {agreement['fake_probability_change']['max']:.4f} max; default boxes found again "
            f"{agreement['boxes']['found_again']}/{agreement['boxes']['boxes']}")


def write_report(report: dict, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
