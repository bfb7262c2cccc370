"""The frozen-work cache: rows keyed by each image's content and the stage's settings, never by names, time
stamps or labels; computed once, reused by any data that holds the same images, recomputed when the bytes or a
component change; safe when interrupted, damaged, or written by several processes at once."""

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import NetworkCalls, make_cnndetection, write_images

from item_cli.cache import frozen_rows
from item_cli.cache.store import stage_folders
from item_cli.checkpoint import load_checkpoint
from item_cli.cli import main
from item_cli.data import load_records

CAPTION = "a man riding a bike on the road"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def data(tmp_path):
    return make_cnndetection(tmp_path / "cnn", per_class=2)


@pytest.fixture
def calls(monkeypatch):
    """Images seen by each frozen stage; the captioner always writes CAPTION (the tiny one is slow and random)."""
    return NetworkCalls(monkeypatch, caption=CAPTION)


@pytest.fixture(scope="module")
def networks(checkpoint):
    return load_checkpoint(checkpoint)


def rows_of(source, networks, cache_dir, **options):
    records, _ = load_records(source, **{k: options.pop(k) for k in ("generator", "layout") if k in options})
    model, processor = networks
    return frozen_rows(records, processor, model, cache_dir=cache_dir, batch_size=3, storage_dtype="float32", **options)


# ---------------------------------------------------------------------------------------------- what the key is
def test_rows_are_computed_once_and_joined_with_todays_labels(data, networks, tmp_path, calls):
    first = rows_of(data, networks, tmp_path / "cache")
    assert (calls["caption"], calls["ground"]) == (8, 8) and calls["features"] > 0
    assert first.annotations[0].caption == CAPTION and first.annotations[0].nouns == ["man", "bike", "road"]
    arrays = first.features.take()
    assert arrays["image_embeds"].shape == (8, 1 + networks[1].max_objects, networks[0].config.embedding_dim)
    assert arrays["object_mask"][:, :3].all() and not arrays["object_mask"][:, 3:].any()  # box_threshold 0

    calls.reset()
    regrouped = rows_of(data, networks, tmp_path / "cache", generator="allgans")  # `item evaluate --generator allgans`
    assert calls.total() == 0
    assert set(regrouped.column("generator")) == {"allgans"}  # not the progan / stylegan of the first run
    np.testing.assert_array_equal(regrouped.features.take()["image_embeds"], arrays["image_embeds"])

    # A manifest of the same files, one label corrected, generators regrouped: the new labels, no network.
    manifest = tmp_path / "relabelled.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "generator"])
        for i, record in enumerate(first.records):
            writer.writerow([record.path, 1 - record.label if i == 0 else record.label, f"group{i % 2}"])
    relabelled = rows_of(manifest, networks, tmp_path / "cache")
    assert calls.total() == 0
    assert relabelled.labels.tolist() == [1 - first.labels[0], *first.labels[1:].tolist()]
    assert relabelled.column("generator") == [f"group{i % 2}" for i in range(8)]


def test_renamed_copied_subset_and_shared_images_compute_nothing(data, networks, tmp_path, calls):
    rows_of(data, networks, tmp_path / "cache")
    calls.reset()
    other = tmp_path / "other"
    shutil.copytree(data / "progan", other / "renamed_generator", copy_function=shutil.copy2)  # time stamps kept
    for path in sorted((other / "renamed_generator").rglob("*.png")):
        path.rename(path.with_name("copy-" + path.name))
    write_images(other / "new" / "0_real", 1, np.random.default_rng(99))  # and one image no run has seen
    rows = rows_of(other, networks, tmp_path / "cache")
    assert len(rows) == 5
    assert calls["caption"] == 1 and calls["ground"] == 1  # only the new image
    rows_of(data / "stylegan", networks, tmp_path / "cache")  # a subset of the cached folder
    assert calls["caption"] == 1


def test_a_file_changed_in_place_with_its_time_stamp_kept_is_recomputed(networks, tmp_path, calls):
    """`cp -p` or `rsync -t` of a same-size file keeps size and modification time: only the bytes tell."""
    from PIL import Image

    folder = tmp_path / "bmp" / "gen" / "0_real"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(3):  # uncompressed: changed pixels keep the file valid and its size unchanged
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"{i}.bmp")
    first = rows_of(tmp_path / "bmp", networks, tmp_path / "cache")
    target = folder / "1.bmp"
    stat, data = target.stat(), bytearray(target.read_bytes())
    data[-300:] = bytes(255 - b for b in data[-300:])
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    calls.reset()
    second = rows_of(tmp_path / "bmp", networks, tmp_path / "cache")
    assert [i for i in range(3) if second.keys[i] != first.keys[i]] == [1]
    assert calls["caption"] == 1 and calls["ground"] == 1
    assert not np.allclose(second.features.take([1])["image_embeds"][0, 0], first.features.take([1])["image_embeds"][0, 0])
    np.testing.assert_array_equal(second.features.take([0, 2])["image_embeds"], first.features.take([0, 2])["image_embeds"])


