"""Speed of ITEM against the cost of its own frozen networks, on real-size architectures with random weights.

`item benchmark` and `benchmarks/run_benchmark.py` both call `run_benchmark`. It builds, in memory and with
random weights (random weights cost exactly the same compute as trained ones, so this measures speed, never
accuracy):

    backbone   CLIP ViT-L/14 (vision 1024 x 24 layers at 224 px, patch 14; text 768 x 12 layers; projection 768)
    captioner  BLIP-large (ViT-L/16 at 384 px + BERT-base text decoder with cross-attention, vocabulary 30524)
    detector   Grounding DINO tiny (Swin-T backbone, BERT-base text encoder, 900 queries, input 800 / 1333 px)

and times, for each batch size, every stage alone, the whole pipeline as a user runs it
(`ItemImageClassificationPipeline`: processor -> model -> postprocess), a UniversalFakeDetect-style baseline
(CLIP preprocessing + one CLIP ViT-L/14 image encode + one linear layer) and the head's training on cached
features against training through the frozen networks.

What is fixed so that every run does the same work (random weights would otherwise decide it):
- the caption: the captioner runs its full greedy `generate` for exactly `caption_tokens` new tokens
  (min_new_tokens = max_new_tokens), but a logits processor forces the tokens of a fixed caption naming
  `n_objects` distinct nouns ("a man with a dog, a bike and a car"), then "." up to the length. The forward
  passes are those of free greedy decoding; only the argmax is overridden.
- the nouns: spaCy extracts exactly those `n_objects` nouns from that caption (checked).
- the boxes: the processor's `box_threshold` is 0, so every noun keeps the detector's best box.
- the images: `B` random RGB images of `image_size` (640 x 480 by default), all the same size.
The stages alone reuse the captions, nouns and boxes of a reference pipeline run, so they process exactly
the crops and texts the pipeline does.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

STAGES = ("captioning", "noun_extraction", "detection", "crops_and_preprocessing", "clip_image", "clip_text", "head")
DEFAULT_NOUNS = ("man", "dog", "bike", "car", "tree", "cup", "table", "cake")
TARGETS = {"overhead_ratio_batch8_max": 1.10, "batch8_vs_batch1_throughput_min": 1.5}


@dataclass
class BenchmarkSettings:
    """What one benchmark run measures; `quick()` gives the cheaper variant behind `--quick`."""

    device: str = "cpu"
    dtype: str = "float32"  # float16 / bfloat16: captioner, detector and backbone weights (the head stays fp32)
    batch_sizes: tuple[int, ...] = (1, 8)
    repeats: int = 2  # each timing is the minimum over this many runs (interference only adds time)
    warmup: bool = True  # one untimed pass of everything at the smallest batch size first
    n_objects: int = 4  # distinct nouns in the fixed caption = object slots used per image
    caption_tokens: int = 20  # new tokens the captioner generates for every image
    caption_num_beams: int = 1  # greedy by default; >1 times beam search
    image_size: tuple[int, int] = (640, 480)  # (width, height) of the random input images
    detector_shortest_edge: int | None = None  # None: the detector processor's real default (800 / 1333)
    train_cached_samples: int = 1024  # size of the cached-feature "dataset" for one head epoch
    train_batch_size: int = 8
    train_frozen_images: int = 1  # images in the one training step timed through the frozen networks
    network_size: str = "real"  # "tiny": tiny configs of the same architectures (tests)
    seed: int = 0
    quick_mode: bool = False

    @classmethod
    def quick(cls, **overrides) -> "BenchmarkSettings":
        """Cheaper run (a few minutes on 2 CPU cores): one repeat, 2 objects, 12 caption tokens, detector at 400 px."""
        values = dict(repeats=1, n_objects=2, caption_tokens=12, detector_shortest_edge=400, quick_mode=True)
        values.update(overrides)
        return cls(**values)


# ---------------------------------------------------------------------------------------------- inputs
def fixed_caption(n_objects: int, nouns: tuple[str, ...] = DEFAULT_NOUNS) -> tuple[str, list[str]]:
    """A caption naming exactly `n_objects` distinct nouns that spaCy's root-noun extraction finds, and the nouns."""
    if not 1 <= n_objects <= len(nouns):
        raise ValueError(f"n_objects={n_objects}; the benchmark's fixed caption names 1 to {len(nouns)} objects.")
    names = list(nouns[:n_objects])
    if n_objects == 1:
        return f"a {names[0]}", names
    rest = [f"a {name}" for name in names[1:]]
    tail = rest[0] if len(rest) == 1 else ", ".join(rest[:-1]) + " and " + rest[-1]
    return f"a {names[0]} with {tail}", names


