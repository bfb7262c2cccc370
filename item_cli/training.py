"""Train ITEM's head with `transformers.Trainer`, on cached features (default) or on images.

    data (folder or CSV) -> records -> cached frozen work (annotations, and features unless images mode)
        features mode: Trainer on embeddings (the head only runs)
        images mode:   Trainer on images + cached annotations (the backbone runs every step; the only mode
                       with train-time Blur+JPEG augmentation, which changes the pixels the backbone sees)
    -> best epoch by the validation metric -> a complete checkpoint folder, swapped in when complete

Trainer trains `HeadTrainingModel`, which holds the head as its only module: Trainer's checkpoints then hold the
head, optimizer, scheduler and RNG states (exact resumption) and not a copy of the frozen backbone per epoch.
Everything runs unchanged under `accelerate launch`.
"""

from __future__ import annotations

import copy
import logging
import shutil
from dataclasses import dataclass, field

import numpy as np
from torch import nn
from transformers import Trainer

from item_detector.images_item import load_image
from item_detector.processing_item import ItemAnnotations

from .audit import audit_warnings
from .cache import FrozenRows, frozen_rows, process_state
from .checkpoint import load_checkpoint, save_checkpoint, staged_folder
from .data import Skipped, split_train_val, summary
from .public_names import public_name
from .data.perturb import Augmentation
from .evaluation.metrics import choose_threshold, detection_metrics
from .resume import CompleteCheckpoints, resume_point
from .train_checks import WORK_FOLDER, TrainingRecords, check_options, load_training_records, removed_on_failure

logger = logging.getLogger(__name__)

# TrainingArguments defaults for a small head on frozen features; every one can be changed on the command line.
HEAD_TRAINING_DEFAULTS = {
    "num_train_epochs": 10,
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "per_device_train_batch_size": 256,
    "per_device_eval_batch_size": 256,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "logging_strategy": "epoch",
    "load_best_model_at_end": True,
    "metric_for_best_model": "loss",
    "save_total_limit": 1,
    "report_to": "none",
    "remove_unused_columns": False,
    "seed": 0,
    # Processes wait for each other after filling their cache shards; at scale one shard can take hours longer.
    "ddp_timeout": 6 * 3600,
}
IN_MEMORY_BYTES = 4 << 30  # cached features up to this size are gathered into memory once


def training_arguments(output_dir: str, **overrides):
    """`TrainingArguments` with ITEM's head-training defaults (`HEAD_TRAINING_DEFAULTS`) and `overrides`."""
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(output_dir), **{**HEAD_TRAINING_DEFAULTS, **overrides})


class HeadTrainingModel(nn.Module):
    """What Trainer trains: ITEM's head, with the frozen rest of the model held outside the module tree.

    The head is the only submodule, so Trainer saves, loads, optimises and (under DDP) synchronises the head
    alone; the backbone, already in the source checkpoint, is never written into a `checkpoint-N` folder.
    """

    main_input_name = "image_embeds"

    def __init__(self, model):
        super().__init__()
        self.head = model.head
        self.config = model.config  # Trainer reads keys_to_ignore_at_inference from it
        self.frozen = (model,)  # a tuple: not registered as a submodule

    def forward(self, image_embeds=None, text_embeds=None, object_mask=None, pixel_values=None, input_ids=None,
                attention_mask=None, pixel_attention_mask=None, spatial_shapes=None, labels=None):
        return self.frozen[0](
            pixel_values=pixel_values, input_ids=input_ids, object_mask=object_mask, attention_mask=attention_mask,
            pixel_attention_mask=pixel_attention_mask, spatial_shapes=spatial_shapes, image_embeds=image_embeds,
            text_embeds=text_embeds, labels=labels,
        )


# ---------------------------------------------------------------------------------------------- datasets
class FeatureRows:
    """Cached features as a `torch.utils.data.Dataset` that hands out whole batches: the DataLoader calls
    `__getitems__` once per batch (one gather instead of one read per image)."""

    def __init__(self, rows: FrozenRows):
        features = rows.features
        self.arrays = features.take() if features.nbytes <= IN_MEMORY_BYTES else None
        self.features, self.labels = features, rows.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices) -> list:
        import torch

        indices = np.asarray(indices, dtype=np.int64)
        arrays = {k: v[indices] for k, v in self.arrays.items()} if self.arrays is not None else self.features.take(indices)
        batch = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in arrays.items()}
        batch["labels"] = torch.from_numpy(self.labels[indices])
        return [FeatureBatch(batch)]


