"""Append-only, content-addressed storage of per-image rows, safe for concurrent writers on shared disks.

    <cache_dir>/<stage>-<stage key>/
        stage.json         what the key stands for (components, settings, versions); written once
        last-used          touched by every run that reads the stage (for pruning by age)
        <sha256>.arrow     chunks: Arrow IPC files of rows, each named by the sha256 of its own bytes
        tmp/               chunks being written, renamed into place only when complete

Why this store: every write is a new file written under a temporary name and renamed into place (atomic on
POSIX and on NFS), and no file is ever changed after that, so any number of processes, on one machine or on
several machines sharing the folder, can write at once without locks, and no reader ever sees half a chunk. A
killed run keeps every chunk it finished. A chunk names its own checksum, so a damaged file (truncated, bytes
flipped) is noticed when it is used, removed with a one-line warning, and its rows computed again. Two
processes that compute the same image write two rows; readers pick one deterministically.

Within a chunk, rows are Arrow columns: the features' fixed-size arrays are memory-mapped straight into numpy,
so reading a cache costs no copy and no parsing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .keys import file_sha256, stage_key

logger = logging.getLogger(__name__)

CHUNK_SUFFIX = ".arrow"
STALE_TMP_SECONDS = 24 * 3600  # a tmp file this old belongs to a killed run: prune removes it
COMPACT_AT = 64  # merge a stage's small chunks once it holds this many
SMALL_CHUNK_BYTES = 64 << 20


@dataclass
class Chunk:
    """One chunk file, opened by memory map: `table` (rows; `key` column first) and where it lives."""

    path: Path
    table: pa.Table

    @property
    def name(self) -> str:
        return self.path.stem


class StageStore:
    """The rows of one stage (annotations or features) under one stage key."""

    def __init__(self, root: str | os.PathLike, fingerprint: dict):
        self.fingerprint = fingerprint
        self.key = stage_key(fingerprint)
        self.folder = Path(root).expanduser() / f"{fingerprint['stage']}-{self.key}"
        self._verified: set[str] = set()

    @classmethod
    def at(cls, folder: str | os.PathLike) -> "StageStore":
        """The store of an existing stage folder (for upkeep: `item cache --verify`)."""
        folder = Path(folder)
        store = cls(folder.parent, json.loads((folder / "stage.json").read_text()))
        store.folder = folder
        return store

    # ------------------------------------------------------------------------------------------ writing
    def open(self) -> "StageStore":
        """Create the stage folder (idempotent, safe when several processes do it at once) and mark it used."""
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        if not (self.folder / "stage.json").is_file():
            atomic_write(self.folder / "stage.json", json.dumps(self.fingerprint, indent=2, sort_keys=True, default=str))
        (self.folder / "last-used").touch()
        return self

    def write(self, table: pa.Table) -> Path:
        """Write `table` as one new chunk; returns its path. Nothing is visible until the chunk is complete."""
        temporary = self.folder / "tmp" / f"{uuid.uuid4().hex}{CHUNK_SUFFIX}.part"
        with pa.OSFile(str(temporary), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        final = self.folder / f"{file_sha256(temporary)}{CHUNK_SUFFIX}"
        os.replace(temporary, final)  # same bytes if a twin process wrote it too
        return final

    # ------------------------------------------------------------------------------------------ reading
    def chunks(self) -> list[Chunk]:
        """Every readable chunk, in name order (the deterministic order duplicates are resolved in).

        A chunk that cannot be opened is damaged: it is removed with a warning, and its rows will be recomputed.
        """
        found = []
        for path in sorted(self.folder.glob(f"*{CHUNK_SUFFIX}")):
            try:
                found.append(Chunk(path, pa.ipc.open_file(pa.memory_map(str(path))).read_all()))
            except FileNotFoundError:
                continue  # merged away by another process a moment ago; its rows are in the merged chunk
            except (pa.ArrowException, OSError, ValueError) as error:
                self.discard(path, f"unreadable ({error})")
        return found

    def verify(self, chunk: Chunk) -> bool:
        """Whether the chunk's bytes still hash to its name (once per process); a damaged chunk is removed."""
        if chunk.name in self._verified:
            return True
        try:
            intact = file_sha256(chunk.path) == chunk.name
        except FileNotFoundError:
            return True  # merged away meanwhile; the mapping we hold is still the complete file
        if not intact:
            self.discard(chunk.path, "its bytes do not match its checksum")
            return False
        self._verified.add(chunk.name)
        return True

    def discard(self, path: Path, reason: str) -> None:
        logger.warning("cache file %s is damaged (%s): removed, its rows will be computed again", path, reason)
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------------------------------ upkeep
    def compact(self) -> int:
        """Merge small chunks into one, so that a stage written in many small batches opens fast; returns how
        many chunks were merged. Safe with concurrent readers (the merged chunk is complete before any input
        disappears) and writers (they only add files)."""
        small = [chunk for chunk in self.chunks() if chunk.table.nbytes < SMALL_CHUNK_BYTES]  # no stat: may be gone
        if len(small) < COMPACT_AT:
            return 0
        small = [chunk for chunk in small if self.verify(chunk)]
        schemas = {chunk.table.schema for chunk in small}
        if len(schemas) != 1:
            return 0
        self.write(pa.concat_tables([chunk.table for chunk in small]))
        for chunk in small:
            chunk.path.unlink(missing_ok=True)
        return len(small)


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: readers see the old or the new file whole."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------- the whole cache
def stage_folders(root: str | os.PathLike) -> list[Path]:
    root = Path(root).expanduser()
    return sorted(p for p in root.glob("*-*") if p.is_dir() and (p / "stage.json").is_file()) if root.is_dir() else []


