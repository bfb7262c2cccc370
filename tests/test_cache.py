"""The frozen work (captions, nouns, boxes, then backbone features) is cached once, reused, and recomputed
whenever the captioner, the detector settings or the backbone change; it shards across processes."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from item_data_helpers import make_cnndetection

from item_cli import cache
from item_cli.data import load_dataset
from item_cli.training import _load
from item_detector.modeling_item import ItemForImageClassification
from item_detector.processing_item import ItemProcessor

CAPTION = "a man riding a bike on the road"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_cnndetection(tmp_path_factory.mktemp("data") / "cnn", per_class=2)


@pytest.fixture
def counted(monkeypatch):
    """Count captioner, detector and backbone calls; the captioner always writes CAPTION."""
    calls = {"caption": 0, "ground": 0, "features": 0}
    ground, features = ItemProcessor.ground, ItemForImageClassification.forward_features

    def caption(self, images):
        calls["caption"] += len(images)
        return [CAPTION] * len(images)

    def counting_ground(self, images, nouns):
        calls["ground"] += len(images)
        return ground(self, images, nouns)

    def counting_features(self, *args, **kwargs):
        calls["features"] += 1
        return features(self, *args, **kwargs)

    monkeypatch.setattr(ItemProcessor, "caption", caption)
    monkeypatch.setattr(ItemProcessor, "ground", counting_ground)
    monkeypatch.setattr(ItemForImageClassification, "forward_features", counting_features)
    return calls


def test_cache_is_reused_and_invalidated_when_the_backbone_changes(checkpoint, data, tmp_path, counted):
    dataset = load_dataset(data)
    model, processor = _load(checkpoint)
    first = cache.cached_features(dataset, processor, model, tmp_path, batch_size=3, dtype="float32")
    assert counted == {"caption": 8, "ground": 8, "features": 3}
    assert first["caption"][0] == CAPTION and first["nouns"][0] == ["man", "bike", "road"]
    assert len(first["boxes"][0]) == 3 and all(box is not None for box in first["boxes"][0])  # box_threshold 0
    assert np.asarray(first["object_mask"]).sum(axis=1).tolist() == [3] * 8
    assert np.asarray(first["image_embeds"]).shape == (8, 1 + processor.max_objects, model.config.embedding_dim)

    # A second run, with freshly loaded networks as a new process would have: nothing runs.
    counted.update(caption=0, ground=0, features=0)
    model, processor = _load(checkpoint)
    second = cache.cached_features(dataset, processor, model, tmp_path, batch_size=3, dtype="float32")
    assert counted == {"caption": 0, "ground": 0, "features": 0}
    assert np.array_equal(np.asarray(second["image_embeds"]), np.asarray(first["image_embeds"]))
    assert second["boxes"] == first["boxes"]

    # Another backbone: the annotations are reused, the features recomputed.
    with torch.no_grad():
        model.backbone.visual_projection.weight.add_(0.5)
    third = cache.cached_features(dataset, processor, model, tmp_path, batch_size=3, dtype="float32")
    assert counted["caption"] == 0 and counted["ground"] == 0 and counted["features"] == 3
    assert not np.allclose(np.asarray(third["image_embeds"]), np.asarray(first["image_embeds"]))
    assert np.array_equal(np.asarray(third["text_embeds"]), np.asarray(first["text_embeds"]))  # text tower unchanged
    data_folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(data_folders) == 1
    assert len(list(data_folders[0].glob("features-*"))) == 2 and len(list(data_folders[0].glob("annotations-*"))) == 1

    # Stored as float16 by default: its own cache entry, half the bytes, the same values to float16 precision.
    half = cache.cached_features(dataset, processor, model, tmp_path, batch_size=3)
    assert half.features["image_embeds"].dtype == "float16"
    assert np.allclose(np.asarray(half["image_embeds"]), np.asarray(third["image_embeds"]), atol=2e-3)


def test_captioner_and_detector_settings_invalidate_the_annotations(checkpoint, data, tmp_path, counted):
    from item_cli.tiny import tiny_captioner

    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    dataset = load_dataset(data)
    model, processor = _load(copy)
    cache.cache_annotations(dataset, processor, tmp_path / "cache")
    assert counted["caption"] == 8

    model, processor = _load(copy)
    cache.cache_annotations(dataset, processor, tmp_path / "cache")
    assert counted["caption"] == 8  # reused

    tiny_captioner(copy / "captioner", seed=1)  # same architecture and name, other weights
    model, processor = _load(copy)
    cache.cache_annotations(dataset, processor, tmp_path / "cache")
    assert counted["caption"] == 16

    processor.box_threshold = 0.5  # a processor setting: recomputed too, boxes below it dropped
    annotated = cache.cache_annotations(dataset, processor, tmp_path / "cache")
    assert counted["caption"] == 24
    pairs = [(box, score) for boxes, scores in zip(annotated["boxes"], annotated["box_scores"]) for box, score in zip(boxes, scores)]
    assert pairs and all((box is None) == (score < 0.5) for box, score in pairs)


def test_an_unreadable_image_is_reported_and_skipped(checkpoint, tmp_path, counted):
    root = make_cnndetection(tmp_path / "cnn", generators=("progan",), per_class=2)
    good = sorted((root / "progan" / "1_fake").iterdir())[0]
    truncated = root / "progan" / "1_fake" / f"truncated{good.suffix}"
    truncated.write_bytes(good.read_bytes()[:-200])  # the header parses, the pixels do not decode
    errors = []
    dataset = load_dataset(root, errors=errors)
    assert len(dataset) == 5 and errors == []  # passes the fast header check
    model, processor = _load(checkpoint)
    featured = cache.cached_features(dataset, processor, model, tmp_path / "cache", errors=errors)
    assert len(featured) == 4
    assert [path for path, _ in errors] == [str(truncated)]
    assert "truncated" in errors[0][1]
    # From the cache on the next run: still reported, still skipped, nothing recomputed.
    counted.update(caption=0)
    again = []
    cache.cached_features(dataset, processor, model, tmp_path / "cache", errors=again)
    assert counted["caption"] == 0 and [path for path, _ in again] == [str(truncated)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_shard_the_cache_and_match_one_process(checkpoint, data, tmp_path):
    """`accelerate launch` with 2 CPU processes: each caches one shard, the merged cache equals a 1-process run."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "item_cli.commands.cache", "--model", str(checkpoint), "--data", str(data), "--features",
        "--feature-dtype", "float32", "--batch-size", "2", "--cache-dir", str(tmp_path / "sharded"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "[process 1/2]" in run.stderr and "[process 2/2]" in run.stderr  # two shards, one per process

    dataset = load_dataset(data)
    model, processor = _load(checkpoint)
    single = cache.cached_features(dataset, processor, model, tmp_path / "single", batch_size=2, dtype="float32")
    sharded_root = next(p for p in (tmp_path / "sharded").iterdir() if p.is_dir())
    sharded_folder = next(sharded_root.glob("features-*"))
    assert len(list(sharded_folder.glob("shard-*.arrow"))) == 2  # one file per process
    sharded = cache.load_cache(sharded_folder)
    assert not list(sharded_root.glob("*.partial"))  # the shards were merged and cleaned up
    assert sharded["path"] == single["path"] == dataset["path"]  # merged in order
    assert sharded["caption"] == single["caption"] and sharded["boxes"] == single["boxes"]
    assert np.allclose(np.asarray(sharded["image_embeds"]), np.asarray(single["image_embeds"]), atol=1e-5)
    assert np.allclose(np.asarray(sharded["text_embeds"]), np.asarray(single["text_embeds"]), atol=1e-5)
    # The same fingerprint: a single-process run over the sharded cache folder reuses it.
    assert (sharded_root.name, next(sharded_root.glob("features-*")).name) == (
        next(p for p in (tmp_path / "single").iterdir() if p.is_dir()).name,
        next(next(p for p in (tmp_path / "single").iterdir() if p.is_dir()).glob("features-*")).name,
    )
