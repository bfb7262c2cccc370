"""Ablations of ITEM's head in seconds: every distance x fusion (x head size, x seed) trained on cached features.

    records --frozen_rows (once; the cache makes a second run free)--> embeddings (N, 1 + K, D) per tower
      for each distance x fusion: fused misalignment features (N, F), computed once (`misalignment_features`,
          the model's own function)
        for each head size x seed: a fresh `ItemHead` trained on them -> validation ACC / AP / AUC

Only the head trains: the frozen networks (captioner, spaCy, detector, backbone) never run once the cache is
filled. The head trains in a plain torch loop rather than through `Trainer`: a variant is a few hundred tiny
steps on tensors already in memory, and Trainer's per-run setup (accelerate state, optimizer and scheduler
wiring, callbacks, a DataLoader and an evaluation loop per epoch) costs more than the training itself, twelve
times over. The loop follows `item train`'s defaults, so that the numbers compare: AdamW with a linear decay to
zero and no warm-up (Trainer's defaults), weight decay 0, batch 256, 10 epochs, learning rate 1e-3, the
checkpoint's head dropout, and the epoch with the lowest validation loss kept (`load_best_model_at_end` with
`metric_for_best_model="loss"`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from item_detector.configuration_item import DISTANCE_TYPES, FUSION_TYPES, ItemConfig

from ..cache import FrozenRows
from ..public_names import public_name
from .metrics import detection_metrics

logger = logging.getLogger(__name__)

FUSION_CHUNK = 2048  # images fused at a time: bounds the float32 copy of the float16 cache


@dataclass(frozen=True)
class Variant:
    """One head configuration of the grid."""

    distance_type: str
    fusion: str
    head_hidden_size: int

    @property
    def name(self) -> str:
        return f"{self.distance_type}/{self.fusion}/h{self.head_hidden_size}"


@dataclass(frozen=True)
class HeadSchedule:
    """How every head is trained (defaults: `item train`'s) and the threshold its validation ACC uses."""

    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 0.0
    threshold: float = 0.5

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs={self.epochs!r}; pass a positive number of epochs, e.g. 10.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate!r}; pass a positive learning rate, e.g. 1e-3.")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r}; pass a positive batch size, e.g. 256.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay!r}; pass 0 or a positive value.")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold={self.threshold!r}; pass a fake probability in [0, 1], e.g. 0.5.")


def variant_grid(distance_types=DISTANCE_TYPES, fusions=FUSION_TYPES, head_sizes=(512,)) -> list[Variant]:
    """Every combination, in the order of the paper's figure: distance type, then fusion (each in the config's
    order, whatever order they were given in), then head size ascending."""
    for value, allowed, option in ((distance_types, DISTANCE_TYPES, "--distance-types"), (fusions, FUSION_TYPES, "--fusions")):
        bad = [v for v in value if v not in allowed]
        if bad or not value:
            raise ValueError(f"{option} {' '.join(map(str, bad or value))}: choose from {' '.join(allowed)}.")
    bad_sizes = [s for s in head_sizes if isinstance(s, bool) or not isinstance(s, int) or s < 1]
    if bad_sizes or not head_sizes:
        raise ValueError(f"--head-hidden-sizes {bad_sizes or list(head_sizes)}: pass positive integers, e.g. 128 512.")
    return [Variant(d, f, s) for d in DISTANCE_TYPES if d in distance_types for f in FUSION_TYPES if f in fusions
            for s in sorted(set(head_sizes))]


def fused_features(rows: FrozenRows, distance_type: str, fusion: str):
    """The head's input for every row: cached embeddings (N, 1 + K, D) -> fused features (N, F), float32."""
    import torch
    from item_detector.modeling_item import misalignment_features

    parts = []
    for start in range(0, len(rows), FUSION_CHUNK):
        batch = rows.features.take(np.arange(start, min(start + FUSION_CHUNK, len(rows))))
        features, _ = misalignment_features(
            torch.from_numpy(batch["image_embeds"]).float(), torch.from_numpy(batch["text_embeds"]).float(),
            torch.from_numpy(batch["object_mask"]).bool(), distance_type, fusion,
        )
        parts.append(features)
    return torch.cat(parts) if parts else torch.zeros(0, 0)


