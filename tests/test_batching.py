"""Batching changes no result, the text-padding cut changes no embedding, and the benchmark runs end to end (tiny nets)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from item_detector.modeling_item import ItemForImageClassification
from item_detector.processing_item import ItemProcessor

# Eight images of different sizes with their own captions, nouns and boxes: no object, boxes that miss the
# image or cover less than a pixel, the full K = 8 objects, captions of very different lengths (the text
# padding cut to the longest text of the batch then differs between batch 1 and batch 8).
SIZES = [(64, 48), (48, 64), (80, 80), (33, 90), (100, 40), (64, 64), (50, 70), (90, 60)]
ANNOTATIONS = [
    ("a man riding a bike on the road", ["man", "bike", "road"], [[0, 0, 30, 40], [10, 5, 60, 45], None]),
    ("a cat", [], []),
    ("a dog sitting at a table with a cup of coffee and a cake in front of a tree",
     ["dog", "table", "cup", "coffee", "cake", "front", "tree", "picture"],
     [[0, 0, 40, 40], [5, 5, 75, 75], [10, 10, 20, 20], [0, 0, 80, 80], [60, 60, 79, 79], [1, 1, 2, 2],
      [30, 0, 80, 50], [0, 40, 40, 80]]),
    ("a rocket", ["rocket"], [[200, 200, 300, 300]]),  # outside the image: slot stays empty
    ("a woman and a red car", ["woman", "car"], [[0, 0, 50, 40], [50.4, 10.2, 99.7, 39.9]]),
    ("an astronaut with a flag", ["astronaut", "flag"], [None, [3, 3, 3, 3]]),  # no area: empty slot
    ("a person", ["person"], [[5, 5, 45, 65]]),
    ("a street with a car and a tree", ["street", "car", "tree"], [[0, 30, 90, 60], [20, 20, 50, 50], [60, 0, 90, 40]]),
]


def _images():
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


@pytest.fixture(scope="module")
def loaded(checkpoint):
    model = ItemForImageClassification.from_pretrained(checkpoint).eval()
    processor = ItemProcessor.from_pretrained(checkpoint)
    return model, processor


def _run(model, processor, images, annotations):
    captions = [caption for caption, _, _ in annotations]
    nouns = [list(names) for _, names, _ in annotations]
    boxes = [list(image_boxes) for _, _, image_boxes in annotations]
    annotations = processor.annotate(images, captions=captions, nouns=nouns, boxes=boxes)
    inputs = processor.encode(images, annotations)
    found = {key: [getattr(a, key) for a in annotations] for key in ("caption", "nouns", "boxes", "box_scores")}
    with torch.no_grad():
        output = model(**inputs)
    return found, inputs, output


def test_batch_of_eight_equals_eight_batches_of_one(loaded):
    model, processor = loaded
    images = _images()
    together, inputs8, output8 = _run(model, processor, images, ANNOTATIONS)
    # The networks were never needed: every annotation was given.
    assert processor._networks.captioner is None and processor._networks.detector is None
    probabilities8 = output8.logits.softmax(-1)[:, 1]
    assert output8.object_mask.sum().item() == 2 + 0 + 8 + 0 + 2 + 0 + 1 + 3  # None / off-image / empty boxes dropped
    for i in range(len(images)):
        alone, inputs1, output1 = _run(model, processor, [images[i]], [ANNOTATIONS[i]])
        for key in ("caption", "nouns", "boxes", "box_scores"):
            assert alone[key][0] == together[key][i], (i, key)
        assert torch.equal(inputs1["object_mask"][0], inputs8["object_mask"][i])
        assert torch.equal(inputs1["pixel_values"][0], inputs8["pixel_values"][i])  # the same crops, bit for bit
        assert torch.equal(inputs1["input_ids"][0], inputs8["input_ids"][i])
        probability1 = output1.logits.softmax(-1)[0, 1]
        assert abs(float(probability1) - float(probabilities8[i])) < 1e-4, i
        assert torch.allclose(output1.similarities[0], output8.similarities[i], atol=1e-4), i
        assert torch.allclose(output1.image_embeds[0], output8.image_embeds[i], atol=1e-4), i


def test_cutting_text_padding_changes_no_embedding(loaded):
    model, processor = loaded
    images = _images()[:3]
    inputs = processor(images=images, captions=[a[0] for a in ANNOTATIONS[:3]], nouns=[a[1] for a in ANNOTATIONS[:3]],
                       boxes=[a[2] for a in ANNOTATIONS[:3]])
    assert inputs["input_ids"].shape[-1] == 77 and inputs["attention_mask"][..., 40:].sum() == 0
    slot_mask = torch.cat([torch.ones_like(inputs["object_mask"][:, :1]), inputs["object_mask"]], dim=1).bool()
    with torch.no_grad():
        features = model.forward_features(inputs["pixel_values"], inputs["input_ids"], inputs["object_mask"],
                                          attention_mask=inputs["attention_mask"])
        uncut = model._embed_slots(model.backbone.get_text_features, slot_mask,
                                   {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]})
    assert features.text_embeds.abs().sum() > 0
    assert torch.allclose(features.text_embeds, uncut, atol=1e-5)


def test_features_computed_without_grad_can_train_the_head(loaded):
    """forward_features runs the backbone in inference mode; its outputs must still be usable in autograd."""
    model, processor = loaded
    images = _images()[:2]
    inputs = processor(images=images, captions=[a[0] for a in ANNOTATIONS[:2]], nouns=[a[1] for a in ANNOTATIONS[:2]],
                       boxes=[a[2] for a in ANNOTATIONS[:2]])
    with torch.no_grad():
        features = model.forward_features(inputs["pixel_values"], inputs["input_ids"], inputs["object_mask"],
                                          attention_mask=inputs["attention_mask"])
    assert not torch.is_inference(features.image_embeds)
    model.head.zero_grad(set_to_none=True)
    output = model(image_embeds=features.image_embeds, text_embeds=features.text_embeds,
                   object_mask=inputs["object_mask"], labels=torch.tensor([0, 1]))
    output.loss.backward()
    assert model.head.dense.weight.grad is not None and model.head.dense.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())


def test_benchmark_runs_end_to_end_on_tiny_networks():
    from item_cli.benchmark import STAGES, BenchmarkSettings, format_report, run_benchmark

    settings = BenchmarkSettings(network_size="tiny", batch_sizes=(1, 2), repeats=1, n_objects=3, caption_tokens=12,
                                 image_size=(64, 48), train_cached_samples=16)
    messages = []
    report = run_benchmark(settings, log=messages.append)
    assert messages and set(report["batches"]) == {"1", "2"}
    for batch, entry in report["batches"].items():
        assert set(entry["stages"]) == set(STAGES)
        assert all(stage["seconds"] > 0 for stage in entry["stages"].values())
        stage_sum = sum(stage["seconds"] for stage in entry["stages"].values())
        assert entry["stages_sum_seconds"] == pytest.approx(stage_sum)
        assert entry["overhead_ratio"] == pytest.approx(entry["pipeline"]["seconds"] / stage_sum)
        assert entry["cost_vs_baseline"] == pytest.approx(
            entry["pipeline"]["seconds"] / entry["baseline_universalfakedetect"]["seconds"])
        assert entry["pipeline"]["images_per_second"] == pytest.approx(int(batch) / entry["pipeline"]["seconds"])
        # The fixed workload: 3 nouns, each grounded (threshold 0), so 1 + 3 images and texts per picture.
        assert entry["nouns"] == ["man", "dog", "bike"] and entry["objects_per_image"] == 3
        assert entry["texts"] == 4 * int(batch)
        assert entry["peak_memory_mb"]["pipeline"] > 0
    scaling = report["batch_scaling"]
    assert scaling["pipeline_throughput_ratio"] == pytest.approx(
        report["batches"]["2"]["pipeline"]["images_per_second"] / report["batches"]["1"]["pipeline"]["images_per_second"])
    training = report["training"]
    assert training["cached_features"]["samples"] == 16
    assert training["speedup_per_sample"] == pytest.approx(
        training["cached_features"]["images_per_second"] / training["through_frozen_networks"]["images_per_second"])
    assert report["targets"]["overhead_ratio_at_largest_batch"] == report["batches"]["2"]["overhead_ratio"]
    json.dumps(report)  # the JSON the command writes
    table = format_report(report)
    assert "whole pipeline" in table and "overhead ratio" in table and "batch 2" in table


def test_fixed_caption_names_exactly_the_requested_nouns():
    from item_cli.benchmark import fixed_caption
    from item_detector.processing_item import load_spacy

    nlp = load_spacy("en_core_web_sm")
    for n in range(1, 9):
        caption, nouns = fixed_caption(n)
        found = [chunk.root.text for chunk in nlp(caption + " . . .").noun_chunks]
        assert found == nouns and len(nouns) == n
    with pytest.raises(ValueError):
        fixed_caption(9)


def test_benchmark_command_line_options():
    import argparse

    from item_cli.benchmark import add_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    quick = settings_from_args(parser.parse_args(["--quick", "--device", "cpu"]))
    assert quick.quick_mode and quick.repeats == 1 and quick.batch_sizes == (1, 8) and quick.detector_shortest_edge == 400
    full = settings_from_args(parser.parse_args(["--batch-sizes", "1", "4", "--repeats", "3", "--objects", "5",
                                                 "--dtype", "bfloat16"]))
    assert full.batch_sizes == (1, 4) and full.repeats == 3 and full.n_objects == 5 and full.dtype == "bfloat16"
    assert full.detector_shortest_edge is None and not full.quick_mode


def test_backbone_cost_table_runs_for_every_family(monkeypatch):
    """`item benchmark --backbones` builds each family and times forward_features (tiny sizes here)."""
    from item_cli import benchmark_backbones

    small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4)
    tiny = {
        "clip": dict(checkpoint="tiny clip", vision=dict(small, patch_size=8, image_size=32),
                     text=dict(small, vocab_size=1000, max_position_embeddings=77), projection_dim=24),
        "siglip": dict(checkpoint="tiny siglip", vision=dict(small, patch_size=8, image_size=32),
                       text=dict(small, vocab_size=1000, max_position_embeddings=64, projection_size=32)),
        "siglip2": dict(checkpoint="tiny siglip2", vision=dict(small, patch_size=8, num_patches=16),
                        text=dict(small, vocab_size=1000, max_position_embeddings=64, projection_size=32)),
        "metaclip_2": dict(checkpoint="tiny metaclip 2", vision=dict(small, patch_size=8, image_size=32),
                           text=dict(small, vocab_size=1000, max_position_embeddings=77), projection_dim=16),
    }
    monkeypatch.setattr(benchmark_backbones, "FAMILIES", tiny)
    report = benchmark_backbones.measure_backbones(tuple(tiny), n_objects=2, repeats=1, log=lambda message: None)
    rows = report["backbones"]
    assert list(rows) == list(tiny)
    assert [rows[f]["embedding_dim"] for f in tiny] == [24, 32, 32, 16]
    assert all(row["seconds_per_image"] > 0 for row in rows.values())
    table = benchmark_backbones.format_backbone_table(report)
    assert all(f"| {family} |" in table for family in tiny)
