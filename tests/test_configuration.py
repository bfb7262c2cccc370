"""ItemConfig: defaults, validation, derived sizes, remote-code wiring, save/load."""

import json

import pytest

from item_detector.configuration_item import (
    DISTANCE_TYPES,
    FUSION_TYPES,
    SUPPORTED_BACKBONES,
    ItemConfig,
    check_backbone_is_dual_encoder,
)
from transformers import CLIPConfig, MetaClip2Config, Siglip2Config, SiglipConfig


def _families_named(message: str) -> bool:
    return all(name in message for name in ("clip", "siglip", "siglip2", "metaclip_2"))


def test_defaults():
    config = ItemConfig()
    assert config.model_type == "item_detector"
    assert config.backbone_config.model_type == "clip"
    assert (config.distance_type, config.fusion) == ("difference", "sum")
    assert config.decision_threshold == 0.5
    assert config.num_labels == 2
    assert config.id2label == {0: "real", 1: "fake"}
    assert config.label2id == {"real": 0, "fake": 1}
    # transformers' default CLIPConfig projects to 512
    assert config.embedding_dim == 512
    assert config.head_input_dim == 512


def test_auto_map_and_custom_pipeline_point_at_the_flat_files():
    config = ItemConfig()
    assert config.auto_map["AutoConfig"] == "configuration_item.ItemConfig"
    assert config.auto_map["AutoModel"] == "modeling_item.ItemForImageClassification"
    assert config.auto_map["AutoModelForImageClassification"] == "modeling_item.ItemForImageClassification"
    assert config.auto_map["AutoProcessor"] == "processing_item.ItemProcessor"
    spec = config.custom_pipelines["image-classification"]
    assert spec["impl"] == "pipeline_item.ItemImageClassificationPipeline"
    assert spec["pt"] == ["AutoModelForImageClassification"]
    # each config gets its own copy: editing one does not leak into the next
    config.auto_map["AutoModel"] = "x.Y"
    config.custom_pipelines["image-classification"]["impl"] = "x.Y"
    fresh = ItemConfig()
    assert fresh.auto_map["AutoModel"] == "modeling_item.ItemForImageClassification"
    assert fresh.custom_pipelines["image-classification"]["impl"] == "pipeline_item.ItemImageClassificationPipeline"


@pytest.mark.parametrize(
    "distance_type, fusion, expected",
    [
        ("difference", "sum", 24),
        ("difference", "concat", 48),
        ("difference", "global", 24),
        ("difference", "local", 24),
        ("cosine", "sum", 1),
        ("cosine", "concat", 2),
        ("both", "sum", 25),
        ("both", "concat", 50),
        ("both", "local", 25),
    ],
)
def test_head_input_dim(distance_type, fusion, expected):
    backbone = CLIPConfig(projection_dim=24).to_dict()
    config = ItemConfig(backbone_config=backbone, distance_type=distance_type, fusion=fusion)
    assert config.embedding_dim == 24
    assert config.head_input_dim == expected


def test_embedding_dim_of_each_family():
    assert ItemConfig(backbone_config=CLIPConfig(projection_dim=40).to_dict()).embedding_dim == 40
    assert ItemConfig(backbone_config=MetaClip2Config(projection_dim=36).to_dict()).embedding_dim == 36
    siglip2 = Siglip2Config(vision_config={"hidden_size": 48, "num_attention_heads": 4})
    assert ItemConfig(backbone_config=siglip2.to_dict()).embedding_dim == 48
    siglip = SiglipConfig(vision_config={"hidden_size": 64, "num_attention_heads": 4})
    assert ItemConfig(backbone_config=siglip.to_dict()).embedding_dim == 64


def test_backbone_config_accepts_config_object():
    config = ItemConfig(backbone_config=CLIPConfig(projection_dim=16))
    assert config.backbone_config.model_type == "clip"
    assert config.embedding_dim == 16


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"distance_type": "foo"}, "foo"),
        ({"fusion": "bar"}, "bar"),
        ({"decision_threshold": 2}, "2"),
        ({"decision_threshold": -0.1}, "-0.1"),
    ],
)
def test_bad_values_raise(kwargs, word):
    with pytest.raises(ValueError) as info:
        ItemConfig(**kwargs)
    assert word in str(info.value)
    # the message lists what would have been accepted
    if "distance_type" in kwargs:
        assert all(choice in str(info.value) for choice in DISTANCE_TYPES)
    if "fusion" in kwargs:
        assert all(choice in str(info.value) for choice in FUSION_TYPES)


def test_threshold_bounds_are_inclusive():
    assert ItemConfig(decision_threshold=0.0).decision_threshold == 0.0
    assert ItemConfig(decision_threshold=1.0).decision_threshold == 1.0


def test_vision_only_backbone_is_refused_naming_the_families():
    with pytest.raises(ValueError) as info:
        ItemConfig(backbone_config={"model_type": "vit"})
    assert "'vit'" in str(info.value)
    assert _families_named(str(info.value))


def test_text_only_backbone_is_refused():
    with pytest.raises(ValueError) as info:
        ItemConfig(backbone_config={"model_type": "bert"})
    assert _families_named(str(info.value))


def test_unknown_backbone_type_is_refused():
    with pytest.raises(ValueError) as info:
        ItemConfig(backbone_config={"model_type": "no-such-model"})
    assert "no-such-model" in str(info.value)
    assert _families_named(str(info.value))


@pytest.mark.parametrize("model_type", SUPPORTED_BACKBONES)
def test_supported_backbones_pass_the_dual_encoder_check(model_type):
    check_backbone_is_dual_encoder(model_type)  # does not raise


def test_save_and_load_round_trip(tmp_path):
    config = ItemConfig(
        backbone_config=CLIPConfig(projection_dim=24).to_dict(),
        distance_type="both",
        fusion="concat",
        head_hidden_size=7,
        head_dropout=0.25,
        decision_threshold=0.7,
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "item_detector"
    assert saved["backbone_config"]["model_type"] == "clip"
    assert saved["auto_map"]["AutoModelForImageClassification"] == "modeling_item.ItemForImageClassification"
    assert "image-classification" in saved["custom_pipelines"]

    loaded = ItemConfig.from_pretrained(tmp_path)
    assert (loaded.distance_type, loaded.fusion) == ("both", "concat")
    assert (loaded.head_hidden_size, loaded.head_dropout, loaded.decision_threshold) == (7, 0.25, 0.7)
    assert loaded.backbone_config.model_type == "clip"
    assert loaded.backbone_config.projection_dim == 24
    assert loaded.head_input_dim == 50
    assert loaded.id2label == {0: "real", 1: "fake"}
    assert loaded.auto_map == config.auto_map


def test_custom_labels_survive():
    config = ItemConfig(id2label={0: "photo", 1: "generated"})
    assert config.label2id == {"photo": 0, "generated": 1}
