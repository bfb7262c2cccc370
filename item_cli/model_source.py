"""Is `--model` something that can be loaded? Checked at once, before any work, by every command that loads a
checkpoint (`item_cli.checkpoint.load_checkpoint`, `item detect`, `item serve`, `item train` ...).

A mistyped folder would otherwise reach the Hub client, which answers "Repo id must be in the form
'repo_name'..." or, offline, retries for half a minute before it gives up.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import is_offline_mode, try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id


def looks_like_a_path(name: str) -> bool:
    """A value only a path can be: ./x, ../x, /x, ~/x, a Windows drive, more than one `/`, or not a valid Hub id."""
    if name.startswith((".", "/", "~", "\\")) or (len(name) > 1 and name[1] == ":") or name.count("/") > 1:
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def check_model_source(model: str | os.PathLike, revision: str | None = None) -> None:
    """Raise a `ValueError` that names the problem when `model` is neither an ITEM checkpoint folder nor a Hub id
    this machine can load: "no such checkpoint folder: X" for a missing path, a folder without config.json, or a
    Hub id while the machine is offline (HF_HUB_OFFLINE=1) and the Hub cache holds no copy of it."""
    name = os.fspath(model)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{name} is a folder but not a checkpoint (it has no config.json); pass the folder "
                             "item build or item train wrote.")
        return
    if path.exists():
        raise ValueError(f"{name} is a file; --model takes a checkpoint folder or a Hub id.")
    if looks_like_a_path(name):
        raise ValueError(f"no such checkpoint folder: {name}")
    if is_offline_mode() and not isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        raise ValueError(f"{name} is not a local folder, and this machine is offline (HF_HUB_OFFLINE=1) with no copy of "
                         "it in the Hub cache: pass a checkpoint folder, or download it once while online.")
