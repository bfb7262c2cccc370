"""The networks a benchmark runs: the real architectures at their real sizes with random weights (random
weights cost the same compute as trained ones: this measures speed, never accuracy), or the test suite's tiny
ones, wired into ITEM with a profile's settings.

    backbone   CLIP ViT-L/14 (vision 1024 x 24 layers at 224 px, patch 14; text 768 x 12 layers; projection 768)
    captioner  BLIP-large (ViT-L/16 at 384 px) or BLIP-base (ViT-B/16), each with a BERT-base text decoder
    detector   Grounding DINO tiny (Swin-T backbone, BERT-base text encoder, 900 queries, 800 / 1333 px)

The captioner is made to write a fixed caption (`force_caption`), so that every run does the same work.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from dataclasses import dataclass, field
from typing import Any

from ..profiles import Profile, processor_options
from ..testing.tiny import WORDS, tiny_backbone, tiny_captioner, tiny_clip_tokenizer, tiny_detector

DEFAULT_NOUNS = ("man", "dog", "bike", "car", "tree", "cup", "table", "cake")
CLIP_L14 = dict(
    vision=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, patch_size=14, image_size=224),
    text=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=49408,
              max_position_embeddings=77),
    projection_dim=768,
)
BLIP_VISION = {
    "Salesforce/blip-image-captioning-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                   intermediate_size=4096, image_size=384, patch_size=16),
    "Salesforce/blip-image-captioning-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                                  intermediate_size=3072, image_size=384, patch_size=16),
}
SWIN_T = dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, out_features=["stage2", "stage3", "stage4"])


@dataclass
class Networks:
    model: Any  # ItemForImageClassification (backbone + head), the profile's settings applied
    processor: Any  # ItemProcessor with the captioner, detector and spaCy attached
    baseline_encoder: Any  # a float32 dual encoder with `get_image_features`: the one-pass baseline's tower
    baseline_head: Any  # nn.Linear(projection_dim, 1): the UniversalFakeDetect-style probe
    parameters: dict = field(default_factory=dict)


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


def bert_tokenizer():
    """A WordPiece tokenizer with bert-base-uncased's special-token ids (Grounding DINO hard-codes 101, 102, 1012, 1029)."""
    from transformers import BertTokenizer

    vocab = [f"[unused{i}]" for i in range(30522)]
    for index, token in {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1010: ",", 1011: "-",
                         1012: ".", 1029: "?"}.items():
        vocab[index] = token
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for offset, token in enumerate(dict.fromkeys([*WORDS, *letters, *("##" + c for c in letters)])):
        vocab[2000 + offset] = token
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)


