"""What `item train` checks before any work: its options, the checkpoint, the data's labels and classes; and the
clean-up of a run that fails (nothing left behind but what a resumed run had before)."""

from __future__ import annotations

import contextlib
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import check_replaceable
from .data import FAKE, REAL, Skipped, display_path, load_records, require_labels
from .evaluation.metrics import THRESHOLD_METHODS
from .model_source import check_model_source

TRAIN_ON = ("features", "images")
WORK_FOLDER = "trainer-checkpoints"


def check_options(model_dir, training_args, train_on: str, augmentation, calibrate=None, target_fpr=None,
                  revision=None) -> Path:
    """The final folder, after refusing what cannot work, before any hour of work is spent (and before any file
    is listed or any network loaded)."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"--train-on {train_on}: choose one of {', '.join(TRAIN_ON)}.")
    if augmentation is not None and augmentation.active and train_on != "images":
        raise ValueError(
            "Train-time augmentation (--blur-prob, --jpeg-prob) changes the pixels the backbone sees, so it needs "
            "--train-on images; cached features are computed once from the clean images."
        )
    if calibrate not in (None, *THRESHOLD_METHODS):
        raise ValueError(f"--calibrate {calibrate}: choose none or one of {', '.join(THRESHOLD_METHODS)}.")
    if calibrate == "fpr" and target_fpr is None:
        raise ValueError("--calibrate fpr needs --target-fpr, e.g. --target-fpr 0.05 (at most 5 % of the real "
                         "validation images called fake).")
    if target_fpr is not None and calibrate != "fpr":
        raise ValueError(f"--target-fpr {target_fpr} applies to --calibrate fpr only; add it, or drop --target-fpr.")
    if target_fpr is not None and not 0.0 < target_fpr < 1.0:
        raise ValueError(f"--target-fpr {target_fpr}: pass a share of the real images in (0, 1), e.g. 0.05.")
    if training_args.output_dir is None:
        raise ValueError("item train needs --output DIR: the folder the trained checkpoint is written to.")
    check_model_source(model_dir, revision)
    output_dir = Path(training_args.output_dir).expanduser().absolute()
    if Path(model_dir).expanduser().exists() and Path(model_dir).expanduser().absolute() == output_dir:
        raise ValueError(f"--output {display_path(output_dir)} is the model being trained; write the result to a "
                         "new folder.")
    check_replaceable(output_dir, (WORK_FOLDER,))
    return output_dir


@dataclass
class TrainingRecords:
    """The files of a run, listed and checked before any network runs."""

    records: list
    val_records: list | None
    skipped: list[Skipped]


def load_training_records(data, val_data, layout, split, generator, data_options=None) -> TrainingRecords:
    """List and check the training (and separate validation) data: labelled, both classes present.
    `data_options`: how to read data sets (`SourceOptions`), the same for both."""
    records, skipped = load_records(data, layout=layout, split=split, generator=generator, options=data_options)
    require_labels(records, "training")
    require_both_classes(records, "training data", "--data")
    val_records = None
    if val_data is not None:
        val_records, val_skipped = load_records(val_data, layout=layout, generator=generator, options=data_options)
        require_labels(val_records, "validation")
        require_both_classes(val_records, "validation data", "--val-data")
        skipped = skipped + val_skipped
    return TrainingRecords(records, val_records, skipped)


def require_both_classes(records, what: str, option: str) -> None:
    """A `ValueError` unless `records` hold real and fake images: a head learns one against the other, and AP,
    ROC-AUC and a threshold mean nothing on one class."""
    counts = Counter(record.label for record in records)
    if not counts[REAL] or not counts[FAKE]:
        found = ", ".join(f"{counts[label]} {name}" for label, name in ((REAL, "real"), (FAKE, "fake")))
        raise ValueError(f"the {what} ({option}) holds one class only ({found}); it needs real and fake images.")


@contextlib.contextmanager
def removed_on_failure(output_dir: Path):
    """A run that fails (an error, not Ctrl-C) leaves nothing behind: the Trainer checkpoints it started (a
    resumed run's earlier ones stay), and the output folder when this run created it and it is left empty.
    Ctrl-C keeps the complete checkpoints, from which `--resume-from-checkpoint true` goes on."""
    work = output_dir / WORK_FOLDER
    existed, work_existed = output_dir.exists(), work.exists()
    try:
        yield
    except Exception:
        if not work_existed:
            shutil.rmtree(work, ignore_errors=True)
        if not existed and output_dir.is_dir() and not any(output_dir.iterdir()):
            output_dir.rmdir()
        raise
