"""Does reading a data set stream with flat memory? Peak RSS of N rows of Parquet / WebDataset, read and decoded.

Writes N photo-like 256 x 192 JPEGs (as `bench.streaming` does) with 1 % broken rows into shards of 1,000 rows,
as Parquet files (an `Image` column of bytes, a `ClassLabel`) and as WebDataset `.tar` shards, then runs
`python -m item_cli.bench.sources SOURCE` in a subprocess: `iter_source_records` (streaming) through
`ImageReader` (2 decoding workers), hashing and decoding every row as `item detect` / `item cache` would, with no
network (the networks' memory does not depend on the data set). /proc is sampled every 0.2 s for the RSS of the
whole process tree. Flat memory: the peak of the last quarter of the run is no higher than the first's.
(`item benchmark --data-sources N`)
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from .streaming import SAMPLE_EVERY_S, tree_rss

SHARD_ROWS = 1000


def photo_rows(count: int, seed: int = 0):
    """(JPEG bytes, label) of `count` photos, every 100th row broken (a JPEG cut short)."""
    import numpy as np

    from ..testing.hostile import photo

    rng = np.random.default_rng(seed)
    for i in range(count):
        buffer = io.BytesIO()
        photo(rng, (256, 192)).save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        yield (data[:3000] if i % 100 == 99 else data), i % 2


def write_sources(folder: Path, count: int) -> dict[str, str]:
    """Parquet shards and WebDataset shards of the same `count` rows; returns {"parquet": GLOB, "webdataset": GLOB}."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["real", "fake"])})
    folder.mkdir(parents=True, exist_ok=True)
    rows = photo_rows(count)
    for shard in range((count + SHARD_ROWS - 1) // SHARD_ROWS):
        chunk = [next(rows) for _ in range(min(SHARD_ROWS, count - shard * SHARD_ROWS))]
        columns = {"image": [{"bytes": data, "path": None} for data, _ in chunk], "label": [label for _, label in chunk]}
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(folder / f"train-{shard:05d}.parquet"))
        with tarfile.open(folder / f"train-{shard:05d}.tar", "w") as archive:
            for i, (data, label) in enumerate(chunk):
                for extension, content in (("jpg", data), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"{shard * SHARD_ROWS + i:08d}.{extension}")
                    info.size = len(content)
                    archive.addfile(info, io.BytesIO(content))
    return {"parquet": str(folder / "train-*.parquet"), "webdataset": str(folder / "train-*.tar")}


def read_source(source: str, workers: int = 2) -> dict:
    """Stream `source` through the decoding workers; counts of decoded images and skipped rows."""
    from ..data import Skipped, iter_source_records
    from ..data.decode import ImageReader

    counts = {"decoded": 0, "skipped": 0}
    records = (item for item in iter_source_records(source) if not isinstance(item, Skipped) or counts.update(
        skipped=counts["skipped"] + 1))
    with ImageReader(workers=workers) as reader:
        for decoded in reader.read(records):
            counts["decoded" if decoded.error is None else "skipped"] += 1
    return counts


def measure(source: str) -> dict:
    """Run `read_source` in a subprocess and watch its process tree's memory."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "item_cli.bench.sources", source], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env)
    samples: list[tuple[float, int]] = []

    def sample():
        while process.poll() is None:
            samples.append((time.monotonic() - started, tree_rss(process.pid)[0]))
            time.sleep(SAMPLE_EVERY_S)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    output = process.stdout.read()
    process.wait()
    watcher.join(timeout=5)
    total_s = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"reading {source} failed with exit code {process.returncode}")
    counts = json.loads(output)
    quarters = []
    for quarter in range(4):  # the highest RSS in each quarter of the run's time
        inside = [rss for seconds, rss in samples if quarter * total_s / 4 <= seconds <= (quarter + 1) * total_s / 4]
        quarters.append(round(max(inside) / 2**20) if inside else None)
    return {**counts, "total_s": round(total_s, 1), "rows_per_s": round(sum(counts.values()) / total_s, 1),
            "peak_tree_rss_mb": round(max(rss for _, rss in samples) / 2**20) if samples else None,
            "peak_rss_by_quarter_mb": quarters}


def data_source_memory(count: int = 10000, log=print) -> dict:
    """The figures of streaming `count` rows as Parquet and as WebDataset shards."""
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        sources = write_sources(Path(scratch), count)
        for kind, source in sources.items():
            runs[kind] = {"rows": count, "shards": (count + SHARD_ROWS - 1) // SHARD_ROWS, **measure(source)}
            log(f"{kind}: {count} rows, peak RSS {runs[kind]['peak_tree_rss_mb']} MB, {runs[kind]['total_s']} s")
    return {"runs": runs, "cpus": os.cpu_count()}


def format_data_sources(report: dict) -> str:
    lines = ["| source | rows | decoded / skipped | peak RSS (reader + workers) | peak RSS by quarter | total |",
             "|---|---|---|---|---|---|"]
    for kind, run in report["runs"].items():
        quarters = "/".join(str(q) for q in run["peak_rss_by_quarter_mb"])
        lines.append(f"| {kind} ({run['shards']} shards) | {run['rows']:,} | {run['decoded']:,} / {run['skipped']} | "
                     f"{run['peak_tree_rss_mb']} MB | {quarters} MB | {run['total_s']} s ({run['rows_per_s']} rows/s) |")
    return "\n".join(lines)


if __name__ == "__main__":  # the measured process
    print(json.dumps(read_source(sys.argv[1])))