def real_components(captioner_name: str, seed: int = 0) -> dict:
    """(network, processor) pairs of the real-size random captioner and detector, and the backbone's config.

    Each network draws its weights from its own seed, so the detector (or the backbone) of two variants that
    differ only in their captioner is the same network."""
    import torch
    from transformers import (
        BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor, CLIPConfig, CLIPImageProcessor,
        GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor, GroundingDinoProcessor,
        SwinConfig,
    )

    clip_tokenizer = tiny_clip_tokenizer(77)  # the vocabulary's size, not its words, costs compute: CLIP's 49,408 rows
    special = dict(bos_token_id=clip_tokenizer.bos_token_id, eos_token_id=clip_tokenizer.eos_token_id,
                   pad_token_id=clip_tokenizer.pad_token_id)
    backbone = CLIPConfig(text_config=dict(CLIP_L14["text"], **special), vision_config=CLIP_L14["vision"],
                          projection_dim=CLIP_L14["projection_dim"])  # built inside ITEM's model: one copy in memory
    image_processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    torch.manual_seed(seed + 1)
    detector = GroundingDinoForObjectDetection(GroundingDinoConfig(backbone_config=SwinConfig(**SWIN_T))).eval()
    detector_processor = GroundingDinoProcessor(GroundingDinoImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333}),
                                                bert_tokenizer())
    tokenizer = bert_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    vision = BLIP_VISION.get(captioner_name)
    if vision is None:
        raise ValueError(f"The benchmark knows the sizes of {', '.join(BLIP_VISION)}, not {captioner_name!r}.")
    text = dict(vocab_size=30524, encoder_hidden_size=vision["hidden_size"], bos_token_id=tokenizer.bos_token_id,
                pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id, eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(seed + 2)
    captioner = BlipForConditionalGeneration(BlipConfig(vision_config=vision, text_config=text)).eval()
    blip = BlipProcessor(BlipImageProcessor(size={"height": 384, "width": 384}), tokenizer)
    return {"backbone": (backbone, (image_processor, clip_tokenizer)), "captioner": (captioner, blip),
            "detector": (detector, detector_processor)}


def tiny_components() -> dict:
    """The test suite's tiny networks (one place builds them), loaded back from a temporary folder."""
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoModelForZeroShotObjectDetection
    from transformers import AutoProcessor, AutoTokenizer

    with tempfile.TemporaryDirectory() as folder:
        backbone, captioner, detector = tiny_backbone(f"{folder}/b"), tiny_captioner(f"{folder}/c"), tiny_detector(f"{folder}/d")
        return {
            "backbone": (AutoModel.from_pretrained(backbone).eval(),
                         (AutoImageProcessor.from_pretrained(backbone), AutoTokenizer.from_pretrained(backbone))),
            "captioner": (AutoModelForImageTextToText.from_pretrained(captioner).eval(), AutoProcessor.from_pretrained(captioner)),
            "detector": (AutoModelForZeroShotObjectDetection.from_pretrained(detector).eval(), AutoProcessor.from_pretrained(detector)),
        }


@dataclass(frozen=True)
class Variant:
    """One set of speed levers to time (a profile, or one lever alone)."""

    name: str
    captioner: str = "Salesforce/blip-image-captioning-large"
    detector_size: dict | None = None
    int8: bool = False
    regions: bool = False

    @classmethod
    def of(cls, profile: Profile) -> "Variant":
        return cls(profile.name, profile.captioner, profile.processor_options.get("detector_size"),
                   profile.processor_options.get("quantization") == "int8", profile.regions)


def build_networks(variant: Variant, size: str = "real", caption_tokens: int = 20, n_objects: int = 4,
                   device: str = "cpu", dtype: str = "float32", seed: int = 0) -> Networks:
    """Random-weight networks of the real (or tiny) sizes, wired into ITEM with the variant's levers. The same
    `seed` gives every variant the same backbone and detector weights, so their outputs can be compared."""
    import torch

    from item_detector.configuration_item import ItemConfig
    from item_detector.modeling_item import ItemForImageClassification, quantize_dynamic_int8
    from item_detector.processing_item import ItemProcessor

    if variant.int8 and device != "cpu":
        # As a checkpoint of the profile does at use (ItemForImageClassification.quantize_backbone): int8 dynamic
        # quantization is a CPU lever, so on a GPU the variant runs its other levers unquantized.
        variant = dataclasses.replace(variant, int8=False)
    components = real_components(variant.captioner, seed) if size == "real" else tiny_components()
    backbone, (image_processor, tokenizer) = components["backbone"]
    torch.manual_seed(seed)  # the backbone and the head: the same in every variant
    if isinstance(backbone, torch.nn.Module):
        model = ItemForImageClassification.from_backbone(backbone)
    else:
        model = ItemForImageClassification(ItemConfig(backbone_config=backbone.to_dict())).eval()
    profile = Profile(variant.name, "", variant.captioner, {"detector_size": variant.detector_size} if variant.detector_size else {},
                      regions=variant.regions)
    processor = ItemProcessor(
        image_processor, tokenizer, captioner_name_or_path=f"(benchmark: random {variant.captioner})",
        detector_name_or_path="(benchmark: random Grounding DINO tiny)", spacy_model="en_core_web_sm", max_objects=8,
        box_threshold=0.0, caption_max_new_tokens=caption_tokens, quantization="int8" if variant.int8 else None,
        **processor_options(profile, model.config.backbone_config),
    )
    (captioner, captioner_processor), (detector, detector_processor) = components["captioner"], components["detector"]
    for network in (captioner, detector):
        network.requires_grad_(False)
    processor.set_networks(captioner, captioner_processor, detector, detector_processor)
    baseline_head = torch.nn.Linear(model.config.embedding_dim, 1).eval().requires_grad_(False)
    model.to(device=device, dtype=getattr(torch, dtype))
    model.head.float()  # the trained part stays in float32 (forward_head casts the features to it)
    baseline_head.to(device=device, dtype=getattr(torch, dtype))
    processor.to(device, getattr(torch, dtype))
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    parameters = {"backbone": count(model.backbone), "captioner": count(captioner), "detector": count(detector),
                  "head": count(model.head)}
    # The baseline is the float one-pass detector whatever the variant: a copy when ITEM's own backbone goes int8.
    baseline_encoder = copy.deepcopy(model.backbone) if variant.int8 else model.backbone
    if variant.int8:  # applied after the moves: quantized layers stay on the CPU
        model.config.backbone_quantization = "int8"
        model.quantize_backbone()
        quantize_dynamic_int8(captioner)
        quantize_dynamic_int8(detector)
    force_caption(captioner, captioner_processor.tokenizer, caption_tokens, n_objects)
    return Networks(model, processor, baseline_encoder, baseline_head, parameters)


def force_caption(captioner, tokenizer, caption_tokens: int, n_objects: int) -> list[int]:
    """Make this captioner's `generate` write the fixed caption in exactly `caption_tokens` tokens.

    Every decoding step still runs the full decoder forward and an argmax over the whole vocabulary; a logits
    processor only decides which token wins. Returns the forced token ids.
    """
    from transformers import LogitsProcessor, LogitsProcessorList

    text, _ = fixed_caption(n_objects)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) > caption_tokens:
        raise ValueError(f"The fixed caption {text!r} takes {len(ids)} tokens, more than caption_tokens={caption_tokens}.")
    forced = ids + [tokenizer.convert_tokens_to_ids(".")] * (caption_tokens - len(ids))

    class ForceTokens(LogitsProcessor):
        def __init__(self):
            self.start = None

        def __call__(self, input_ids, scores):
            self.start = input_ids.shape[1] if self.start is None else self.start
            token = forced[min(input_ids.shape[1] - self.start, len(forced) - 1)]
            scores[:, :] = float("-inf")
            scores[:, token] = 0.0
            return scores

    original = captioner.generate

    def generate(*args, **kwargs):
        kwargs.update(logits_processor=LogitsProcessorList([ForceTokens()]), min_new_tokens=caption_tokens,
                      max_new_tokens=caption_tokens)
        return original(*args, **kwargs)

    captioner.generate = generate  # this captioner object only (the benchmark's own), not the class
    return forced
