"""Profiles: named sets of build settings, chosen when a checkpoint is built (`item build --profile NAME`).

default  the paper's method as this project reads it: BLIP-large captions, Grounding DINO at its own 800 px,
         each object's crop through the image tower, float32 everywhere.
fast     for scoring on CPUs: BLIP-base captions, the detector at 400 px, int8 dynamic quantization of the
         captioner's, detector's and backbone's linear layers, and local embeddings pooled from the one
         whole-image pass instead of one pass per crop. The last one changes the method; all of them change
         the numbers a little. How much accuracy each costs must be measured on real weights (see the README's
         performance section for what could be measured here, with random weights).

Every setting is saved in the checkpoint (processor_config.json, config.json) and applied at load time; the
weights saved are the same float weights whatever the profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from item_detector.processing_item import DEFAULT_CAPTIONER

FAST_CAPTIONER = "Salesforce/blip-image-captioning-base"
REGION_FAMILIES = ("clip", "metaclip_2")  # a class token, post_layernorm and visual_projection to pool regions with


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    captioner: str
    processor_options: dict = field(default_factory=dict)
    config_options: dict = field(default_factory=dict)
    regions: bool = False  # local embeddings pooled from the whole-image pass (region_grid from the backbone)


PROFILES = {
    "default": Profile("default", "the paper's method: BLIP-large, detector at 800 px, one image-tower pass per crop",
                       DEFAULT_CAPTIONER),
    "fast": Profile(
        "fast",
        "BLIP-base, detector at 400 px, int8 dynamic quantization (CPU), objects pooled from one whole-image pass",
        FAST_CAPTIONER,
        processor_options={"detector_size": {"shortest_edge": 400, "longest_edge": 667}, "quantization": "int8"},
        config_options={"backbone_quantization": "int8"},
        regions=True,
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; choose one of {', '.join(PROFILES)}.")
    return PROFILES[name]


def region_grid(backbone_config) -> int:
    """Patches per side of a CLIP-style image tower (16 for ViT-L/14 at 224 px)."""
    vision = getattr(backbone_config, "vision_config", None)
    size, patch = getattr(vision, "image_size", None), getattr(vision, "patch_size", None)
    if backbone_config.model_type not in REGION_FAMILIES or not size or not patch:
        raise ValueError(
            f"The fast profile pools object regions from a fixed grid of patches; the {backbone_config.model_type!r} "
            "image tower has none. Build it with --profile default, or a CLIP-style backbone."
        )
    return int(size) // int(patch)


def processor_options(profile: Profile, backbone_config, overrides: dict | None = None) -> dict:
    """The ItemProcessor settings of `profile` for a backbone, with explicit `overrides` winning."""
    options = dict(profile.processor_options)
    if profile.regions:
        options.update(local_embeddings="regions", region_grid=region_grid(backbone_config))
    options.update(overrides or {})
    return options
