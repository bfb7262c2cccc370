"""Train ITEM's head with `transformers.Trainer`, on cached features (default) or on images.

    data (folder or CSV) -> load_dataset -> stage 1 cache (captions, nouns, boxes)
        features mode: -> stage 2 cache (backbone embeddings) -> Trainer on embeddings (the head only runs)
        images mode:   -> Trainer on images + stored annotations (the backbone runs every step; the only
                          mode with train-time Blur+JPEG augmentation, which changes the pixels CLIP sees)
    -> best checkpoint by the validation metric -> a complete checkpoint folder (weights, processor,
       captioner/ and detector/, the four remote-code files, a model card with the data and the results)

Everything here runs unchanged under `accelerate launch` (one process per GPU): the caches shard across the
processes, Trainer runs data-parallel, and the main process writes the checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import shutil
from pathlib import Path

import numpy as np
from torch.nn.modules.module import _IncompatibleKeys
from transformers import Trainer

from item_detector.modeling_item import ItemForImageClassification
from item_detector.processing_item import ItemProcessor, load_image

from .build import REMOTE_CODE_FILES, ROOT
from .cache import FEATURE_DTYPES, _state, cache_annotations, cache_features, drop_unreadable, encode_rows
from .data import load_dataset, require_labels, split_train_val, summary
from .metrics import choose_threshold, detection_metrics
from .model_card import write_model_card
from .perturb import Augmentation

TRAIN_ON = ("features", "images")
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
    "save_only_model": True,
    "report_to": "none",
    "remove_unused_columns": False,
    "seed": 0,
    # Processes wait for each other after filling their cache shards; at scale one shard can take hours longer.
    "ddp_timeout": 6 * 3600,
}
WORK_FOLDER = "trainer-checkpoints"


def training_arguments(output_dir: str, **overrides):
    """`TrainingArguments` with ITEM's head-training defaults (`HEAD_TRAINING_DEFAULTS`) and `overrides`."""
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(output_dir), **{**HEAD_TRAINING_DEFAULTS, **overrides})


# ---------------------------------------------------------------------------------------------- collators
class FeatureCollator:
    """Rows of the feature cache -> `image_embeds`, `text_embeds`, `object_mask`, `labels` tensors."""

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        if len(rows) == 1 and isinstance(rows[0], _FeatureBatch):
            return dict(rows[0])
        return {
            "image_embeds": torch.from_numpy(np.stack([row["image_embeds"] for row in rows])),
            "text_embeds": torch.from_numpy(np.stack([row["text_embeds"] for row in rows])),
            "object_mask": torch.from_numpy(np.stack([row["object_mask"] for row in rows]).astype(bool)),
            "labels": torch.tensor([int(row["label"]) for row in rows], dtype=torch.long),
        }


class ImageCollator:
    """Rows of the annotation cache -> model inputs from the images and their stored annotations.

    Rows whose `augment` column is true (the training rows) go through `augmentation` first. No captioner,
    spaCy or detector runs: the stored captions, nouns and boxes are used.
    """

    def __init__(self, processor, augmentation: Augmentation | None = None):
        self.processor = processor
        self.augmentation = augmentation
        self._worker = None

    def _augment(self, image):
        import torch.utils.data

        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker is not None else -1
        if worker_id != self._worker:  # each data-loader worker draws its own sequence
            self._worker = worker_id
            self.augmentation._rng = random.Random(self.augmentation.seed + 1000 * (worker_id + 1))
        return self.augmentation(image)

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        images = []
        for row in rows:
            image = load_image(row["path"])
            if self.augmentation is not None and self.augmentation.active and row.get("augment"):
                image = self._augment(image)
            images.append(image)
        batch = {key: [row[key] for row in rows] for key in ("caption", "nouns", "boxes")}
        inputs = encode_rows(self.processor, images, batch)
        inputs["labels"] = torch.tensor([int(row["label"]) for row in rows], dtype=torch.long)
        return inputs


def _fake_probability(logits, labels=None):
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


