"""Does decoding hold the networks back? `item detect`'s scoring loop with and without decoding ahead.

Writes N photo-like JPEGs (large enough that decoding costs something) and times the loop `item detect` runs
(`ImageReader` -> `detect`) with the reader drained by the decode-ahead thread (`results.prefetch.prefetched`,
2 x batch size deep) and without it (depth 0: the reader decodes only when the loop asks). Each variant runs
`repeats` times, alternating; the fastest run is reported. (`item benchmark --decode-ahead N`)

Two kinds of networks: a tiny random-weight checkpoint's (built here, no network; on the CPU, competing with
the decoding workers for the same cores), and a stand-in for a GPU (`WaitingNetworks`: each batch takes a fixed
time without using the CPU, as networks on an accelerator do), where overlapping decoding with them matters most.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


class WaitingNetworks:
    """A pipeline stand-in whose every batch takes `seconds_per_batch` without using the CPU (a GPU's networks)."""

    def __init__(self, seconds_per_batch: float):
        self.seconds_per_batch = seconds_per_batch

    def __call__(self, images, batch_size=None, **options):
        time.sleep(self.seconds_per_batch)
        return [{"fake_probability": 0.5} for _ in images]


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


def decode_ahead(count: int = 48, batch_size: int = 8, repeats: int = 2, decode_workers: int = 2,
                 gpu_seconds_per_batch: float = 0.25, log=print) -> dict:
    """images/s with and without decoding ahead, for each kind of networks (see the module docstring)."""
    from ..results.scoring import load_pipeline
    from .streaming import build_tiny_checkpoint

    report = {"images": count, "image_size": [1600, 1200], "batch_size": batch_size, "decode_workers": decode_workers,
              "cpus": os.cpu_count(), "gpu_seconds_per_batch": gpu_seconds_per_batch}
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = build_tiny_checkpoint(Path(scratch))
        paths = write_photos(Path(scratch) / "photos", count)
        kinds = (("tiny networks on the CPU", lambda: load_pipeline(str(checkpoint), "cpu")),
                 (f"stand-in GPU ({gpu_seconds_per_batch} s per batch)", lambda: WaitingNetworks(gpu_seconds_per_batch)))
        for name, make in kinds:
            report[name] = _compare(make(), paths, batch_size, repeats, decode_workers, lambda text: log(f"{name}: {text}"))
    return report


def _compare(pipe, paths: list[str], batch_size: int, repeats: int, decode_workers: int, log) -> dict:
    from ..data.decode import ImageReader
    from ..results.prefetch import prefetched
    from ..results.scoring import detect

    seconds = {"without decoding ahead": [], "decoding ahead": []}
    with ImageReader(workers=decode_workers) as reader:
        list(detect(pipe, reader.read(paths[:batch_size]), batch_size))  # warm-up
        for repeat in range(repeats):
            for name in list(seconds) if repeat % 2 == 0 else list(reversed(seconds)):
                depth = 0 if name == "without decoding ahead" else 2 * batch_size
                started = time.perf_counter()
                results = list(detect(pipe, prefetched(reader.read(paths), depth), batch_size))
                seconds[name].append(time.perf_counter() - started)
                if len(results) != len(paths):
                    raise RuntimeError(f"{len(results)} results for {len(paths)} images")
                log(f"{name}: {len(paths) / seconds[name][-1]:.2f} images/s")
    return {"images_per_second": {name: round(len(paths) / min(values), 2) for name, values in seconds.items()},
            "seconds_all": seconds}
