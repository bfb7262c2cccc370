"""Result shards in an output folder: written whole by any number of processes, read back as one table.

    DIR/part-RRRRR-TOKEN-CCCCC.parquet   (or .jsonl) one chunk of rank RRRRR's rows, complete or absent: written
                                         under DIR/_tmp/, flushed to disk (fsync), then renamed into place
    DIR/_done/part-...json               its marker, written the same way right after: rows, checkpoint, format
    DIR/_SUCCESS                         a summary, written when a whole run (every process) finished

TOKEN is one process's run (random), so processes and relaunches never write the same name. A killed process
loses at most the rows it had not flushed; a chunk renamed just before the kill has no marker and is read
without one. Readers use the markers to skip chunks of other checkpoints without opening them, and read only
the index columns of the rest. The shards hold every row ever written: the newer row of a path wins
(`latest_rows`, `item detect --merge`).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .rows import INDEX_COLUMNS, SCHEMA

FORMATS = ("parquet", "jsonl")
DONE_FOLDER, TMP_FOLDER, SUCCESS = "_done", "_tmp", "_SUCCESS"
CHUNK_NAME = re.compile(r"^part-(\d{5})-([0-9a-f]+)-(\d{5})\.(parquet|jsonl)$")


def write_whole(target: Path, data: bytes) -> None:
    """Write `data` to `target` under a temporary name, flush it to disk, then rename it into place."""
    tmp = target.parent.parent / TMP_FOLDER if target.parent.name == DONE_FOLDER else target.parent / TMP_FOLDER
    tmp.mkdir(parents=True, exist_ok=True)
    staging = tmp / f"{target.name}.{uuid.uuid4().hex[:8]}"
    with open(staging, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, target)


def encode(rows: list[dict], fmt: str) -> bytes:
    """Rows as a Parquet file or JSON Lines (bytes)."""
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=True) + "\n" for row in rows).encode()
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), sink)
    return sink.getvalue().to_pybytes()


class ShardWriter:
    """Buffers one process's rows and writes them as whole chunks (`flush` when `shard_size` rows are waiting or
    `flush_every_s` seconds passed since the last chunk)."""

    def __init__(self, output: Path, rank: int, fmt: str, checkpoint: str, shard_size: int = 1000,
                 flush_every_s: float = 300.0):
        if fmt not in FORMATS:
            raise ValueError(f"--format {fmt}; choose one of {', '.join(FORMATS)}.")
        self.output, self.rank, self.fmt, self.checkpoint = Path(output), rank, fmt, checkpoint
        self.shard_size, self.flush_every_s = shard_size, flush_every_s
        self.token = uuid.uuid4().hex[:10]
        self.rows: list[dict] = []
        self.chunks, self.written = 0, 0
        self.last_flush = time.monotonic()
        (self.output / DONE_FOLDER).mkdir(parents=True, exist_ok=True)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.shard_size or time.monotonic() - self.last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.rows:
            return
        name = f"part-{self.rank:05d}-{self.token}-{self.chunks:05d}.{self.fmt}"
        write_whole(self.output / name, encode(self.rows, self.fmt))
        marker = {"rows": len(self.rows), "checkpoint": self.checkpoint, "format": self.fmt, "rank": self.rank}
        write_whole(self.output / DONE_FOLDER / f"{name}.json", json.dumps(marker).encode())
        self.chunks, self.written, self.rows = self.chunks + 1, self.written + len(self.rows), []


def chunk_files(output: Path) -> list[Path]:
    """The complete chunks in `output`, in name order."""
    if not Path(output).is_dir():
        return []
    return sorted(path for path in Path(output).iterdir() if CHUNK_NAME.match(path.name))


def marker(chunk: Path) -> dict | None:
    """A chunk's marker, or None (the process was killed between the chunk's rename and its marker's)."""
    try:
        return json.loads((chunk.parent / DONE_FOLDER / f"{chunk.name}.json").read_text())
    except (OSError, ValueError):
        return None


def read_chunk(chunk: Path, columns=None) -> pa.Table:
    """One chunk as a table with `SCHEMA`'s types (only `columns` when given)."""
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(name) for name in columns])
    if chunk.suffix == ".parquet":
        table = pq.read_table(chunk, columns=list(schema.names))
    else:
        options = pa_json.ParseOptions(explicit_schema=SCHEMA)
        table = pa_json.read_json(chunk, parse_options=options).select(list(schema.names))
    return table.cast(schema)


def read_rows(output: Path, checkpoint: str | None = None, columns=None) -> pa.Table:
    """Every row of the chunks in `output` (of `checkpoint` only, when given), older chunks first."""
    tables = []
    for chunk in chunk_files(output):
        found = marker(chunk)
        if checkpoint is not None and found is not None and found["checkpoint"] != checkpoint:
            continue  # another checkpoint's chunk: not even opened
        table = read_chunk(chunk, columns)
        if checkpoint is not None and found is None:
            table = table.filter(pc.equal(table.column("checkpoint"), checkpoint))
        tables.append(table)
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(name) for name in columns])
    return pa.concat_tables(tables) if tables else schema.empty_table()


def latest_rows(table: pa.Table, by=("path", "checkpoint")) -> pa.Table:
    """One row per `by` (a path's newest, by written_at), in path order."""
    if not len(table):
        return table
    order = table.sort_by([("written_at", "descending")])
    seen, keep = set(), []
    for i, key in enumerate(zip(*(order.column(name).to_pylist() for name in by))):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return order.take(keep).sort_by([(name, "ascending") for name in by])


def answered(output: Path, checkpoint: str) -> dict[str, dict]:
    """path -> its newest row's index columns (content_sha256, status, threshold, ...) for `checkpoint`."""
    table = latest_rows(read_rows(output, checkpoint, INDEX_COLUMNS), by=("path",))
    return {row["path"]: row for row in table.to_pylist()}


def merge(output: Path, fmt: str = "parquet") -> tuple[Path, int, int]:
    """Write the newest row of every (path, checkpoint) in `output` to one file `output/results.FMT`;
    returns (that file, rows kept, rows read)."""
    table = read_rows(output)
    if not len(table):
        raise ValueError(f"{output} holds no result shards (part-*.parquet / part-*.jsonl); run item detect --output there first.")
    kept = latest_rows(table)
    target = Path(output) / f"results.{fmt}"
    write_whole(target, encode(kept.to_pylist(), fmt))
    return target, len(kept), len(table)


def write_success(output: Path, summary: dict) -> None:
    write_whole(Path(output) / SUCCESS, json.dumps(summary, indent=1).encode())