class HeadTrainer(Trainer):
    """A `Trainer` whose `checkpoint-N` folders hold only the trainable weights (the head).

    The frozen backbone is already in the source checkpoint: saving CLIP ViT-L (1.7 GB) at every epoch would
    cost more than training the head. Loading the best checkpoint back fills in the head only (the backbone
    in memory never changed), and the final folder is written in full by `save_checkpoint`.
    """

    def _frozen(self) -> set:
        model = self.accelerator.unwrap_model(self.model)
        trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        return {name for name in model.state_dict() if name not in trainable}

    def _save(self, output_dir=None, state_dict=None):
        if state_dict is None:
            frozen = self._frozen()
            model = self.accelerator.unwrap_model(self.model)
            state_dict = {name: value for name, value in model.state_dict().items() if name not in frozen}
        super()._save(output_dir, state_dict)

    def _issue_warnings_after_load(self, load_result):
        frozen = self._frozen()
        missing = [name for name in load_result.missing_keys if name not in frozen]
        super()._issue_warnings_after_load(_IncompatibleKeys(missing, load_result.unexpected_keys))


# ---------------------------------------------------------------------------------------------- checkpoint
def read_card_fields(folder: str | Path) -> dict:
    """backbone, captioner, detector and spaCy names from a checkpoint's model card (as `item build` writes it)."""
    try:
        text = (Path(folder) / "README.md").read_text()
    except OSError:
        return {}
    patterns = {
        "backbone": r"\| backbone \(image and text embeddings\) \| `([^`]*)`",
        "captioner": r"\| captioner \| `([^`]*)`",
        "detector": r"\| open-vocabulary detector \| `([^`]*)`",
        "spacy_model": r"\| noun extraction \| spaCy `([^`]*)`",
    }
    found = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, text)
        if match:
            found[key] = match.group(1)
    return found