def random_images(count: int, size: tuple[int, int], seed: int = 0) -> list:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(count)]


# ---------------------------------------------------------------------------------------------- networks
def _bert_tokenizer():
    """A WordPiece tokenizer with bert-base-uncased's special-token ids (Grounding DINO hard-codes 101, 102, 1012, 1029)."""
    from transformers import BertTokenizer

    from .testing.tiny import WORDS

    vocab = [f"[unused{i}]" for i in range(30522)]
    for index, token in {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1010: ",", 1011: "-",
                         1012: ".", 1029: "?"}.items():
        vocab[index] = token
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for offset, token in enumerate(dict.fromkeys([*WORDS, *letters, *("##" + c for c in letters)])):
        vocab[2000 + offset] = token
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)


def _sizes(network_size: str) -> dict:
    if network_size == "real":
        return dict(
            clip_vision=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                             patch_size=14, image_size=224),
            clip_text=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                           vocab_size=49408, max_position_embeddings=77),
            projection_dim=768,
            clip_image=224,
            blip_vision=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                             image_size=384, patch_size=16),
            blip_text=dict(vocab_size=30524, encoder_hidden_size=1024),  # BERT-base sized decoder by default
            blip_image=384,
            detector=dict(),  # GroundingDinoConfig defaults = grounding-dino-tiny apart from the backbone
            swin=dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                      out_features=["stage2", "stage3", "stage4"]),
            detector_size={"shortest_edge": 800, "longest_edge": 1333},
        )
    if network_size == "tiny":
        small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
        return dict(
            clip_vision=dict(small, patch_size=8, image_size=32),
            clip_text=dict(small, vocab_size=49408, max_position_embeddings=77),
            projection_dim=24,
            clip_image=32,
            blip_vision=dict(small, image_size=32, patch_size=8),
            blip_text=dict(small, vocab_size=30524, encoder_hidden_size=32),
            blip_image=32,
            detector=dict(
                text_config=dict(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32),
                d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10, num_feature_levels=2, encoder_n_points=2,
                decoder_n_points=2, max_text_len=64, fusion_dropout=0.0,
            ),
            swin=dict(embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=2, image_size=32,
                      out_features=["stage1", "stage2"]),
            detector_size={"shortest_edge": 32, "longest_edge": 64},
        )
    raise ValueError(f"network_size={network_size!r}; choose 'real' or 'tiny'.")


@dataclass
class Networks:
    model: Any  # ItemForImageClassification (CLIP backbone + head)
    processor: Any  # ItemProcessor with the captioner, detector and spaCy attached
    baseline_head: Any  # nn.Linear(projection_dim, 1): the UniversalFakeDetect-style probe
    parameters: dict = field(default_factory=dict)