class FeatureBatch(dict):
    """A batch already stacked by `FeatureRows.__getitems__` (the collator passes it through)."""


def collate_features(rows: list) -> dict:
    if len(rows) == 1 and isinstance(rows[0], FeatureBatch):
        return dict(rows[0])
    import torch

    return {name: torch.stack([row[name] for row in rows]) for name in rows[0]}


@dataclass
class ImageRows:
    """Images and their cached annotations, for training through the backbone."""

    paths: list  # file paths, or data-set rows (`sources.DatasetRow`)
    annotations: list[ItemAnnotations]
    labels: np.ndarray
    augment: bool

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return {"path": self.paths[index], "annotation": self.annotations[index], "label": int(self.labels[index]),
                "augment": self.augment}


class ImageCollator:
    """Rows of `ImageRows` -> model inputs from the images and their cached annotations (no captioner, spaCy or
    detector runs). Rows marked `augment` (the training rows) go through `augmentation` first."""

    def __init__(self, processor, augmentation: Augmentation | None = None, equalize=None):
        self.processor = processor
        self.augmentation = augmentation
        self.equalize = equalize  # before augmentation: the same pixels the cached annotations were computed from

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        images = []
        for row in rows:
            image = load_image(row["path"].read_bytes() if hasattr(row["path"], "read_bytes") else row["path"])
            if self.equalize is not None:
                image = self.equalize(image)
            if self.augmentation is not None and self.augmentation.active and row["augment"]:
                image = self.augmentation.for_worker()(image)
            images.append(image)
        inputs = dict(self.processor.encode(images, [row["annotation"] for row in rows]))
        inputs["labels"] = torch.tensor([row["label"] for row in rows], dtype=torch.long)
        return inputs


def trainer_dataset(rows: FrozenRows, train_on: str, augment: bool):
    if train_on == "features":
        return FeatureRows(rows)
    images = [record.row or record.path for record in rows.records]  # a data-set row's bytes are fetched when loaded
    return ImageRows(images, rows.annotations, rows.labels, augment)


# ---------------------------------------------------------------------------------------------- metrics
def fake_probability(logits, labels=None):
    """Keep only the fake probability of each image for the metrics (not every output tensor)."""
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return logits.float().softmax(dim=-1)[:, 1]


def metrics_function(threshold: float):
    """`compute_metrics` for Trainer: accuracies at `threshold`, AP and ROC-AUC of the fake probability."""

    def compute(prediction):
        scores = np.asarray(prediction.predictions, dtype=np.float64).reshape(-1)
        labels = np.asarray(prediction.label_ids).reshape(-1)
        found = detection_metrics(labels, scores, threshold)
        return {key: found[key] for key in ("acc", "acc_real", "acc_fake", "ap", "roc_auc")}

    return compute


# ---------------------------------------------------------------------------------------------- training
@dataclass
class TrainingData:
    """The cached rows a run trains and validates on, and the files left out."""

    train: FrozenRows
    val: FrozenRows
    val_source: str
    skipped: list[Skipped] = field(default_factory=list)


def prepare_data(model, processor, listed: TrainingRecords, val_data, val_fraction, train_on, cache, split, seed):
    """Records -> cached rows -> (train, validation): GenImage's own val folders when the data has both (and no
    `split` was chosen), a separate validation set, or a stratified `val_fraction` by generator and label."""
    records, skipped = listed.records, list(listed.skipped)
    for warning in audit_warnings(records, cache.get("perturbation")) if cache["state"].is_main_process else []:
        logger.warning(warning)
    rows = frozen_rows(records, processor, model, features=train_on == "features", **cache)
    skipped += rows.skipped
    if len(rows) == 0:
        raise ValueError("None of the training images could be read; see the skipped files above.")
    if listed.val_records is not None:
        val = frozen_rows(listed.val_records, processor, model, features=train_on == "features", **cache)
        return TrainingData(rows, val, public_name(val_data), skipped + val.skipped)
    splits = set(rows.column("split"))
    if split is None and {"train", "val"} <= splits:
        names = rows.column("split")
        train = rows.select([i for i, name in enumerate(names) if name == "train"])
        val = rows.select([i for i, name in enumerate(names) if name == "val"])
        return TrainingData(train, val, "the data's own val folders", skipped)
    train_index, val_index = split_train_val(rows.records, val_fraction, seed)
    how = f"a stratified {val_fraction:.0%} of the training data (seed {seed})"
    return TrainingData(rows.select(train_index), rows.select(val_index), how, skipped)


