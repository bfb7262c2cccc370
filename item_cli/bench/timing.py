"""The one place that times things: wall and process-CPU seconds over repeats (the minimum is reported, as
interference only adds time), peak memory, and a description of the machine."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device) -> float:
    """Peak memory so far: the CUDA allocator's peak on a GPU, the process's peak resident set (RSS) on a CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak_memory(device) -> None:
    """Start the CUDA allocator's peak afresh (a process's peak RSS cannot be reset: on a CPU it stays the run's)."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


class Timer:
    """Collects wall and process-CPU seconds per named section over repeats; `summary` reports the minimum."""

    def __init__(self, device):
        self.device = device
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def __call__(self, name: str, function: Callable[[], Any]) -> Any:
        synchronize(self.device)
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        synchronize(self.device)
        self.wall.setdefault(name, []).append(time.perf_counter() - wall)
        self.cpu.setdefault(name, []).append(time.process_time() - cpu)
        return result

    def summary(self, name: str, images: int) -> dict:
        wall = self.wall[name]
        best = min(wall)
        return {
            "seconds": best,
            "seconds_median": statistics.median(wall),
            "seconds_all": wall,
            "cpu_seconds": min(self.cpu[name]),
            "images_per_second": images / best if best > 0 else float("inf"),
        }


def machine_info(device) -> dict:
    import torch
    import transformers

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "device": str(device),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
