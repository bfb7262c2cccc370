"""Head training speed on cached features, through the code `item train` runs (FeatureRows, HeadTrainingModel,
Trainer with ITEM's head defaults), on features of the default checkpoint's real shape (CLIP ViT-L/14: D = 768,
K = 8 objects, float16 as cached). Only the head runs; the backbone is a tiny stand-in that is never called."""

from __future__ import annotations

import tempfile
import time

import numpy as np


def head_training_epoch(images: int = 10_000, dim: int = 768, objects: int = 8, repeats: int = 3, seed: int = 0) -> dict:
    """Seconds for one epoch of head training over `images` cached rows (the best of `repeats`)."""
    import torch
    from transformers import CLIPConfig, CLIPModel, Trainer
    from transformers.utils import logging

    from item_detector.modeling_item import ItemForImageClassification

    from ..cache import FeatureArrays, FrozenRows
    from ..data import Record
    from ..training import FeatureRows, HeadTrainingModel, collate_features, training_arguments

    logging.set_verbosity_error()
    torch.manual_seed(seed)
    tiny = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4)
    backbone = CLIPModel(CLIPConfig(text_config=dict(tiny, vocab_size=100), vision_config=dict(tiny, image_size=32, patch_size=8),
                                    projection_dim=dim))
    model = ItemForImageClassification.from_backbone(backbone)
    rng = np.random.default_rng(seed)
    slots = 1 + objects
    arrays = (rng.standard_normal((images, slots, dim)).astype(np.float16), rng.standard_normal((images, slots, dim)).astype(np.float16),
              rng.random((images, objects)) < 0.5)
    locations = np.stack([np.zeros(images, np.int64), np.arange(images)], axis=1)
    records = [Record(f"{i}.png", i % 2, "g") for i in range(images)]
    rows = FrozenRows(records, [str(i) for i in range(images)], [None] * images, FeatureArrays([arrays], locations))
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats):
            args = training_arguments(folder, num_train_epochs=1, use_cpu=True, disable_tqdm=True, save_strategy="no",
                                      eval_strategy="no", load_best_model_at_end=False, logging_strategy="no")
            trainer = Trainer(model=HeadTrainingModel(model), args=args, train_dataset=FeatureRows(rows),
                              data_collator=collate_features)
            started = time.perf_counter()
            trainer.train()
            times.append(time.perf_counter() - started)
    return {"images": images, "embedding_dim": dim, "objects": objects, "storage_dtype": "float16",
            "seconds_per_epoch": min(times), "seconds_all": times, "images_per_second": images / min(times)}