def build_networks(settings: BenchmarkSettings, workdir: str | os.PathLike) -> Networks:
    """Random-weight backbone, captioner and detector of the real (or tiny) sizes, wired into ITEM."""
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        CLIPConfig,
        CLIPImageProcessor,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    from item_detector.configuration_item import ItemConfig
    from item_detector.modeling_item import ItemForImageClassification
    from item_detector.processing_item import ItemProcessor

    from .testing.tiny import tiny_clip_tokenizer

    sizes = _sizes(settings.network_size)
    workdir = Path(workdir)
    torch.manual_seed(settings.seed)

    clip_tokenizer = tiny_clip_tokenizer(77)
    special = dict(bos_token_id=clip_tokenizer.bos_token_id, eos_token_id=clip_tokenizer.eos_token_id,
                   pad_token_id=clip_tokenizer.pad_token_id)
    clip_config = CLIPConfig(
        text_config=dict(sizes["clip_text"], projection_dim=sizes["projection_dim"], **special),
        vision_config=dict(sizes["clip_vision"], projection_dim=sizes["projection_dim"]),
        projection_dim=sizes["projection_dim"],
    )
    model = ItemForImageClassification(ItemConfig(backbone_config=clip_config.to_dict())).eval()
    edge = sizes["clip_image"]
    clip_image_processor = CLIPImageProcessor(size={"shortest_edge": edge}, crop_size={"height": edge, "width": edge})

    caption_tokenizer = _bert_tokenizer()
    caption_tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    blip_config = BlipConfig(
        vision_config=sizes["blip_vision"],
        text_config=dict(sizes["blip_text"], bos_token_id=caption_tokenizer.bos_token_id,
                         pad_token_id=caption_tokenizer.pad_token_id, sep_token_id=caption_tokenizer.sep_token_id,
                         eos_token_id=caption_tokenizer.sep_token_id),
    )
    captioner = BlipForConditionalGeneration(blip_config).eval().requires_grad_(False)
    edge = sizes["blip_image"]
    captioner_processor = BlipProcessor(BlipImageProcessor(size={"height": edge, "width": edge}), caption_tokenizer)

    detector_config = GroundingDinoConfig(backbone_config=SwinConfig(**sizes["swin"]), **sizes["detector"])
    detector = GroundingDinoForObjectDetection(detector_config).eval().requires_grad_(False)
    detector_size = dict(sizes["detector_size"])
    if settings.detector_shortest_edge:
        scale = settings.detector_shortest_edge / detector_size["shortest_edge"]
        detector_size = {"shortest_edge": settings.detector_shortest_edge,
                         "longest_edge": int(round(detector_size["longest_edge"] * scale))}
    detector_processor = GroundingDinoProcessor(GroundingDinoImageProcessor(size=detector_size),
                                                _bert_tokenizer())

    processor = ItemProcessor(
        clip_image_processor,
        clip_tokenizer,
        captioner_name_or_path="(benchmark: random BLIP-large)",
        detector_name_or_path="(benchmark: random Grounding DINO tiny)",
        spacy_model="en_core_web_sm",
        max_objects=8,
        box_threshold=0.0,
        caption_max_new_tokens=settings.caption_tokens,
        caption_num_beams=settings.caption_num_beams,
    )
    processor.set_networks(captioner=captioner, captioner_processor=captioner_processor,
                           detector=detector, detector_processor=detector_processor)
    baseline_head = torch.nn.Linear(sizes["projection_dim"], 1).eval().requires_grad_(False)

    device = torch.device(settings.device)
    dtype = getattr(torch, settings.dtype)
    model.to(device=device, dtype=dtype)
    model.head.float()  # the trained part stays in float32 (forward_head casts the features to it)
    baseline_head.to(device=device, dtype=dtype)
    processor.to(device, dtype)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    parameters = {"clip": count(model.backbone), "captioner": count(captioner), "detector": count(detector),
                  "head": count(model.head)}
    force_caption(captioner, captioner_processor.tokenizer, settings)
    return Networks(model=model, processor=processor, baseline_head=baseline_head, parameters=parameters)


