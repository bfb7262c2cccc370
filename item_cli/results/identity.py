"""A checkpoint's identity in result rows: what it is (its files' content), never where it lies on a machine.

Rows written with one checkpoint are reused only by runs of the same checkpoint: the same files, whether they
are given as a local folder, a copy of it, or a Hub id (whose downloaded snapshot is hashed the same way).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..cache.keys import file_sha256

# What decides a checkpoint's scores: weights, configs, vocabularies and its remote code (not its model card).
IDENTITY_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".py", ".model", ".cfg")


def checkpoint_folder(model: str, revision: str | None = None) -> Path:
    """The local folder of a checkpoint: the folder given, or the Hub snapshot (downloaded when missing)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, revision=revision))


def checkpoint_identity(folder: Path) -> str:
    """`sha256:` and 16 hex digits over every file that decides the checkpoint's scores (names relative to the
    checkpoint, and contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in IDENTITY_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise ValueError(f"{folder} holds no checkpoint files (config.json, *.safetensors); pass an ITEM checkpoint.")
    for file in files:
        digest.update(f"{file.relative_to(folder).as_posix()}\0{file_sha256(file)}\0".encode())
    return "sha256:" + digest.hexdigest()[:16]


def default_threshold(folder: Path) -> float:
    """The checkpoint's decision threshold, read from its config.json (no network is loaded)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read the checkpoint's config.json ({error}); pass an ITEM checkpoint.") from None
    return float(config.get("decision_threshold", 0.5))
