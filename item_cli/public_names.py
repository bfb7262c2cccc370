"""What anything we write (a checkpoint, its card, a page, a cache listing) calls a component or a source.

Never a path of the machine that made it. A component from the Hub is recorded as its id and revision (the commit
hash when the Hub cache knows it); one from a local folder as the folder's name and the sha256 of its weight files,
or as the Hub id the user names for it (`item build --backbone-id ORG/NAME`):

    {"id": "openai/clip-vit-large-patch14", "revision": "32bd64288804d66eefd0ccbe215aa642df71cc41"}
    {"name": "my-captioner", "sha256": {"model.safetensors": "9f2c..."}}
    {"id": "ORG/NAME", "sha256": {"model.safetensors": "9f2c..."}}

Checkpoints written before this record carried plain strings (a Hub id or a path); `component_text` and
`component_hub_id` read both.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .hashing import file_sha256

# What the Hub accepts as a model id: NAME or ORG/NAME, letters, digits, '-', '_', '.', at most 96 characters, no
# '--' or '..', not starting or ending with '-' or '.'.
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"^(?:{_HUB_PART}/)?{_HUB_PART}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5")


def is_hub_id(text: str) -> bool:
    """Whether `text` has the form of a Hub model id (`NAME` or `ORG/NAME`)."""
    return (isinstance(text, str) and len(text) <= 96 and bool(_HUB_ID.match(text))
            and "--" not in text and ".." not in text)


def check_hub_id(text: str, option: str) -> str:
    """`text` if it is a Hub model id, else `ValueError` naming `option` and the form expected."""
    if not is_hub_id(text):
        raise ValueError(f"{option} {text!r} is not a Hub model id; pass NAME or ORG/NAME (e.g. openai/clip-vit-base-patch32).")
    return text


def is_local(name_or_path: str | os.PathLike) -> bool:
    """Whether `name_or_path` names something on this machine (transformers prefers a local folder to a Hub id of
    the same spelling) or is spelled as a path."""
    text = os.fspath(name_or_path)
    return Path(text).expanduser().exists() or os.path.isabs(text) or text.startswith(("./", "../", "~"))


def public_name(name_or_path) -> str:
    """A Hub id (or `hf:ORG/NAME` data source) as it is; a local path as its last component ("data/cnn" -> "cnn");
    a named source `NAME=SOURCE` as `NAME=` and the source's public name; a list of sources, each."""
    if isinstance(name_or_path, (list, tuple)):
        return ", ".join(public_name(item) for item in name_or_path)
    text = os.fspath(name_or_path)
    name, separator, source = text.partition("=")
    if separator and not is_local(text) and is_local(source):
        return f"{name}={public_name(source)}"
    if not is_local(text):
        return text
    return Path(text).expanduser().resolve().name or text


def weights_sha256(folder: str | os.PathLike) -> dict[str, str]:
    """sha256 of every weight file directly in `folder`, by file name."""
    return {file.name: file_sha256(file) for file in sorted(Path(folder).iterdir())
            if file.is_file() and file.suffix in WEIGHT_SUFFIXES}



def hub_revision(repo_id: str, revision: str | None = None) -> str | None:
    """The commit hash of `repo_id` at `revision` as the local Hub cache knows it (no network), or `revision`."""
    if revision and _COMMIT.match(revision):
        return revision
    try:
        from huggingface_hub import snapshot_download

        # The cache keeps each revision in snapshots/<commit hash>/ (the documented layout of the Hub cache).
        snapshot = Path(snapshot_download(repo_id, revision=revision, local_files_only=True, allow_patterns=["config.json"]))
    except Exception:  # noqa: BLE001 - not in the cache (several hub errors): the commit is unknown
        return revision
    return snapshot.name if _COMMIT.match(snapshot.name) else revision


def component_record(name_or_path: str | os.PathLike, hub_id: str | None = None, revision: str | None = None) -> dict:
    """How a checkpoint records one component (see the module docstring); `hub_id` names a local folder's Hub id."""
    text = os.fspath(name_or_path)
    if not is_local(text):
        record = {"id": text}
        commit = hub_revision(text, revision)
        return {**record, "revision": commit} if commit else record
    folder = Path(text).expanduser()
    record = {"id": check_hub_id(hub_id, "the Hub id")} if hub_id else {"name": public_name(folder)}
    return {**record, "sha256": weights_sha256(folder) if folder.is_dir() else {}}


def component_hub_id(record) -> str | None:
    """The Hub model id of a recorded component, or None when none is known."""
    if isinstance(record, dict):
        found = record.get("id")
    else:  # an older checkpoint's plain string
        found = None if record is None or is_local(str(record)) else str(record)
    return found if found and is_hub_id(found) else None


def component_text(record) -> str:
    """One line for a card or a listing: `ORG/NAME@abcdef123456`, or `folder (model.safetensors sha256 9f2c...)`."""
    if not isinstance(record, dict):
        return public_name(str(record)) if record else "unknown"
    name = record.get("id") or record.get("name") or "unknown"
    if record.get("revision"):
        name += f"@{record['revision'][:12] if _COMMIT.match(record['revision']) else record['revision']}"
    hashes = record.get("sha256") or {}
    if hashes:
        name += " (" + ", ".join(f"{file} sha256 {digest[:16]}" for file, digest in hashes.items()) + ")"
    return name


def public_record(record):
    """An older checkpoint's plain-string record as a record: a Hub id as `{"id": ...}`, a path as its folder's
    `{"name": ...}` (`/tmp/x/captioner` -> `captioner`)."""
    if isinstance(record, dict) or record is None:
        return record
    text = str(record)
    return {"id": text} if component_hub_id(text) else {"name": public_name(text)}
