"""The sha256 of a file's bytes, read in blocks: the one content hash of the project (cache keys, checkpoint and
component identities, run fingerprints). Depends on nothing else of item_cli, so any module may import it."""

from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1 << 20


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
