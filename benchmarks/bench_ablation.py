"""Time `item ablate`'s training part: every distance x fusion head on 1,000 cached images of the real shape.

The cached features have the shape of the default checkpoint (CLIP ViT-L/14: D = 768, K = 8 objects, so
(1 + 8) x 768 float16 values per image and tower) and are held the way `frozen_rows` returns them (a
`FrozenRows` over `FeatureArrays`), so `run_ablation` reads them exactly as after a real cache fill. Only
the backbone is a tiny random one with a 768-wide projection: an ablation never runs it. No network is used.

    python benchmarks/bench_ablation.py [--images 1000] [--val-images 200] [--seeds 0] [--repeat 3]
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def synthetic_rows(count: int, objects: int, dim: int, seed: int):
    """A FrozenRows of `count` images with random unit-norm embeddings (count, 1 + objects, dim), float16,
    fakes' text embeddings a little further from their image embeddings (so there is something to learn)."""
    import numpy as np

    from item_cli.cache import FeatureArrays, FrozenRows
    from item_cli.data import Record

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="cached training images")
    parser.add_argument("--val-images", type=int, default=200, help="cached validation images")
    parser.add_argument("--dim", type=int, default=768, help="embedding size (768: CLIP ViT-L/14)")
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (the best is reported: the machine may be shared)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on a CPU (item ablate's default 1; 0: torch's)")
    parser.add_argument("--device", default=None, help="where the heads train (default: cuda when available)")
    args = parser.parse_args()

    import torch
    from item_detector.modeling_item import ItemForImageClassification
    from transformers import CLIPConfig, CLIPModel
    from transformers.utils import logging

    from item_cli.evaluation.ablation import HeadSchedule, run_ablation, summarize, variant_grid

    logging.set_verbosity_error()
    tiny = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4)
    backbone = CLIPConfig(text_config=dict(tiny, vocab_size=100), vision_config=dict(tiny, image_size=32, patch_size=8),
                          projection_dim=args.dim)
    model = ItemForImageClassification.from_backbone(CLIPModel(backbone))
    train, val = synthetic_rows(args.images, args.objects, args.dim, 0), synthetic_rows(args.val_images, args.objects, args.dim, 1)
    grid = variant_grid(("difference", "cosine", "both"), ("sum", "concat", "global", "local"), (512,))
    print(f"{len(grid)} variants x {len(args.seeds)} seed(s), {args.images} training + {args.val_images} validation "
          f"images of (1 + {args.objects}) x {args.dim}, torch {torch.__version__}, {args.threads or torch.get_num_threads()} thread(s)",
          flush=True)
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        runs = run_ablation(model, train, val, grid, args.seeds, HeadSchedule(), device=args.device,
                            threads=args.threads)
        times.append(time.perf_counter() - started)
        print(f"  run: {times[-1]:.2f} s", flush=True)
    for row in summarize(runs, grid):
        print(f"  {row['variant']:<24} val ACC {100 * row['acc_mean']:5.1f}  AP {100 * row['ap_mean']:5.1f}  "
              f"{row['seconds_mean']:.3f} s")
    print(f"best of {args.repeat}: {min(times):.2f} s for {len(grid) * len(args.seeds)} heads "
          f"({min(times) / (len(grid) * len(args.seeds)):.3f} s per head, fusion included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