def test_adding_images_to_a_cached_folder_computes_only_them(networks, tmp_path, calls):
    root = make_cnndetection(tmp_path / "cnn", generators=("gen",), per_class=12)
    rows_of(root, networks, tmp_path / "cache")
    calls.reset()
    write_images(root / "gen" / "1_fake", 3, np.random.default_rng(7), start=100)
    rows = rows_of(root, networks, tmp_path / "cache")
    assert len(rows) == 27 and calls["caption"] == 3 and calls["ground"] == 3
    assert calls["features"] == 3  # the backbone embedded 3 images (in one batch)


def test_components_and_settings_select_their_own_stage(checkpoint, data, tmp_path, calls):
    from item_cli.testing.tiny import tiny_captioner

    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    model, processor = load_checkpoint(copy)
    records, _ = load_records(data)
    frozen_rows(records, processor, model, cache_dir=tmp_path / "cache")
    assert calls["caption"] == 8

    with torch.no_grad():  # another backbone: the annotations are reused, the features recomputed
        model.backbone.visual_projection.weight.add_(0.5)
    calls.reset()
    frozen_rows(records, processor, model, cache_dir=tmp_path / "cache")
    assert calls["caption"] == 0 and calls["features"] > 0

    tiny_captioner(copy / "captioner", seed=1)  # same architecture and name, other weights
    model, processor = load_checkpoint(copy)
    calls.reset()
    frozen_rows(records, processor, model, cache_dir=tmp_path / "cache", features=False)
    assert calls["caption"] == 8

    processor.box_threshold = 0.5  # a processor setting: its own stage, boxes below it dropped
    rows = frozen_rows(records, processor, model, cache_dir=tmp_path / "cache", features=False)
    assert calls["caption"] == 16
    pairs = [(box, score) for a in rows.annotations for box, score in zip(a.boxes, a.box_scores)]
    assert pairs and all((box is None) == (score < 0.5) for box, score in pairs)
    kinds = sorted(folder.name.split("-")[0] for folder in stage_folders(tmp_path / "cache"))
    assert kinds == ["annotations", "annotations", "annotations", "features", "features"]


def test_an_unreadable_image_is_reported_every_time_and_costs_no_network(networks, tmp_path, calls):
    root = make_cnndetection(tmp_path / "cnn", generators=("progan",), per_class=2)
    good = sorted((root / "progan" / "1_fake").iterdir())[0]
    truncated = root / "progan" / "1_fake" / f"truncated{good.suffix}"
    truncated.write_bytes(good.read_bytes()[:-200])
    for _ in range(2):
        rows = rows_of(root, networks, tmp_path / "cache")
        assert len(rows) == 4 and [s.path for s in rows.skipped] == [str(truncated)]
        assert "truncated" in rows.skipped[0].reason
    assert calls["caption"] == 4


# ---------------------------------------------------------------------------------------------- damage and interruption
def chunks(cache_dir, stage):
    return sorted(p for folder in stage_folders(cache_dir) if folder.name.startswith(stage) for p in folder.glob("*.arrow"))


