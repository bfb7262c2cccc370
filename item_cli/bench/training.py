"""What runs on cached features alone, timed: head training through the code `item train` runs (FeatureRows,
HeadTrainingModel, Trainer with ITEM's head defaults), and `item ablate`'s grid of heads, on features of the
default checkpoint's real shape (`synthetic`)."""

from __future__ import annotations

import tempfile
import time

from .synthetic import model_with_real_head, synthetic_rows


def head_training_epoch(images: int = 10_000, dim: int = 768, objects: int = 8, repeats: int = 3, seed: int = 0) -> dict:
    """Seconds for one epoch of head training over `images` cached rows (the best of `repeats`)."""
    from transformers import Trainer

    from ..training import FeatureRows, HeadTrainingModel, collate_features, training_arguments

    model, rows = model_with_real_head(dim, seed), synthetic_rows(images, objects, dim, seed)
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


def ablation_grid(images: int = 1000, val_images: int = 200, dim: int = 768, objects: int = 8, seeds=(0,),
                  repeats: int = 3, threads: int = 1, device=None) -> dict:
    """Seconds for `item ablate`'s default grid (3 distances x 4 fusions, head 512) on cached features (best of
    `repeats`), and each variant's validation figures."""
    from ..evaluation.ablation import HeadSchedule, run_ablation, summarize, variant_grid

    model = model_with_real_head(dim)
    train, val = synthetic_rows(images, objects, dim, 0), synthetic_rows(val_images, objects, dim, 1)
    grid = variant_grid(("difference", "cosine", "both"), ("sum", "concat", "global", "local"), (512,))
    times, runs = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        runs = run_ablation(model, train, val, grid, list(seeds), HeadSchedule(), device=device, threads=threads)
        times.append(time.perf_counter() - started)
    return {"variants": len(grid), "seeds": list(seeds), "images": images, "val_images": val_images, "embedding_dim": dim,
            "objects": objects, "threads": threads, "seconds": min(times), "seconds_all": times,
            "variants_summary": summarize(runs, grid)}
