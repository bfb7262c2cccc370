"""Exact resumption of `item train`: a run is only ever resumed from a complete Trainer checkpoint.

Trainer writes a checkpoint's files one after another, in place; a run killed in the middle leaves a folder
that looks like a checkpoint and is not. `CompleteCheckpoints` records, once Trainer has finished a checkpoint
(weights, optimizer, scheduler, RNG and trainer state), the sha256 of each of its files; `resume_point` takes
the newest checkpoint whose record exists and still matches.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .cache.keys import file_sha256
from .cache.store import atomic_write

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "item-complete.json"


class CompleteCheckpoints(TrainerCallback):
    """Marks each checkpoint complete once Trainer has written all of it (see the module docstring)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if folder.is_dir():
                atomic_write(folder / COMPLETE_MARKER, json.dumps(_file_hashes(folder), indent=1, sort_keys=True))
        return control


def _file_hashes(folder: Path) -> dict:
    return {path.name: file_sha256(path) for path in sorted(folder.iterdir()) if path.is_file() and path.name != COMPLETE_MARKER}


def is_complete(folder: str | Path) -> bool:
    """Whether `folder` is a checkpoint that Trainer finished writing, unchanged since."""
    marker = Path(folder) / COMPLETE_MARKER
    try:
        return json.loads(marker.read_text()) == _file_hashes(Path(folder))
    except (OSError, ValueError):
        return False


def resume_point(args) -> str | None:
    """The checkpoint to resume from for `--resume_from_checkpoint` (`true`: the newest complete one under the
    run's folder; a path: that one, if complete). Raises `ValueError` when there is none."""
    value = getattr(args, "resume_from_checkpoint", None)
    if value in (None, False, "") or str(value).lower() in ("false", "0", "no", "none"):
        return None
    if str(value).lower() in ("true", "1", "yes"):
        work = Path(args.output_dir)
        found = sorted(work.glob(f"{PREFIX_CHECKPOINT_DIR}-*"), key=_step, reverse=True) if work.is_dir() else []
        for folder in found:
            if is_complete(folder):
                return str(folder)
            logger.warning("not resuming from %s: the run was stopped while it was being written", folder)
        raise ValueError(
            f"--resume_from_checkpoint true, but {str(work)!r} holds no complete checkpoint to resume from. "
            "Run without it to train from the start."
        )
    if not is_complete(value):
        raise ValueError(
            f"--resume_from_checkpoint {value!r} is not a complete checkpoint of `item train` (written in full, with "
            "its optimizer, scheduler and RNG states). Pass `true` to take the newest complete one."
        )
    return str(value)


def _step(folder: Path) -> int:
    try:
        return int(folder.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1