def test_damaged_chunks_are_noticed_removed_and_recomputed(data, networks, tmp_path, calls, caplog):
    rows_of(data, networks, tmp_path / "cache")
    [features] = chunks(tmp_path / "cache", "features")
    features.write_bytes(features.read_bytes()[:-100])  # truncated
    calls.reset()
    with caplog.at_level("WARNING", logger="item_cli"):
        rows = rows_of(data, networks, tmp_path / "cache")
    assert len(rows) == 8 and calls["caption"] == 0 and calls["features"] > 0
    assert sum("is damaged" in r.message for r in caplog.records) == 1

    [annotations] = chunks(tmp_path / "cache", "annotations")
    damaged = bytearray(annotations.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte: the file still opens, its checksum does not match
    annotations.write_bytes(bytes(damaged))
    calls.reset()
    rows = rows_of(data, networks, tmp_path / "cache")
    assert len(rows) == 8 and calls["caption"] == 8  # recomputed, not served damaged
    assert all(a.caption == CAPTION for a in rows.annotations)


def test_ctrl_c_keeps_every_finished_batch(data, networks, tmp_path, monkeypatch):
    import item_cli.cache.compute as compute_module

    monkeypatch.setattr(compute_module, "FLUSH_ROWS", 1)  # write every batch
    calls = NetworkCalls(monkeypatch, caption=CAPTION)
    seen = {"batches": 0}
    original = compute_module.compute_batch

    def interrupted(*args, **kwargs):
        seen["batches"] += 1
        if seen["batches"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(compute_module, "compute_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rows_of(data, networks, tmp_path / "cache")  # batches of 3: the first two (6 images) finished
    monkeypatch.setattr(compute_module, "compute_batch", original)
    calls.reset()
    rows = rows_of(data, networks, tmp_path / "cache")
    assert len(rows) == 8 and calls["caption"] == 2


KILL_SCRIPT = textwrap.dedent(
    r'''
    import sys, time
    import item_cli.cache.compute as compute
    from item_detector.processing_item import ItemProcessor

    compute.FLUSH_ROWS = 1  # every batch written as soon as it is done
    def slow_caption(self, images):
        time.sleep(0.4)
        return ["a man riding a bike on the road"] * len(images)
    ItemProcessor.caption = slow_caption
    from item_cli.cli import main
    sys.exit(main(["cache", "--model", sys.argv[1], "--data", sys.argv[2], "--cache-dir", sys.argv[3], "--features",
                   "--batch-size", "1", "--feature-dtype", "float32"]))
    '''
)


def test_a_killed_run_keeps_its_finished_rows_and_the_next_computes_the_rest(checkpoint, networks, tmp_path, calls):
    root = make_cnndetection(tmp_path / "cnn", generators=("gen",), per_class=6)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(checkpoint), str(root), str(tmp_path / "cache")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(chunks(tmp_path / "cache", "features")) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(chunks(tmp_path / "cache", "features"))
    assert 3 <= finished < 12, process.stderr.read().decode()[-2000:]
    rows = rows_of(root, networks, tmp_path / "cache")
    assert len(rows) == 12 and not rows.skipped
    done_before = 12 - calls["caption"]
    assert done_before >= finished - 1 and calls["caption"] <= 12 - 2  # only what the killed run had not finished


# ---------------------------------------------------------------------------------------------- several processes
FILL_SCRIPT = textwrap.dedent(
    r'''
    import sys
    from item_detector.processing_item import ItemProcessor
    ItemProcessor.caption = lambda self, images: ["a man riding a bike on the road"] * len(images)
    from item_cli.cli import main
    sys.exit(main(["cache", "--model", sys.argv[1], "--data", sys.argv[2], "--cache-dir", sys.argv[3], "--features",
                   "--batch-size", "2", "--feature-dtype", "float32"]))
    '''
)


def test_two_runs_filling_one_cache_at_once_both_succeed(checkpoint, data, networks, tmp_path, calls):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", FILL_SCRIPT, str(checkpoint), str(data), str(tmp_path / "cache")]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err.decode()[-3000:]
        assert b"8 images cached" in out
    rows = rows_of(data, networks, tmp_path / "cache")
    assert len(rows) == 8 and calls.total() == 0  # complete and readable, whoever wrote which row
    assert not any(list(folder.glob("tmp/*")) for folder in stage_folders(tmp_path / "cache"))  # no half-written file left


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_accelerate_processes_share_the_work_and_match_one_process(checkpoint, data, networks, tmp_path, monkeypatch):
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "item_cli.commands.cache", "--model", str(checkpoint), "--data", str(data), "--features",
        "--feature-dtype", "float32", "--batch-size", "2", "--cache-dir", str(tmp_path / "sharded"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    calls = NetworkCalls(monkeypatch)  # the real tiny captioner, as in the launched processes
    sharded = rows_of(data, networks, tmp_path / "sharded")
    assert calls.total() == 0  # the two processes computed everything between them
    single = rows_of(data, networks, tmp_path / "single")
    assert sharded.column("path") == single.column("path")
    for got, want in zip(sharded.annotations, single.annotations):
        assert (got.caption, got.nouns, got.boxes) == (want.caption, want.nouns, want.boxes)
        np.testing.assert_allclose(got.box_scores, want.box_scores, atol=1e-5)
    np.testing.assert_allclose(sharded.features.take()["image_embeds"], single.features.take()["image_embeds"], atol=1e-5)


# ---------------------------------------------------------------------------------------------- looking after it
def test_info_and_prune(data, networks, tmp_path, calls, capsys):
    rows_of(data, networks, tmp_path / "cache")
    assert main(["cache", "--info", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "2 stages" in out and "| annotations |" in out and "| features |" in out and "| 8 |" in out
    feature_key = next(f.name.split("-", 1)[1] for f in stage_folders(tmp_path / "cache") if f.name.startswith("features"))
    assert main(["cache", "--prune", "--stage", feature_key[:6], "--cache-dir", str(tmp_path / "cache")]) == 0
    assert [f.name.split("-")[0] for f in stage_folders(tmp_path / "cache")] == ["annotations"]
    assert main(["cache", "--prune", "--cache-dir", str(tmp_path / "cache")]) == 2  # says what to remove
    assert "--unused-days" in capsys.readouterr().err
    assert main(["cache", "--prune", "--all", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert stage_folders(tmp_path / "cache") == []