def force_caption(captioner, tokenizer, settings: BenchmarkSettings) -> list[int]:
    """Make `captioner.generate` produce the fixed caption in exactly `settings.caption_tokens` tokens.

    Every decoding step still runs the full decoder forward and an argmax over the whole vocabulary; a logits
    processor only overrides which token wins. Returns the forced token ids.
    """
    from transformers import LogitsProcessor, LogitsProcessorList

    text, _ = fixed_caption(settings.n_objects)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    period = tokenizer.convert_tokens_to_ids(".")
    if len(ids) > settings.caption_tokens:
        raise ValueError(
            f"The fixed caption {text!r} takes {len(ids)} tokens, more than caption_tokens={settings.caption_tokens}; "
            "raise --caption-tokens or lower --objects."
        )
    forced = ids + [period] * (settings.caption_tokens - len(ids))

    class ForceTokens(LogitsProcessor):
        def __init__(self):
            self.start = None

        def __call__(self, input_ids, scores):
            if self.start is None:
                self.start = input_ids.shape[1]
            step = input_ids.shape[1] - self.start
            token = forced[min(step, len(forced) - 1)]
            scores[:, :] = float("-inf")
            scores[:, token] = 0.0
            return scores

    original = captioner.generate

    def generate(*args, **kwargs):
        kwargs["logits_processor"] = LogitsProcessorList([ForceTokens()])
        kwargs["min_new_tokens"] = settings.caption_tokens
        kwargs["max_new_tokens"] = settings.caption_tokens
        return original(*args, **kwargs)

    captioner.generate = generate  # instance attribute: only this captioner object
    return forced


