"""Does decoding hold the networks back? `item detect`'s scoring loop with and without decoding ahead.

Writes N photo-like JPEGs (large enough that decoding costs something), loads a tiny random-weight checkpoint
(built here, no network), and times the same loop `item detect` runs (`ImageReader` -> `detect`) with the
reader drained by the decode-ahead thread (`results.prefetch.prefetched`, 2 x batch size deep) and without it
(depth 0: the reader decodes only when the loop asks). Each variant runs `repeats` times, alternating; the
fastest run is reported. (`item benchmark --decode-ahead N`)
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def write_photos(folder: Path, count: int, size=(1600, 1200), seed: int = 0) -> list[str]:
    import numpy as np

    from ..testing.hostile import photo

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:05d}.jpg"
        photo(rng, size).save(path, quality=92)
        paths.append(str(path))
    return paths


def decode_ahead(count: int = 48, batch_size: int = 8, repeats: int = 2, decode_workers: int = 2, log=print) -> dict:
    from ..data.decode import ImageReader
    from ..results.prefetch import prefetched
    from ..results.scoring import detect, load_pipeline
    from .streaming import build_tiny_checkpoint

    seconds = {"without decoding ahead": [], "decoding ahead": []}
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = build_tiny_checkpoint(Path(scratch))
        paths = write_photos(Path(scratch) / "photos", count)
        pipe = load_pipeline(str(checkpoint), "cpu")
        with ImageReader(workers=decode_workers) as reader:
            list(detect(pipe, reader.read(paths[:batch_size]), batch_size))  # warm-up
            for repeat in range(repeats):
                order = list(seconds) if repeat % 2 == 0 else list(reversed(seconds))
                for name in order:
                    depth = 0 if name == "without decoding ahead" else 2 * batch_size
                    started = time.perf_counter()
                    results = list(detect(pipe, prefetched(reader.read(paths), depth), batch_size))
                    seconds[name].append(time.perf_counter() - started)
                    if len(results) != count:
                        raise RuntimeError(f"{len(results)} results for {count} images")
                    log(f"{name}: {count / seconds[name][-1]:.2f} images/s")
    return {"images": count, "image_size": [1600, 1200], "batch_size": batch_size, "decode_workers": decode_workers,
            "cpus": os.cpu_count(),
            "images_per_second": {name: round(count / min(values), 2) for name, values in seconds.items()},
            "seconds_all": seconds}