def train(
    model_dir,
    data,
    training_args,
    val_data=None,
    val_fraction: float = 0.1,
    train_on: str = "features",
    augmentation: Augmentation | None = None,
    cache_dir=None,
    batch_size: int = 16,
    storage_dtype: str = "float16",
    decode_workers: int = 2,
    decode_timeout_s: float = 60.0,
    layout: str = "auto",
    split: str | None = None,
    generator: str | None = None,
    calibrate: str | None = None,
    target_fpr: float | None = None,
    keep_checkpoints: bool = False,
    revision: str | None = None,
    equalize=None,
    data_options=None,
) -> dict:
    """Train the head of the ITEM checkpoint `model_dir` on `data` (labelled; a folder, manifest or data set read
    with `data_options`) and write a complete checkpoint to `training_args.output_dir`, replacing what is there
    only once it is complete. Trainer's checkpoints go to `output_dir/trainer-checkpoints` (resumable with
    `resume_from_checkpoint="true"`), removed at the end unless `keep_checkpoints`. Validation: `val_data`, else
    see `prepare_data`. `train_on`: "features" (cached) or "images" (for `augmentation`). `calibrate`: None,
    "balanced" or "fpr" (with `target_fpr`) chooses the threshold on the validation set.
    Returns a dict with the output folder, validation metrics, calibration, data sizes and skipped files.
    """
    output_dir = check_options(model_dir, training_args, train_on, augmentation, calibrate, target_fpr, revision)
    listed = load_training_records(data, val_data, layout, split, generator, data_options)  # before any network runs
    training_args.device  # noqa: B018 - sets up the processes once, with TrainingArguments' settings
    state = process_state()
    model, processor = load_checkpoint(model_dir, revision)
    cache = dict(cache_dir=cache_dir, batch_size=batch_size, storage_dtype=storage_dtype, state=state,
                 perturbation=equalize, decode_workers=decode_workers, decode_timeout_s=decode_timeout_s)
    prepared = prepare_data(model, processor, listed, val_data, val_fraction, train_on, cache, split,
                            training_args.seed)
    args = copy.copy(training_args)  # the caller's arguments keep naming the final folder
    args.output_dir, args.remove_unused_columns = str(output_dir / WORK_FOLDER), False
    with removed_on_failure(output_dir):
        trainer = build_trainer(model, processor, prepared, args, train_on, augmentation, equalize)
        trainer.train(resume_from_checkpoint=resume_point(args))
        prediction = trainer.predict(trainer_dataset(prepared.val, train_on, augment=False), metric_key_prefix="eval")
        scores = np.asarray(prediction.predictions, dtype=np.float64).reshape(-1)
        labels = np.asarray(prediction.label_ids).reshape(-1)
        calibration = calibrate_on_validation(model, labels, scores, calibrate, target_fpr, prepared.val_source)
        results = validation_results(labels, scores, prepared.val, float(model.config.decision_threshold))
        description = training_description(model_dir, data, prepared, train_on, augmentation, args, state,
                                           calibration, equalize)
        if state.is_main_process:
            write_trained(model, processor, output_dir, description, results, keep_checkpoints)
        state.wait_for_everyone()
    return {
        "output_dir": str(output_dir), "results": results, "calibration": calibration, "train_images": len(prepared.train),
        "val_images": len(prepared.val), "skipped": [{"path": item.path, "reason": item.reason} for item in prepared.skipped],
        "log_history": trainer.state.log_history,
    }


