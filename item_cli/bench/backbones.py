"""Cost per image of each supported backbone family inside ITEM (`item benchmark --backbones`).

The captioner, the detector and the head cost the same whatever the backbone, so this times only what the
backbone changes: `ItemForImageClassification.forward_features` on one image with `n_objects` grounded objects,
i.e. (1 + n) image encodes and (1 + n) text encodes, at the real sizes of each family's reference checkpoint,
with random weights (the compute of trained ones). Texts are 8 tokens long (a caption is ~12, a noun ~3).
"""

import time

from .timing import machine_info, peak_memory_mb

# The reference checkpoint of each family and its real size. MetaCLIP 2's vocabulary (901,629 tokens) is cut to
# CLIP's 49,408 for the timing: an embedding lookup costs the same whatever the vocabulary's size.
FAMILIES = {
    "clip": dict(
        checkpoint="openai/clip-vit-large-patch14",
        vision=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, patch_size=14, image_size=224),
        text=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, vocab_size=49408, max_position_embeddings=77),
        projection_dim=768,
    ),
    "siglip": dict(
        checkpoint="google/siglip2-so400m-patch14-384 (SigLIP 2, fixed resolution)",
        vision=dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304, patch_size=14, image_size=384),
        text=dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304, vocab_size=256000, max_position_embeddings=64, projection_size=1152),
    ),
    "siglip2": dict(
        checkpoint="google/siglip2-so400m-patch16-naflex (256 patches)",
        vision=dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304, patch_size=16, num_patches=256),
        text=dict(hidden_size=1152, num_hidden_layers=27, num_attention_heads=16, intermediate_size=4304, vocab_size=256000, max_position_embeddings=64, projection_size=1152),
    ),
    "metaclip_2": dict(
        checkpoint="facebook/metaclip-2-worldwide-huge-quickgelu (ViT-H/14)",
        vision=dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120, patch_size=14, image_size=224),
        text=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, vocab_size=49408, max_position_embeddings=77),
        projection_dim=1024,
    ),
}
TEXT_TOKENS = 8


def _model(family: str):
    import torch
    from transformers import AutoConfig

    from item_detector.configuration_item import ItemConfig
    from item_detector.modeling_item import ItemForImageClassification

    spec = FAMILIES[family]
    extra = {"projection_dim": spec["projection_dim"]} if "projection_dim" in spec else {}
    text = dict(spec["text"], bos_token_id=0, eos_token_id=2, pad_token_id=1)
    backbone_config = AutoConfig.for_model(family, text_config=text, vision_config=spec["vision"], **extra)
    torch.manual_seed(0)
    return ItemForImageClassification(ItemConfig(backbone_config=backbone_config.to_dict())).eval()


def _inputs(family: str, model, n_objects: int) -> dict:
    """Random model inputs for one image with `n_objects` objects, shaped as ItemProcessor makes them."""
    import torch

    slots = 1 + n_objects
    vision = FAMILIES[family]["vision"]
    input_ids = torch.randint(3, 1000, (1, slots, TEXT_TOKENS))
    input_ids[..., -1] = 2  # the end-of-text token CLIP-style towers pool at
    inputs = {"input_ids": input_ids, "object_mask": torch.ones(1, n_objects, dtype=torch.bool)}
    if family == "siglip2":
        patches, width = vision["num_patches"], 3 * vision["patch_size"] ** 2
        side = int(patches**0.5)
        inputs["pixel_values"] = torch.randn(1, slots, patches, width)
        inputs["pixel_attention_mask"] = torch.ones(1, slots, patches, dtype=torch.long)
        inputs["spatial_shapes"] = torch.tensor([side, side]).expand(1, slots, 2).contiguous()
    else:
        inputs["pixel_values"] = torch.randn(1, slots, 3, vision["image_size"], vision["image_size"])
        if family in ("clip", "metaclip_2"):
            inputs["attention_mask"] = torch.ones_like(input_ids)
    return inputs


def _parameters_without_token_embeddings(backbone) -> int:
    """Parameters that cost compute: the vocabulary table is a lookup (and cut for MetaCLIP 2 here)."""
    import torch

    vocab_size = backbone.config.text_config.vocab_size
    table = sum(m.weight.numel() for m in backbone.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings == vocab_size)
    return sum(p.numel() for p in backbone.parameters()) - table


def measure_backbones(families=tuple(FAMILIES), n_objects: int = 4, repeats: int = 2, log=print) -> dict:
    """Seconds per image of `forward_features` for each family (minimum over `repeats`), with sizes."""
    import torch

    rows = {}
    for family in families:
        log(f"building {family} ({FAMILIES[family]['checkpoint']}) ...")
        model = _model(family)
        inputs = _inputs(family, model, n_objects)
        with torch.inference_mode():
            model.forward_features(**inputs)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model.forward_features(**inputs)
                times.append(time.perf_counter() - start)
        rows[family] = {
            "checkpoint": FAMILIES[family]["checkpoint"],
            "embedding_dim": model.config.embedding_dim,
            "backbone_parameters_m": round(_parameters_without_token_embeddings(model.backbone) / 1e6, 1),
            "seconds_per_image": min(times),
            "peak_memory_mb": peak_memory_mb(torch.device("cpu")),
        }
        log(f"  {rows[family]['seconds_per_image']:.2f} s per image")
        del model
    return {"n_objects": n_objects, "text_tokens": TEXT_TOKENS, "repeats": repeats, "machine": machine_info(torch.device("cpu")), "backbones": rows}


def format_backbone_table(report: dict) -> str:
    lines = [
        f"| family | reference checkpoint | embedding size | parameters (without the token table) | seconds per image ({report['n_objects']} objects) |",
        "|---|---|---|---|---|",
    ]
    for family, row in report["backbones"].items():
        lines.append(
            f"| {family} | {row['checkpoint']} | {row['embedding_dim']} | {row['backbone_parameters_m']:.0f} M | {row['seconds_per_image']:.2f} |"
        )
    return "\n".join(lines)
