"""Cached features of the default checkpoint's real shape (CLIP ViT-L/14: D = 768, K = 8 objects, float16 as
cached), built without any network, for timing what runs on cached features alone (head training, ablations),
and a model whose head has the real size around a tiny backbone that such runs never call."""

from __future__ import annotations

import numpy as np


def synthetic_rows(count: int, objects: int = 8, dim: int = 768, seed: int = 0):
    """A `FrozenRows` of `count` images with unit-norm random embeddings (count, 1 + objects, dim), float16;
    the fakes' texts lie a little further from their images, so that a head has something to learn."""
    from ..cache import FeatureArrays, FrozenRows
    from ..data import Record

    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    image = rng.standard_normal((count, 1 + objects, dim)).astype(np.float32)
    text = image + rng.standard_normal(image.shape).astype(np.float32) * (0.8 + 0.4 * labels[:, None, None])
    image /= np.linalg.norm(image, axis=-1, keepdims=True)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    mask = rng.random((count, objects)) < 0.6
    features = FeatureArrays([(image.astype(np.float16), text.astype(np.float16), mask)],
                             np.stack([np.zeros(count, np.int64), np.arange(count)], axis=1))
    records = [Record(f"{i}.png", int(labels[i]), "synthetic") for i in range(count)]
    return FrozenRows(records, [str(i) for i in range(count)], [None] * count, features)


def model_with_real_head(dim: int = 768, seed: int = 0):
    """An ItemForImageClassification whose embeddings are `dim` wide (so its head has the real size) around a tiny
    random CLIP: training on cached features never runs the backbone."""
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.utils import logging

    from item_detector.modeling_item import ItemForImageClassification

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    tiny = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4)
    config = CLIPConfig(text_config=dict(tiny, vocab_size=100), vision_config=dict(tiny, image_size=32, patch_size=8),
                        projection_dim=dim)
    return ItemForImageClassification.from_backbone(CLIPModel(config))