def write_trained(model, processor, output_dir, description: dict, results: dict, keep_checkpoints: bool) -> None:
    """The trained checkpoint into `output_dir`, swapped in once complete (with Trainer's checkpoints if kept)."""
    with staged_folder(output_dir, (WORK_FOLDER,)) as folder:
        save_checkpoint(model, processor, folder, training=description, results=results)
        if keep_checkpoints and (output_dir / WORK_FOLDER).is_dir():
            shutil.move(str(output_dir / WORK_FOLDER), str(folder / WORK_FOLDER))


def calibrate_on_validation(model, labels, scores, method: str | None, target_fpr, val_source: str) -> dict | None:
    """With `method`, choose the decision threshold on the validation scores and store it in the model's config."""
    model.config.unsure_band = model.config.unsure_calibration = None  # chosen for the old head: stale now
    if not method:
        return None
    calibration = {**choose_threshold(labels, scores, method, target_fpr), "data": f"validation split: {val_source}"}
    model.config.decision_threshold, model.config.threshold_calibration = calibration["threshold"], calibration
    return calibration


def build_trainer(model, processor, prepared: TrainingData, args, train_on: str, augmentation, equalize=None) -> Trainer:
    """Trainer on the head alone, validating every epoch, marking its complete checkpoints for exact resumption."""
    if train_on == "images":
        model.to(args.device)  # the backbone runs every step; Trainer only moves the head
    return Trainer(
        model=HeadTrainingModel(model),
        args=args,
        train_dataset=trainer_dataset(prepared.train, train_on, augment=True),
        eval_dataset=trainer_dataset(prepared.val, train_on, augment=False),
        data_collator=collate_features if train_on == "features" else ImageCollator(processor, augmentation, equalize),
        compute_metrics=metrics_function(float(model.config.decision_threshold)),
        preprocess_logits_for_metrics=fake_probability,
        callbacks=[CompleteCheckpoints()],
    )


def validation_results(labels: np.ndarray, scores: np.ndarray, val: FrozenRows, threshold: float) -> dict:
    """The model card's validation table: overall metrics, then ACC / AP per generator when there are several."""
    results = {"validation_images": int(labels.size)}
    overall = detection_metrics(labels, scores, threshold)
    results.update({key: overall[key] for key in ("acc", "acc_real", "acc_fake", "ap", "roc_auc", "oracle_acc")})
    results["decision_threshold"] = threshold
    generators = np.asarray(val.column("generator"))
    if len(set(generators.tolist())) > 1:
        for name in sorted(set(generators.tolist())):
            mask = generators == name
            found = detection_metrics(labels[mask], scores[mask], threshold)
            results[f"acc_{name}"], results[f"ap_{name}"] = found["acc"], found["ap"]
    return results


def training_description(model_dir, data, prepared: TrainingData, train_on, augmentation, args, state, calibration,
                         equalize=None) -> dict:
    """The model card's training section, as data."""
    counts = ", ".join(
        f"{generator} {'/'.join(f'{n} {label}' for label, n in sorted(labels.items()))}"
        for generator, labels in sorted(summary(prepared.train.records).items())
    )
    return {
        "source checkpoint": public_name(model_dir),  # a Hub id, or a folder's name: no path
        "training data": f"{public_name(data)} ({len(prepared.train)} images: {counts})",
        "validation data": f"{prepared.val_source} ({len(prepared.val)} images)",
        "trained on": "cached frozen features" if train_on == "features" else "images (features computed every step)",
        "augmentation": augmentation.describe() if augmentation is not None and augmentation.active else "none",
        "equalize": "none" if equalize is None else equalize.name,
        "epochs": args.num_train_epochs,
        "learning rate": args.learning_rate,
        "batch size per device": args.per_device_train_batch_size,
        "devices": state.num_processes,
        "seed": args.seed,
        "best checkpoint by": f"validation {args.metric_for_best_model}" if args.load_best_model_at_end else "last epoch",
        "decision threshold": (
            f"{calibration['threshold']:.4f}, calibrated ({calibration['method']}"
            f"{'' if 'target_fpr' not in calibration else ', target FPR ' + str(calibration['target_fpr'])})"
            if calibration else "not calibrated"
        ),
    }