# ---------------------------------------------------------------------------------------------- timing
def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device) -> float:
    """Peak memory so far: CUDA allocator peak on a GPU, the process's peak resident set (RSS) on a CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Timer:
    """Collects wall and process-CPU seconds per named section over repeats; reports the minimum."""

    def __init__(self, device):
        self.device = device
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def __call__(self, name: str, function: Callable[[], Any]) -> Any:
        _sync(self.device)
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        _sync(self.device)
        self.wall.setdefault(name, []).append(time.perf_counter() - wall)
        self.cpu.setdefault(name, []).append(time.process_time() - cpu)
        return result

    def summary(self, name: str, images: int) -> dict:
        wall = self.wall[name]
        best = min(wall)
        return {
            "seconds": best,
            "seconds_median": statistics.median(wall),
            "seconds_all": wall,
            "cpu_seconds": min(self.cpu[name]),
            "images_per_second": images / best if best > 0 else float("inf"),
        }


def _embeddings(pixel_embeds, text_embeds, slot_mask):
    """(N_used, D) embeddings -> l2-normalised (B, S, D) with zeros in empty slots, as forward_features returns."""
    import torch.nn.functional as F

    batch, slots = slot_mask.shape
    used = slot_mask.reshape(-1)
    out = []
    for embeds in (pixel_embeds, text_embeds):
        embeds = F.normalize(embeds.float(), dim=-1)
        full = embeds.new_zeros(batch * slots, embeds.shape[-1])
        full[used] = embeds
        out.append(full.view(batch, slots, -1))
    return out


def _pooled(output):
    return getattr(output, "pooler_output", output)


# ---------------------------------------------------------------------------------------------- the run
def run_benchmark(settings: BenchmarkSettings | None = None, log: Callable[[str], None] = print) -> dict:
    """Run every measurement of `settings` and return the report (a JSON-serialisable dict)."""
    import torch

    from item_detector.pipeline_item import ItemImageClassificationPipeline
    from item_detector.processing_item import ItemAnnotations

    settings = settings or BenchmarkSettings()
    device = torch.device(settings.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    started = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    caption, expected_nouns = fixed_caption(settings.n_objects)

    with tempfile.TemporaryDirectory() as workdir:
        log(f"building {settings.network_size}-size random-weight networks on {device} ({settings.dtype}) ...")
        build_start = time.perf_counter()
        nets = build_networks(settings, workdir)
        build_seconds = time.perf_counter() - build_start
        log(f"  built in {build_seconds:.1f} s; parameters: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in nets.parameters.items()))
        model, processor = nets.model, nets.processor
        pipe = ItemImageClassificationPipeline(model=model, processor=processor, device=device)
        weights_mb = _peak_memory_mb(device)

        def check_annotations(annotations, count):
            for i in range(count):
                if annotations["nouns"][i] != expected_nouns:
                    raise RuntimeError(
                        f"spaCy found {annotations['nouns'][i]} in the forced caption {annotations['caption'][i]!r}, "
                        f"expected {expected_nouns}: the fixed workload is broken."
                    )

        def measure(batch: int, timer: Timer, record: bool, repeat: int = 0) -> dict:
            """Stages alone, chained (each takes the previous stage's output), then the pipeline and the baseline."""
            images = random_images(batch, settings.image_size, seed=settings.seed + batch)
            dtype = next(model.backbone.parameters()).dtype
            baseline_processor = processor.image_processor
            state = {}

            def run_stages():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                with torch.inference_mode():
                    captions = timer("captioning", lambda: processor.caption(images))
                    nouns = timer("noun_extraction", lambda: processor.extract_nouns(captions))
                    check_annotations({"caption": captions, "nouns": nouns}, batch)
                    boxes = timer("detection", lambda: processor.ground(images, nouns))[0]
                    annotations = [ItemAnnotations(c, n, b) for c, n, b in zip(captions, nouns, boxes)]
                    inputs = timer("crops_and_preprocessing", lambda: processor.encode(images, annotations))
                    # Select the used slots and cut the text padding outside the timings: the networks alone.
                    object_mask = inputs["object_mask"]
                    slot_mask = torch.cat([torch.ones_like(object_mask[:, :1]), object_mask], dim=1).bool()
                    used = slot_mask.reshape(-1)
                    pixel_values = inputs["pixel_values"].flatten(0, 1)[used].to(device=device, dtype=dtype)
                    input_ids = inputs["input_ids"].flatten(0, 1)[used]
                    attention_mask = inputs["attention_mask"].flatten(0, 1)[used]
                    length = int(attention_mask.sum(dim=1).max())  # the longest text
                    input_ids, attention_mask = input_ids[:, :length].to(device), attention_mask[:, :length].to(device)
                    image_embeds = timer("clip_image", lambda: _pooled(model.backbone.get_image_features(pixel_values=pixel_values)))
                    text_embeds = timer("clip_text", lambda: _pooled(model.backbone.get_text_features(
                        input_ids=input_ids, attention_mask=attention_mask)))
                    full_image, full_text = _embeddings(image_embeds, text_embeds, slot_mask.to(device))
                    gpu_object_mask = object_mask.to(device)
                    timer("head", lambda: model.forward_head(full_image, full_text, gpu_object_mask).softmax(-1))
                state.update(captions=captions, nouns=nouns, object_mask=object_mask, used=used, length=length,
                             features=(full_image.float().cpu(), full_text.float().cpu(), object_mask.cpu()),
                             stages_peak=_peak_memory_mb(device))

            def run_pipeline():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                state["results"] = timer("pipeline", lambda: pipe(images, batch_size=batch))
                state["pipeline_peak"] = _peak_memory_mb(device)

                def baseline():
                    with torch.inference_mode():
                        pixels = baseline_processor(images=images, return_tensors="pt")["pixel_values"]
                        embeds = _pooled(model.backbone.get_image_features(pixel_values=pixels.to(device=device, dtype=dtype)))
                        return nets.baseline_head(embeds).sigmoid()

                timer("baseline_universalfakedetect", baseline)

            if not record:  # warm-up: the stages touch every network the pipeline uses
                run_stages()
            else:
                # Alternate which goes first, so that neither always pays the first call at a new batch shape.
                for part in (run_stages, run_pipeline) if repeat % 2 == 0 else (run_pipeline, run_stages):
                    part()
            results = state.get("results")
            captions, nouns, object_mask, used, length = (state[k] for k in ("captions", "nouns", "object_mask", "used", "length"))
            stages_peak, pipeline_peak = state["stages_peak"], state.get("pipeline_peak")
            full_features = state["features"]
            if record and len(results) != batch:
                raise RuntimeError(f"the pipeline returned {len(results)} results for {batch} images")
            return {
                "objects_per_image": float(object_mask.sum()) / batch,
                "texts": int(used.sum()),
                "text_length_tokens": length,
                "caption": captions[0],
                "nouns": nouns[0],
                "peak_memory_mb": {"stages": stages_peak, "pipeline": pipeline_peak},
                "features": full_features,
            }

        if settings.warmup:
            log(f"warm-up pass at batch {min(settings.batch_sizes)} ...")
            measure(min(settings.batch_sizes), Timer(device), record=False)

        batches, features = {}, None
        sizes = sorted(settings.batch_sizes)
        timers, infos = {batch: Timer(device) for batch in sizes}, {}
        # Repeats outermost: a slow spell on a shared machine then hits every batch size, not just one.
        for repeat in range(settings.repeats):
            for batch in sizes:
                log(f"repeat {repeat + 1}/{settings.repeats}, batch {batch}: the stages alone, the pipeline, the baseline ...")
                info = measure(batch, timers[batch], record=True, repeat=repeat)
                features = info.pop("features")
                # Peak memory from the first repeat, where the batch sizes run in increasing order (the CPU
                # figure is the process's peak RSS so far, which never goes down).
                infos.setdefault(batch, info)
        for batch in sizes:
            timer, info = timers[batch], infos[batch]
            stages = {name: timer.summary(name, batch) for name in STAGES}
            stage_sum = sum(stage["seconds"] for stage in stages.values())
            stage_sum_cpu = sum(stage["cpu_seconds"] for stage in stages.values())
            pipeline = timer.summary("pipeline", batch)
            baseline = timer.summary("baseline_universalfakedetect", batch)
            batches[str(batch)] = {
                **info,
                "stages": stages,
                "stages_sum_seconds": stage_sum,
                "stages_sum_images_per_second": batch / stage_sum,
                "pipeline": pipeline,
                "overhead_ratio": pipeline["seconds"] / stage_sum,
                "overhead_ratio_cpu_time": pipeline["cpu_seconds"] / stage_sum_cpu if stage_sum_cpu else None,
                "baseline_universalfakedetect": baseline,
                "cost_vs_baseline": pipeline["seconds"] / baseline["seconds"],
            }
            log(f"  pipeline {pipeline['images_per_second']:.3f} img/s, overhead ratio "
                f"{batches[str(batch)]['overhead_ratio']:.3f}, {batches[str(batch)]['cost_vs_baseline']:.1f}x the baseline")

        log("head training: one epoch on cached features vs one step through the frozen networks ...")
        training = _measure_training(settings, nets, features, device, expected_nouns)

    smallest, largest = str(min(settings.batch_sizes)), str(max(settings.batch_sizes))
    scaling = {
        "from_batch": int(smallest),
        "to_batch": int(largest),
        "pipeline_throughput_ratio": batches[largest]["pipeline"]["images_per_second"]
        / batches[smallest]["pipeline"]["images_per_second"],
        "stage_throughput_ratios": {
            name: batches[largest]["stages"][name]["images_per_second"] / batches[smallest]["stages"][name]["images_per_second"]
            for name in STAGES
        },
    }
    report = {
        "settings": {**asdict(settings), "batch_sizes": list(settings.batch_sizes), "image_size": list(settings.image_size)},
        "machine": machine_info(device),
        "fixed_workload": {
            "caption": caption,
            "caption_tokens": settings.caption_tokens,
            "nouns": expected_nouns,
            "box_threshold": 0.0,
            "image_size": list(settings.image_size),
            "note": "the captioner runs full greedy decoding for exactly caption_tokens tokens with the argmax forced "
            "to the fixed caption; spaCy extracts its nouns; the detector keeps its best box for each (threshold 0); "
            "the stages alone are chained: each takes the previous stage's output (the same captions, nouns and boxes "
            "as the pipeline's)",
        },
        "build_seconds": build_seconds,
        "weights_memory_mb": weights_mb,
        "batches": batches,
        "batch_scaling": scaling,
        "training": training,
        "targets": {
            **TARGETS,
            "overhead_ratio_at_largest_batch": batches[largest]["overhead_ratio"],
            "overhead_ratio_met": batches[largest]["overhead_ratio"] <= TARGETS["overhead_ratio_batch8_max"],
            "batch_throughput_ratio": scaling["pipeline_throughput_ratio"],
            "batch_throughput_met": scaling["pipeline_throughput_ratio"] >= TARGETS["batch8_vs_batch1_throughput_min"],
        },
        "load_average": {"before": load_before, "after": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "total_seconds": time.perf_counter() - started,
    }
    return report


def _measure_training(settings, nets, features, device, expected_nouns) -> dict:
    """Seconds per sample of head training on cached embeddings vs through the frozen networks."""
    import torch

    model, processor = nets.model, nets.processor
    image_embeds, text_embeds, object_mask = features
    batch = image_embeds.shape[0]
    repeat = -(-settings.train_cached_samples // batch)
    cached = [t.repeat(repeat, *([1] * (t.dim() - 1)))[: settings.train_cached_samples].to(device)
              for t in (image_embeds, text_embeds, object_mask)]
    labels = torch.arange(settings.train_cached_samples, device=device) % 2
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-4)
    model.train()
    step = settings.train_batch_size

    def cached_epoch():
        for start in range(0, settings.train_cached_samples, step):
            part = slice(start, start + step)
            output = model(image_embeds=cached[0][part], text_embeds=cached[1][part], object_mask=cached[2][part],
                           labels=labels[part])
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            optimizer.step()

    timer = Timer(device)
    cached_epoch()  # warm-up (optimizer state, kernels)
    for _ in range(max(1, settings.repeats)):
        timer("cached", cached_epoch)

    frozen_count = settings.train_frozen_images
    frozen_images = random_images(frozen_count, settings.image_size, seed=settings.seed + 1000)
    frozen_labels = torch.arange(frozen_count, device=device) % 2

    def frozen_step():
        inputs = processor(images=frozen_images, return_tensors="pt").to(device)
        output = model(**inputs, labels=frozen_labels)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()

    timer("frozen", frozen_step)  # one batch of `batch` images: the cost is all in the frozen networks
    model.eval()
    cached_summary = timer.summary("cached", settings.train_cached_samples)
    frozen_summary = timer.summary("frozen", frozen_count)
    return {
        "cached_features": {**cached_summary, "samples": settings.train_cached_samples, "batch_size": step},
        "through_frozen_networks": {**frozen_summary, "samples": frozen_count, "batch_size": frozen_count},
        "speedup_per_sample": cached_summary["images_per_second"] / frozen_summary["images_per_second"],
        "note": "cached: forward_head + cross-entropy + backward + AdamW on stored (B, 1+K, D) embeddings; frozen: "
        "processor (caption, nouns, boxes, crops) + frozen CLIP + the same head step, one batch",
    }


def machine_info(device) -> dict:
    import torch
    import transformers

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---------------------------------------------------------------------------------------------- output
def format_report(report: dict) -> str:
    """A Markdown table of the report: one column per batch size."""
    batches = report["batches"]
    sizes = list(batches)
    header = "| | " + " | ".join(f"batch {b}" for b in sizes) + " |"
    lines = [header, "|---|" + "---|" * len(sizes)]

    def row(label, values):
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    def fmt_stage(entry):
        return f"{entry['seconds']:.3f} s ({entry['images_per_second']:.2f} img/s)"

    for name in STAGES:
        row(name.replace("_", " "), [fmt_stage(batches[b]["stages"][name]) for b in sizes])
    row("sum of stages alone", [f"{batches[b]['stages_sum_seconds']:.3f} s ({batches[b]['stages_sum_images_per_second']:.2f} img/s)" for b in sizes])
    row("**whole pipeline**", [f"**{fmt_stage(batches[b]['pipeline'])}**" for b in sizes])
    row("overhead ratio (pipeline / sum)", [f"{batches[b]['overhead_ratio']:.3f}" for b in sizes])
    row("overhead ratio in process CPU time", [f"{batches[b]['overhead_ratio_cpu_time']:.3f}" for b in sizes])
    row("UniversalFakeDetect-style baseline", [fmt_stage(batches[b]["baseline_universalfakedetect"]) for b in sizes])
    row("ITEM cost / baseline cost", [f"{batches[b]['cost_vs_baseline']:.1f}x" for b in sizes])
    row("objects per image / texts per batch", [f"{batches[b]['objects_per_image']:.0f} / {batches[b]['texts']}" for b in sizes])
    row("peak memory (pipeline)", [f"{batches[b]['peak_memory_mb']['pipeline'] / 1024:.2f} GiB" for b in sizes])
    scaling = report["batch_scaling"]
    training = report["training"]
    lines += [
        "",
        f"batch {scaling['to_batch']} / batch {scaling['from_batch']} pipeline throughput: {scaling['pipeline_throughput_ratio']:.2f}x",
        f"head training, one epoch of {training['cached_features']['samples']} cached samples: "
        f"{training['cached_features']['seconds']:.3f} s ({training['cached_features']['images_per_second']:.0f} samples/s); "
        f"through the frozen networks: {training['through_frozen_networks']['images_per_second']:.3f} samples/s "
        f"({training['speedup_per_sample']:.0f}x slower per sample)",
    ]
    machine = report["machine"]
    lines.append(f"machine: {machine['cpu_model']}, {machine['cpu_count']} cores, torch {machine['torch']} "
                 f"({machine['torch_threads']} threads), transformers {machine['transformers']}, device {machine['device']}"
                 + (f" ({machine['gpu']})" if "gpu" in machine else ""))
    return "\n".join(lines)


def write_report(report: dict, path: str | os.PathLike) -> None:
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------- CLI glue
def add_arguments(parser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="weights of the frozen networks (float16/bfloat16 for a GPU)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default: 1 8")
    parser.add_argument("--repeats", type=int, default=None, help="runs per timing; the minimum is reported (default 2, quick 1)")
    parser.add_argument("--objects", type=int, default=None, help="nouns in the fixed caption (default 4, quick 2)")
    parser.add_argument("--caption-tokens", type=int, default=None, help="tokens generated per caption (default 20, quick 12)")
    parser.add_argument("--num-beams", type=int, default=1, help="captioner beams (1 = greedy)")
    parser.add_argument("--detector-shortest-edge", type=int, default=None,
                        help="detector input size (default: the real 800 / 1333; quick 400)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up pass")
    parser.add_argument("--quick", action="store_true",
                        help="a cheaper run: 1 repeat, 2 objects, 12 caption tokens, detector at 400 px")
    parser.add_argument("--tiny", action="store_true", help="tiny networks instead of the real sizes (a smoke test)")
    parser.add_argument("--backbones", nargs="*", default=None, metavar="FAMILY",
                        help="instead: time forward_features per image for each backbone family "
                             "(clip siglip siglip2 metaclip_2; all when none is named)")
    parser.add_argument("--output", default="benchmark.json", help="where to write the JSON report")


def settings_from_args(args) -> BenchmarkSettings:
    overrides = {"device": args.device, "dtype": args.dtype, "caption_num_beams": args.num_beams,
                 "warmup": not args.no_warmup, "network_size": "tiny" if args.tiny else "real"}
    for name, value in (("batch_sizes", tuple(args.batch_sizes) if args.batch_sizes else None), ("repeats", args.repeats),
                        ("n_objects", args.objects), ("caption_tokens", args.caption_tokens),
                        ("detector_shortest_edge", args.detector_shortest_edge)):
        if value is not None:
            overrides[name] = value
    return BenchmarkSettings.quick(**overrides) if args.quick else BenchmarkSettings(**overrides)


def main(args) -> int:
    import sys

    if args.backbones is not None:
        from .benchmark_backbones import FAMILIES, format_backbone_table, measure_backbones

        report = measure_backbones(tuple(args.backbones) or tuple(FAMILIES), n_objects=args.objects or 4,
                                   repeats=args.repeats or 2, log=lambda message: print(message, file=sys.stderr, flush=True))
        write_report(report, args.output)
        print(format_backbone_table(report))
        print(f"\nwrote {args.output}")
        return 0
    settings = settings_from_args(args)
    report = run_benchmark(settings, log=lambda message: print(message, file=sys.stderr, flush=True))
    write_report(report, args.output)
    print(format_report(report))
    print(f"\nwrote {args.output}")
    return 0
