"""`item detect --output DIR` at scale: result shards written whole, every input answered exactly once by any
number of processes, resumable after a kill, incremental (a changed file is scored again, a new threshold
re-decides stored rows without any network), mergeable, and readable with `datasets`."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import NetworkCalls, make_cnndetection, write_images

from item_cli.cli import main
from item_cli.results import chunk_files, features, latest_rows, read_rows

CAPTION = "a man riding a bike on the road"
REPO = Path(__file__).resolve().parent.parent
# The launched processes write a fixed caption too (the tiny captioner is slow and random), like `calls` here, and
# load the pipeline from the installed classes (remote code would be other classes, which no patch reaches).
DETECT_SCRIPT = textwrap.dedent(
    r'''
    import sys
    from item_detector.processing_item import ItemProcessor
    ItemProcessor.caption = lambda self, images: ["a man riding a bike on the road"] * len(images)
    import item_cli.results.scoring
    from item_cli.checkpoint import load_checkpoint
    from item_detector.pipeline_item import ItemImageClassificationPipeline

    def local_pipeline(model, device=None, revision=None):
        network, processor = load_checkpoint(model)
        return ItemImageClassificationPipeline(model=network, processor=processor, device=device or "cpu")

    item_cli.results.scoring.load_pipeline = local_pipeline
    from item_cli.cli import main
    sys.exit(main(["detect", *sys.argv[1:]]))
    '''
)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def local_pipeline(model, device=None, revision=None):
    """The checkpoint's pipeline built from the installed classes, which `NetworkCalls` counts."""
    from item_detector.pipeline_item import ItemImageClassificationPipeline

    from item_cli.checkpoint import load_checkpoint

    network, processor = load_checkpoint(model)
    return ItemImageClassificationPipeline(model=network, processor=processor, device=device or "cpu")


@pytest.fixture
def calls(monkeypatch):
    import item_cli.results.scoring as scoring_module

    monkeypatch.setattr(scoring_module, "load_pipeline", local_pipeline)
    return NetworkCalls(monkeypatch, caption=CAPTION)


def detect(*arguments) -> int:
    return main(["detect", *map(str, arguments)])


def rows_by_path(output) -> dict:
    return {row["path"]: row for row in latest_rows(read_rows(output), by=("path",)).to_pylist()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_accelerate_processes_answer_every_input_once_and_match_one_process(checkpoint, tmp_path, calls):
    images = tmp_path / "images"
    write_images(images, 200, np.random.default_rng(0))
    script = tmp_path / "detect.py"
    script.write_text(DETECT_SCRIPT)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(script), str(images), "--model", str(checkpoint), "--output", str(tmp_path / "two"), "--batch-size", "20",
        "--shard-size", "50", "--decode-workers", "1",
    ]
    run = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert run.returncode == 0, run.stderr[-9000:]
    assert "200 images scored" in run.stderr and "over 2 processes" in run.stderr
    rows = read_rows(tmp_path / "two").to_pylist()
    paths = [row["path"] for row in rows]
    assert len(paths) == 200 and len(set(paths)) == 200  # every input exactly once
    ranks = {chunk.name.split("-")[1] for chunk in chunk_files(tmp_path / "two")}
    assert ranks == {"00000", "00001"}  # both processes took a share
    assert all(row["status"] == "scored" for row in rows)
    sample = sorted(paths)[::5]  # one process scores every 5th image (the cost of a test), from both shares
    assert detect(*sample, "--model", checkpoint, "--output", tmp_path / "one", "--batch-size", "8") == 0
    single = rows_by_path(tmp_path / "one")
    assert calls["caption"] == 40 and set(single) == set(sample)
    for row in rows:
        if row["path"] in single:
            assert row["content_sha256"] == single[row["path"]]["content_sha256"]
            assert abs(row["fake_probability"] - single[row["path"]]["fake_probability"]) < 1e-5