def describe_stage(folder: Path) -> dict:
    """What `item cache --info` shows for one stage folder."""
    fingerprint = json.loads((folder / "stage.json").read_text())
    chunks = sorted(folder.glob(f"*{CHUNK_SUFFIX}"))
    keys, damaged = set(), 0
    for path in chunks:
        try:
            keys.update(pa.ipc.open_file(pa.memory_map(str(path))).read_all().column("key").to_pylist())
        except (pa.ArrowException, OSError, ValueError):
            damaged += 1
    temporary = list((folder / "tmp").glob("*")) if (folder / "tmp").is_dir() else []
    used = folder / "last-used"
    return {
        "folder": str(folder),
        "stage": fingerprint.get("stage"),
        "key": folder.name.split("-", 1)[1],
        "images": len(keys),
        "chunks": len(chunks),
        "damaged_chunks": damaged,
        "bytes": sum(path.stat().st_size for path in chunks) + sum(p.stat().st_size for p in temporary if p.is_file()),
        "unfinished_writes": len(temporary),
        "last_used": time.strftime("%Y-%m-%d %H:%M", time.localtime(used.stat().st_mtime)) if used.exists() else None,
        "unused_days": (time.time() - used.stat().st_mtime) / 86400 if used.exists() else None,
        "components": _components(fingerprint),
    }


def _components(fingerprint: dict) -> str:
    if fingerprint.get("stage") == "annotations":
        parts = [f"captioner {fingerprint['captioner']['name']}", f"detector {fingerprint['detector']['name']}"]
    else:
        parts = [f"backbone {fingerprint['backbone'][:12]}", f"annotations {fingerprint['annotations']}",
                 f"stored as {fingerprint.get('storage_dtype')}"]
    if fingerprint.get("perturbation"):
        parts.append(f"perturbation {fingerprint['perturbation']}")
    return ", ".join(parts)


def prune(root: str | os.PathLike, keys: list[str] = (), unused_days: float | None = None, everything: bool = False) -> list[dict]:
    """Remove stage folders: those whose key starts with one of `keys`, those unused for `unused_days`, or all
    of them; and, in every stage kept, temporary files older than a day (left by killed runs). Returns what was
    removed. Do not prune a stage while a run is using it (the run would compute its rows again)."""
    removed = []
    for folder in stage_folders(root):
        info = describe_stage(folder)
        old = unused_days is not None and info["unused_days"] is not None and info["unused_days"] >= unused_days
        if everything or old or any(info["key"].startswith(key) for key in keys):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(info)
            continue
        for leftover in (folder / "tmp").glob("*"):
            if time.time() - leftover.stat().st_mtime > STALE_TMP_SECONDS:
                leftover.unlink(missing_ok=True)
    return removed


def checksum(text: str) -> str:
    """sha256 of a string (an annotation row's identity, which its feature rows refer to)."""
    return hashlib.sha256(text.encode()).hexdigest()