def save_checkpoint(model, processor, source: str | Path, output_dir: str | Path, training=None, results=None) -> Path:
    """Write a complete, loadable checkpoint: weights and config, processor, bundled captioner/ and detector/
    (copied from `source`), the four remote-code files and a model card with `training` and `results`."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    processor.save_pretrained(output)  # copies the bundled captioner/ and detector/ along
    for name in REMOTE_CODE_FILES:
        shutil.copyfile(ROOT / name, output / name)
    fields = {
        "backbone": getattr(model.config.backbone_config, "_name_or_path", "") or "unknown",
        "captioner": processor.captioner_name_or_path,
        "detector": processor.detector_name_or_path,
        "spacy_model": processor.spacy_model,
        **read_card_fields(source),
    }
    write_model_card(output, training=training, results=results, **fields)
    return output


# ---------------------------------------------------------------------------------------------- training
def _load(model_dir: str | Path, revision=None):
    processor = ItemProcessor.from_pretrained(str(model_dir), revision=revision, trust_remote_code=True)
    model = ItemForImageClassification.from_pretrained(str(model_dir), revision=revision)
    return model, processor


def split_for_validation(dataset, val_fraction: float = 0.1, split: str | None = None, seed: int = 0):
    """(train, val, how) from one dataset: GenImage's own train/val folders when it has both (and no `split`
    was chosen), else a stratified `val_fraction` by generator and label. Run it on the cached dataset, so that
    another split of the same data reuses the same cache."""
    splits = set(dataset["split"])
    if split is None and {"train", "val"} <= splits:
        names = dataset["split"]
        train = dataset.select([i for i, name in enumerate(names) if name == "train"])
        val = dataset.select([i for i, name in enumerate(names) if name == "val"])
        return train, val, "the data's own val folders"
    train, val = split_train_val(dataset, val_fraction, seed)
    return train, val, f"a stratified {val_fraction:.0%} of the training data (seed {seed})"


def cached_for_training(dataset, processor, model, train_on, cache_dir, batch_size, dtype, errors, state=None):
    """The dataset as the Trainer reads it: stage 2 features, or stage 1 annotations for images mode."""
    annotated = drop_unreadable(cache_annotations(dataset, processor, cache_dir, batch_size, state=state), errors)
    if len(annotated) == 0:
        raise ValueError("None of the images could be read; see the skipped files above.")
    if train_on == "images":
        return annotated
    return cache_features(annotated, processor, model, cache_dir, batch_size, dtype=dtype, state=state)


class FeatureTensors:
    """Cached features held in memory as tensors (in their storage dtype), fetched a batch at a time.

    A `torch.utils.data.Dataset` whose `__getitems__` lets the DataLoader take a whole batch with one index
    operation instead of one Arrow read per image.
    """

    def __init__(self, dataset, chunk: int = 4096):
        import torch

        image, text = _array_column(dataset, "image_embeds"), _array_column(dataset, "text_embeds")
        if image is None or text is None:  # not the Arrow layout expected: the slower, general way
            view = dataset.with_format("numpy", columns=["image_embeds", "text_embeds"])
            dtype = np.dtype(dataset.features["image_embeds"].dtype)
            shape = (len(dataset), *dataset.features["image_embeds"].shape)
            image, text = np.empty(shape, dtype=dtype), np.empty(shape, dtype=dtype)
            for start in range(0, len(dataset), chunk):
                rows = view[start : start + chunk]
                stop = start + len(rows["image_embeds"])
                image[start:stop], text[start:stop] = rows["image_embeds"], rows["text_embeds"]
        self.image_embeds, self.text_embeds = torch.from_numpy(image), torch.from_numpy(text)
        mask = _array_column(dataset, "object_mask")
        if mask is None:
            mask = np.asarray(dataset["object_mask"], dtype=bool).reshape(len(dataset), -1)
        self.object_mask = torch.from_numpy(mask.astype(bool))
        self.labels = torch.as_tensor(np.asarray(dataset["label"]), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices):
        import torch

        index = torch.as_tensor(indices, dtype=torch.long)
        return [_FeatureBatch(self.image_embeds[index], self.text_embeds[index], self.object_mask[index], self.labels[index])]


def _array_column(dataset, name: str) -> np.ndarray | None:
    """A fixed-shape column (`Array2D`, or a `List` with a length) as one numpy array in its storage dtype,
    straight from Arrow (no per-row formatting); None when it is not stored the way this expects."""
    feature = dataset.features[name]
    shape = tuple(getattr(feature, "shape", None) or (getattr(feature, "length", -1),))
    try:
        if min(shape) < 0:
            return None
        parts = []
        for chunk in dataset.data.column(name).chunks:
            values = getattr(chunk, "storage", chunk)
            for _ in shape:
                values = values.flatten()
            parts.append(values.to_numpy(zero_copy_only=False))
        array = np.concatenate(parts).reshape(-1, *shape)
        indices = getattr(dataset, "_indices", None)  # a `select`ed view of the table
        if indices is not None:
            array = array[indices.column(0).to_numpy()]
        return array if len(array) == len(dataset) else None
    except (AttributeError, ValueError, TypeError):
        return None


class _FeatureBatch(dict):
    """A batch already stacked by `FeatureTensors.__getitems__` (the collator passes it through)."""

    def __init__(self, image_embeds, text_embeds, object_mask, labels):
        super().__init__(image_embeds=image_embeds, text_embeds=text_embeds, object_mask=object_mask, labels=labels)


IN_MEMORY_BYTES = 4 << 30  # cached features up to this size are trained on from memory


def _feature_bytes(dataset) -> int:
    feature = dataset.features["image_embeds"]
    return 2 * len(dataset) * int(np.prod(feature.shape)) * np.dtype(feature.dtype).itemsize


def _trainer_view(dataset, train_on: str, augment: bool):
    if train_on == "features":
        if _feature_bytes(dataset) <= IN_MEMORY_BYTES:
            return FeatureTensors(dataset)
        return dataset.with_format("numpy", columns=["image_embeds", "text_embeds", "object_mask", "label"])
    view = dataset.select_columns(["path", "caption", "nouns", "boxes", "label"])
    return view.add_column("augment", [augment] * len(view))


def train(
    model_dir,
    data,
    training_args,
    val_data=None,
    val_fraction: float = 0.1,
    train_on: str = "features",
    augmentation: Augmentation | None = None,
    cache_dir=None,
    cache_batch_size: int = 16,
    feature_dtype: str = "float16",
    layout: str = "auto",
    split: str | None = None,
    generator: str | None = None,
    calibrate: str | None = None,
    target_fpr: float | None = None,
    keep_checkpoints: bool = False,
    revision: str | None = None,
    errors: list | None = None,
) -> dict:
    """Train the head of the ITEM checkpoint `model_dir` on `data` and write the result to `training_args.output_dir`.

    Args:
        model_dir: the checkpoint to start from (`item build` output or an earlier training run).
        data: a CNNDetection-style or GenImage-style folder, or a CSV manifest (labels required).
        training_args: `TrainingArguments` (see `training_arguments` for ITEM's defaults); `output_dir` is the
            final checkpoint folder; Trainer's intermediate checkpoints go to `output_dir/trainer-checkpoints`,
            removed at the end unless `keep_checkpoints`.
        val_data: a separate validation folder / CSV; else see `split_for_validation`.
        train_on: "features" (cached embeddings, the default) or "images" (needed for augmentation).
        augmentation: train-time Blur+JPEG (`Augmentation`), images mode only.
        calibrate: None, "balanced" or "fpr" (with `target_fpr`): choose the decision threshold on the validation
            set and store it in the config.

    Returns:
        dict with the output folder, validation metrics, calibration (if any) and data sizes.
    """
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on={train_on!r}; choose one of {TRAIN_ON}.")
    if feature_dtype not in FEATURE_DTYPES:
        raise ValueError(f"feature_dtype={feature_dtype!r}; choose one of {FEATURE_DTYPES}.")
    if augmentation is not None and augmentation.active and train_on != "images":
        raise ValueError(
            "Train-time augmentation changes the pixels the backbone sees, so it needs train_on='images' "
            "(--train-on images); cached features are computed once from the clean images."
        )
    output_dir = Path(training_args.output_dir).expanduser().resolve()
    if Path(model_dir).expanduser().exists() and Path(model_dir).expanduser().resolve() == output_dir:
        raise ValueError(f"output_dir {str(output_dir)!r} is the model being trained; write the result to a new folder.")
    training_args.device  # noqa: B018 - sets up the processes once, with TrainingArguments' settings
    state = _state()

    model, processor = _load(model_dir, revision)
    full = load_dataset(data, layout=layout, split=split, generator=generator, errors=errors)
    require_labels(full, "training")
    cache = dict(processor=processor, model=model, train_on=train_on, cache_dir=cache_dir, batch_size=cache_batch_size,
                 dtype=feature_dtype, errors=errors, state=state)
    full = cached_for_training(full, **cache)
    if val_data is not None:
        val_set = load_dataset(val_data, layout=layout, generator=generator, errors=errors)
        require_labels(val_set, "validation")
        train_set, val_set, val_source = full, cached_for_training(val_set, **cache), str(val_data)
    else:
        train_set, val_set, val_source = split_for_validation(full, val_fraction, split, training_args.seed)

    threshold = float(model.config.decision_threshold)
    work = output_dir / WORK_FOLDER
    args = copy.copy(training_args)  # the caller's arguments keep naming the final folder
    args.output_dir = str(work)
    args.remove_unused_columns = False
    collator = FeatureCollator() if train_on == "features" else ImageCollator(processor, augmentation)
    trainer = HeadTrainer(
        model=model,
        args=args,
        train_dataset=_trainer_view(train_set, train_on, augment=True),
        eval_dataset=_trainer_view(val_set, train_on, augment=False),
        data_collator=collator,
        compute_metrics=metrics_function(threshold),
        preprocess_logits_for_metrics=_fake_probability,
    )
    trainer.train(resume_from_checkpoint=_resume_point(args))
    prediction = trainer.predict(_trainer_view(val_set, train_on, augment=False), metric_key_prefix="eval")
    scores = np.asarray(prediction.predictions, dtype=np.float64).reshape(-1)
    labels = np.asarray(prediction.label_ids).reshape(-1)
    model = trainer.model
    calibration = None
    if calibrate:
        calibration = choose_threshold(labels, scores, calibrate, target_fpr)
        calibration["data"] = f"validation split: {val_source}"
        model.config.decision_threshold = calibration["threshold"]
        model.config.threshold_calibration = calibration
    final_threshold = float(model.config.decision_threshold)
    results = {"validation images": int(labels.size)}
    overall = detection_metrics(labels, scores, final_threshold)
    results.update({key: overall[key] for key in ("acc", "acc_real", "acc_fake", "ap", "roc_auc", "oracle_acc")})
    results["decision threshold"] = final_threshold
    generators = np.asarray(val_set["generator"])
    if len(set(generators.tolist())) > 1:
        for name in sorted(set(generators.tolist())):
            mask = generators == name
            found = detection_metrics(labels[mask], scores[mask], final_threshold)
            results[f"{name}: acc / ap"] = f"{found['acc']:.4f} / {found['ap']:.4f}"
    training = {
        "source checkpoint": str(model_dir),
        "training data": f"{data} ({len(train_set)} images: {_counts(summary(train_set))})",
        "validation data": f"{val_source} ({len(val_set)} images)",
        "trained on": "cached frozen features" if train_on == "features" else "images (features computed every step)",
        "augmentation": augmentation.describe() if augmentation is not None and augmentation.active else "none",
        "epochs": args.num_train_epochs,
        "learning rate": args.learning_rate,
        "batch size per device": args.per_device_train_batch_size,
        "devices": state.num_processes,
        "seed": args.seed,
        "best checkpoint by": f"validation {args.metric_for_best_model}" if args.load_best_model_at_end else "last epoch",
        "decision threshold": (
            f"{final_threshold:.4f}, calibrated ({calibrate}{'' if target_fpr is None else f', target FPR {target_fpr}'})"
            if calibration else f"{final_threshold:.4f} (not calibrated)"
        ),
    }
    if state.is_main_process:
        save_checkpoint(model, processor, model_dir, output_dir, training=training, results=results)
        if not keep_checkpoints:
            shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    return {
        "output_dir": str(output_dir),
        "results": results,
        "calibration": calibration,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "log_history": trainer.state.log_history,
    }


def _resume_point(args):
    """`--resume_from_checkpoint true` resumes from the last Trainer checkpoint, a path from that one."""
    value = getattr(args, "resume_from_checkpoint", None)
    if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
        return True
    return value or None


def _counts(counts: dict) -> str:
    return ", ".join(
        f"{generator} {'/'.join(f'{n} {label}' for label, n in sorted(labels.items()))}"
        for generator, labels in sorted(counts.items())
    )


def calibrate_checkpoint(model_dir: str | Path, labels, scores, method: str, target_fpr: float | None, data: str) -> dict:
    """Choose the threshold on (labels, scores), store it in `model_dir/config.json` and its model card."""
    calibration = choose_threshold(labels, scores, method, target_fpr)
    calibration["data"] = str(data)
    folder = Path(model_dir)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["decision_threshold"] = calibration["threshold"]
    config["threshold_calibration"] = calibration
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    _update_card_threshold(folder, calibration)
    return calibration


def _update_card_threshold(folder: Path, calibration: dict) -> None:
    card = folder / "README.md"
    if not card.is_file():
        return
    text = card.read_text()
    value = f"{calibration['threshold']:.4f}".rstrip("0").rstrip(".")
    text = re.sub(r"\(threshold [0-9.eE+-]+\)", f"(threshold {value})", text)
    text = re.sub(r"`decision_threshold = [0-9.eE+-]+`\)(, calibrated on validation data)?",
                  f"`decision_threshold = {value}`), calibrated on validation data", text)
    section = (
        "\n## Decision threshold\n\n"
        f"`{value}`, chosen by `item calibrate` ({calibration['method']}"
        + (f", target false-positive rate {calibration['target_fpr']}" if "target_fpr" in calibration else "")
        + f") on {calibration['data']}: {calibration['n_real']} real and {calibration['n_fake']} fake images; there "
        f"FPR {calibration['fpr']:.4f}, TPR {calibration['tpr']:.4f}, balanced accuracy "
        f"{calibration['balanced_accuracy']:.4f}.\n"
    )
    text = re.sub(r"\n## Decision threshold\n.*?(?=\n## |\Z)", "", text, flags=re.S)
    marker = "\n## Citation"
    text = text.replace(marker, section + marker, 1) if marker in text else text + section
    card.write_text(text)


def nan_to_none(value):
    """JSON-friendly numbers: NaN becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_to_none(v) for v in value]
    return value