def test_a_killed_run_loses_only_its_unflushed_chunk_and_the_rerun_scores_only_the_rest(checkpoint, tmp_path, calls):
    images = tmp_path / "images"
    write_images(images, 16, np.random.default_rng(1))
    output = tmp_path / "out"
    command = [sys.executable, "-c", DETECT_SCRIPT, str(images), "--model", str(checkpoint), "--output", str(output),
               "--batch-size", "2", "--shard-size", "2", "--decode-workers", "1"]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(chunk_files(output)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = read_rows(output).to_pylist()
    assert 4 <= len(before) < 16, process.stderr.read().decode()[-2000:]
    assert detect(images, "--model", checkpoint, "--output", output, "--batch-size", "4") == 0
    assert calls["caption"] == 16 - len(before)  # the networks saw only the inputs not answered yet
    paths = [row["path"] for row in read_rows(output).to_pylist()]
    assert len(paths) == 16 and len(set(paths)) == 16  # every input exactly once
    assert not list((output / "_tmp").glob("*"))[1:]  # at most the killed process's one half-written chunk


def test_threshold_relabels_without_networks_a_changed_file_is_rescored_and_merge_writes_one_file(
        checkpoint, tmp_path, calls, monkeypatch):
    import datasets

    images = tmp_path / "images"
    paths = write_images(images, 5, np.random.default_rng(2))
    (images / "broken.png").write_text("not an image")
    output = tmp_path / "out"
    assert detect(images, "--model", checkpoint, "--output", output, "--format", "jsonl") == 0
    first = rows_by_path(output)
    assert len(first) == 6 and first[str(images / "broken.png")]["status"] == "unreadable"
    assert calls["caption"] == 5

    calls.reset()
    import item_cli.results.scoring as scoring_module

    monkeypatch.setattr(scoring_module, "load_pipeline", lambda *a, **k: pytest.fail("the pipeline was loaded"))
    assert detect(images, "--model", checkpoint, "--output", output, "--format", "jsonl", "--threshold", "0") == 0
    relabelled = rows_by_path(output)
    assert calls.total() == 0
    for path, row in relabelled.items():
        if row["status"] == "scored":
            assert row["threshold"] == 0.0 and row["is_fake"] and row["label"] == "fake"
            assert row["fake_probability"] == first[path]["fake_probability"]
    monkeypatch.undo()
    monkeypatch.setattr(scoring_module, "load_pipeline", local_pipeline)
    calls = NetworkCalls(monkeypatch, caption=CAPTION)

    write_images(images, 1, np.random.default_rng(99), start=int(paths[0].stem))  # changed in place
    assert detect(images, "--model", checkpoint, "--output", output, "--format", "jsonl", "--threshold", "0") == 0
    assert calls["caption"] == 1  # only the changed file
    latest = rows_by_path(output)
    assert latest[str(paths[0])]["content_sha256"] != first[str(paths[0])]["content_sha256"]

    assert detect("--merge", output, "--format", "jsonl") == 0
    merged = datasets.load_dataset("json", data_files=str(output / "results.jsonl"), split="train", features=features())
    assert len(merged) == 6 and sorted(merged["path"]) == sorted(latest)
    shards = datasets.load_dataset("json", data_files=[str(c) for c in chunk_files(output)], split="train",
                                   features=features())
    assert len(shards) == 6 + 5 + 1  # every row ever written: first run, relabelled, the changed file


def test_parquet_shards_load_with_datasets_and_the_cache_costs_only_the_head(checkpoint, tmp_path, calls, monkeypatch):
    import datasets

    data = make_cnndetection(tmp_path / "cnn", generators=("gen",), per_class=3)
    assert main(["cache", "--model", str(checkpoint), "--data", str(data), "--cache-dir", str(tmp_path / "cache"),
                 "--features", "--feature-dtype", "float32", "--batch-size", "4"]) == 0
    assert detect(data, "--model", checkpoint, "--output", tmp_path / "piped", "--batch-size", "4") == 0  # as cached
    piped = rows_by_path(tmp_path / "piped")
    calls = NetworkCalls(monkeypatch, forbid=True)
    assert detect(data, "--model", checkpoint, "--output", tmp_path / "cached", "--cache-dir", tmp_path / "cache",
                  "--feature-dtype", "float32") == 0
    cached = rows_by_path(tmp_path / "cached")
    assert calls.total() == 0 and set(cached) == set(piped) and len(cached) == 6
    for path, row in cached.items():
        assert abs(row["fake_probability"] - piped[path]["fake_probability"]) < 1e-4
        assert row["caption"] == piped[path]["caption"] == CAPTION
    table = datasets.load_dataset("parquet", data_files=str(tmp_path / "cached" / "part-*.parquet"), split="train")
    assert len(table) == 6 and set(table["path"]) == set(cached)
    assert table.features["fake_probability"].dtype == "float64" and table[0]["objects"][0]["noun"]


def test_the_ray_batch_scorer_writes_the_same_rows(checkpoint, tmp_path, calls):
    from item_cli.results.ray_batches import BatchScorer
    from item_cli.results.rows import SCHEMA

    paths = write_images(tmp_path / "images", 2, np.random.default_rng(3))
    scorer = BatchScorer(str(checkpoint), device="cpu", threshold=0.0)
    columns = scorer({"path": [str(p) for p in paths] + ["broken.png"],
                      "bytes": [p.read_bytes() for p in paths] + [b"not an image"]})
    assert list(columns) == SCHEMA.names and calls["caption"] == 2
    assert columns["status"] == ["scored", "scored", "unreadable"] and columns["is_fake"][:2] == [True, True]
    assert columns["checkpoint"][0].startswith("sha256:") and str(tmp_path) not in columns["checkpoint"][0]


def test_data_set_rows_are_scored_into_shards_once_and_a_rerun_runs_no_network(checkpoint, tmp_path, calls, monkeypatch,
                                                                             capsys):
    """Parquet rows and WebDataset samples streamed through `item detect --data ... --output`: each row answered
    once under its identity (file name and row), a broken row recorded as unreadable, and a rerun finds them all
    done, streamed or listed (with --cache-dir)."""
    import io
    import tarfile

    import datasets
    from PIL import Image

    rng = np.random.default_rng(1)

    def png() -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()

    images = [{"bytes": png(), "path": None} for _ in range(3)] + [{"bytes": b"\x89PNG\r\n\x1a\n broken", "path": None}]
    datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()})) \
        .to_parquet(str(tmp_path / "rows.parquet"))
    with tarfile.open(tmp_path / "shard-0000.tar", "w") as archive:
        for key in ("a", "b"):
            data = png()
            info = tarfile.TarInfo(f"{key}.png")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    import item_cli.data

    listed = item_cli.data.load_records

    def no_listing(source, *args, **kwargs):  # data sets are streamed, never listed (flat memory on any size)
        raise AssertionError(f"{source} was listed instead of streamed")

    monkeypatch.setattr(item_cli.data, "load_records", no_listing)
    output = tmp_path / "out"
    arguments = ["--data", tmp_path / "rows.parquet", "--data", tmp_path / "shard-0000.tar", "--model", checkpoint,
                 "--output", output, "--batch-size", "2"]
    assert detect(*arguments) == 0
    rows = rows_by_path(output)
    assert sorted(rows) == ["rows.parquet#0", "rows.parquet#1", "rows.parquet#2", "rows.parquet#3",
                            "shard-0000.tar#a", "shard-0000.tar#b"]
    assert rows["rows.parquet#3"]["status"] == "unreadable" and rows["rows.parquet#0"]["status"] == "scored"
    assert rows["rows.parquet#0"]["content_sha256"] is not None
    scored = rows["rows.parquet#0"]
    assert scored["verdict"] == scored["label"] and "metadata" in json.loads(scored["provenance"])  # beside the verdict
    calls.reset()
    assert detect(*arguments) == 0
    assert calls.total() == 0 and len(read_rows(output).to_pylist()) == 6  # all done: nothing scored or written again
    capsys.readouterr()
    assert detect("--data", tmp_path / "rows.parquet", "--model", checkpoint, "--json") == 0  # streamed to stdout too
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["path"] for line in lines) == [f"rows.parquet#{i}" for i in range(4)]
    assert [line["path"] for line in lines if "error" in line] == ["rows.parquet#3"]
    monkeypatch.setattr(item_cli.data, "load_records", listed)
    calls.reset()
    assert detect(*arguments, "--cache-dir", tmp_path / "cache") == 0  # with the cache, data sets are listed
    assert calls.total() == 0  # ... and still nothing is scored again