def train_head(config: ItemConfig, train: tuple, val: tuple, schedule: HeadSchedule, seed: int) -> dict:
    """Train a fresh head of `config` on (features (N, F), labels (N,)); validate every epoch on `val`.

    The new head gets the initialisation every ITEM head gets (`ItemHead.reset_parameters`). Returns the validation metrics of the epoch with the lowest validation loss, with that epoch and loss.
    """
    import torch
    import torch.nn.functional as F
    from item_detector.modeling_item import ItemHead

    torch.manual_seed(seed)
    head = ItemHead(config)
    head.reset_parameters()
    (train_x, train_y), (val_x, val_y) = train, val
    head.to(train_x.device)
    steps = schedule.epochs * math.ceil(len(train_y) / schedule.batch_size)
    optimizer = torch.optim.AdamW(head.parameters(), lr=schedule.learning_rate, weight_decay=schedule.weight_decay)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / steps))
    order = torch.Generator().manual_seed(seed)
    best = {"val_loss": math.inf}
    for epoch in range(1, schedule.epochs + 1):
        head.train()
        for batch in torch.randperm(len(train_y), generator=order).to(train_x.device).split(schedule.batch_size):
            loss = F.cross_entropy(head(train_x[batch]), train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            decay.step()
        head.eval()
        with torch.no_grad():
            logits = head(val_x)
            val_loss = float(F.cross_entropy(logits, val_y))
        if val_loss < best["val_loss"]:  # the first of equally good epochs, as Trainer keeps it
            fake = int(config.label2id.get("fake", 1))
            scores = logits.float().softmax(dim=-1)[:, fake].cpu().numpy()
            best = {"val_loss": val_loss, "epoch": epoch,
                    **detection_metrics(val_y.cpu().numpy(), scores, schedule.threshold)}
    return best


@contextlib.contextmanager
def _cpu_threads(count: int | None):
    """torch's intra-op threads set to `count` inside the block (None or 0: left as they are)."""
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_ablation(model, train_rows: FrozenRows, val_rows: FrozenRows, grid: list[Variant], seeds, schedule: HeadSchedule,
                 device: str | None = None, threads: int | None = 1) -> list[dict]:
    """One result per variant and seed: {"variant", "seed", "acc", "ap", "roc_auc", ..., "seconds"}.

    `device`: where the heads train (default: the GPU when there is one; the fused features are moved there once).
    `threads`: torch threads on a CPU (None or 0: torch's default). One by default: a head's matrices (a batch of
    256 x F times F x 512) are too small to gain from threads, and threads that wait for each other on a shared
    machine made the 12-variant benchmark 7x slower with 2 threads than with 1 (`item benchmark --ablation`).
    """
    import torch

    if not len(train_rows) or not len(val_rows):
        raise ValueError(f"The ablation needs training and validation images; got {len(train_rows)} and {len(val_rows)}.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise ValueError(f"threads={threads!r}; pass a number of CPU threads (1 by default; 0 for torch's default).")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with _cpu_threads(threads if device.type == "cpu" else None):
        return _train_grid(model, train_rows, val_rows, grid, seeds, schedule, device)


def _train_grid(model, train_rows, val_rows, grid, seeds, schedule, device) -> list[dict]:
    """`run_ablation`'s loop: fuse once per distance x fusion, then one head per head size and seed."""
    import torch

    train_y, val_y = torch.from_numpy(train_rows.labels).to(device), torch.from_numpy(val_rows.labels).to(device)
    base = model.config.to_dict()
    runs, fused = [], {}
    for variant in grid:
        key = (variant.distance_type, variant.fusion)
        if key not in fused:  # one fusion per distance x fusion, shared by every head size and seed
            fused = {key: (fused_features(train_rows, *key).to(device), fused_features(val_rows, *key).to(device))}
        config = ItemConfig(**{**base, "distance_type": variant.distance_type, "fusion": variant.fusion,
                               "head_hidden_size": variant.head_hidden_size})
        for seed in seeds:
            started = time.perf_counter()  # the head's training and validation only (fusion is shared)
            found = train_head(config, (fused[key][0], train_y), (fused[key][1], val_y), schedule, int(seed))
            runs.append({"variant": variant.name, "distance_type": variant.distance_type, "fusion": variant.fusion,
                         "head_hidden_size": variant.head_hidden_size, "seed": int(seed), **found,
                         "seconds": time.perf_counter() - started})
            logger.info("ablation: %s seed %d: val ACC %.4f, AP %.4f", variant.name, seed, found["acc"], found["ap"])
    return runs


def summarize(runs: list[dict], grid: list[Variant]) -> list[dict]:
    """Per variant (grid order): mean and standard deviation over seeds (sample std; NaN for one seed)."""
    out = []
    for variant in grid:
        mine = [run for run in runs if run["variant"] == variant.name]
        row = {"variant": variant.name, "distance_type": variant.distance_type, "fusion": variant.fusion,
               "head_hidden_size": variant.head_hidden_size, "seeds": [run["seed"] for run in mine]}
        for key in ("acc", "ap", "roc_auc", "val_loss", "epoch", "seconds"):
            values = np.array([run[key] for run in mine], dtype=np.float64)
            row[f"{key}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
            row[f"{key}_std"] = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else math.nan
        out.append(row)
    return out


def ablate(model_dir, data, output=None, val_data=None, *, grid: list[Variant] | None = None, seeds=(0,),
           schedule: HeadSchedule = HeadSchedule(), val_fraction: float = 0.1, layout: str = "auto",
           split: str | None = None, generator: str | None = None, equalize=None, revision: str | None = None,
           threads: int | None = 1, data_options=None, **cache) -> dict | None:
    """Train a head for every variant of `grid` and seed on the cached features of `data`; validate on
    `val_data` (else a stratified `val_fraction` of `data`, split with seed 0 so that every seed sees the same
    split). `cache`: `frozen_rows` options (cache_dir, batch_size, storage_dtype, decode_workers, ...).
    With `output`, writes ablation.md / .csv / .json there. Returns the results (None on a non-main process).
    """
    from ..cache import frozen_rows, process_state
    from ..checkpoint import load_checkpoint
    from ..data import load_records, require_labels, split_train_val
    from .ablation_report import write_ablation

    grid = grid or variant_grid()
    seeds = [int(seed) for seed in seeds] or [0]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {' '.join(map(str, seeds))}: a seed is repeated; give each seed once.")
    state = process_state()
    records, skipped = load_records(data, layout=layout, split=split, generator=generator, options=data_options)
    require_labels(records, "the ablation")
    model, processor = load_checkpoint(model_dir, revision)
    rows = frozen_rows(records, processor, model, perturbation=equalize, state=state, **cache)
    skipped += rows.skipped
    if val_data is not None:
        val_records, val_skipped = load_records(val_data, layout=layout, generator=generator, options=data_options)
        require_labels(val_records, "the ablation's validation")
        val_rows = frozen_rows(val_records, processor, model, perturbation=equalize, state=state, **cache)
        skipped += val_skipped + val_rows.skipped
        train_rows, val_source = rows, public_name(val_data)
    else:
        train_index, val_index = split_train_val(rows.records, val_fraction, seed=0)
        train_rows, val_rows = rows.select(train_index), rows.select(val_index)
        val_source = f"a stratified {val_fraction:.0%} of the training data (seed 0)"
    if not state.is_main_process:
        return None
    started = time.perf_counter()
    runs = run_ablation(model, train_rows, val_rows, grid, seeds, schedule, threads=threads)
    config = model.config
    results = {
        "model": public_name(model_dir), "data": public_name(data), "validation": val_source, "train_images": len(train_rows),
        "val_images": len(val_rows), "equalize": None if equalize is None else equalize.name, "seeds": seeds,
        "threads": threads, "schedule": dataclasses.asdict(schedule),
        "checkpoint_variant": Variant(config.distance_type, config.fusion, config.head_hidden_size).name,
        "seconds": time.perf_counter() - started, "variants": summarize(runs, grid), "runs": runs,
        "skipped": [{"path": item.path, "reason": item.reason} for item in skipped],
    }
    if output is not None:
        results["files"] = write_ablation(results, output)
    return results
