"""Peak memory of one scoring process per batch size: what `item detect --batch-size` may be on a machine.

For each batch size, a fresh process (so that one batch size's peak never hides another's) builds the profile's
networks at their real sizes with random weights (`networks.build_networks`: random weights take the same memory
and compute as trained ones), scores one batch of random 640 x 480 images through the pipeline with
`explain=True` (as `item detect` does), and reports its resident memory after loading and its peak resident set
(VmHWM: the most it ever held). (`item benchmark --batch-memory 1 2 4 8`)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _vm(field: str) -> int:
    """A /proc/self/status memory field in bytes (VmRSS: resident now; VmHWM: the peak resident set)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}: peak memory is measured on Linux only.")


def measure_one(batch_size: int, profile: str = "default", device: str = "cpu") -> dict:
    """Load the profile's real-size networks and score one batch; returns the memory figures of this process."""
    import torch

    from ..profiles import get_profile
    from .networks import Variant, build_networks
    from .pipeline import random_images

    torch.manual_seed(0)
    nets = build_networks(Variant.of(get_profile(profile)), device=device)
    loaded = _vm("VmRSS")
    from item_detector.pipeline_item import ItemImageClassificationPipeline

    pipe = ItemImageClassificationPipeline(model=nets.model, processor=nets.processor, device=torch.device(device))
    images = random_images(batch_size, (640, 480))
    started = time.perf_counter()
    with torch.inference_mode():
        results = pipe(images, batch_size=batch_size, explain=True)
    seconds = time.perf_counter() - started
    if len(results) != batch_size:
        raise RuntimeError(f"the pipeline returned {len(results)} results for {batch_size} images")
    return {"batch_size": batch_size, "profile": profile, "loaded_rss_gib": round(loaded / 2**30, 2),
            "peak_rss_gib": round(_vm("VmHWM") / 2**30, 2), "seconds": round(seconds, 1),
            "images_per_second": round(batch_size / seconds, 3), "threads": torch.get_num_threads()}


def batch_memory(batch_sizes=(1, 2, 4, 8), profile: str = "default", log=print) -> dict:
    """One fresh process per batch size (see the module docstring); the figures of each."""
    runs = []
    for batch_size in batch_sizes:
        command = [sys.executable, "-m", "item_cli.bench.batch_memory", str(batch_size), profile]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"batch size {batch_size}: the measuring process exited with {done.returncode}: "
                               f"{done.stderr[-2000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        log(f"batch {batch_size}: peak {runs[-1]['peak_rss_gib']} GiB ({runs[-1]['seconds']} s)")
    return {"profile": profile, "runs": runs, "cpus": os.cpu_count()}


def format_batch_memory(report: dict) -> str:
    lines = [f"profile {report['profile']}, real-size networks (random weights), CPU, float32, 640 x 480 images",
             "", "| batch size | RSS after loading | peak RSS | seconds for the batch | images/s |", "|---|---|---|---|---|"]
    for run in report["runs"]:
        lines.append(f"| {run['batch_size']} | {run['loaded_rss_gib']} GiB | {run['peak_rss_gib']} GiB | {run['seconds']} | "
                     f"{run['images_per_second']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(measure_one(int(sys.argv[1]), sys.argv[2])))
