"""Hostile files: every input answered for exactly once, no traceback, no hang, whatever the folder holds.

`item detect` runs in a subprocess on a corpus from `item_cli.testing.hostile` (every format and mode, bombs,
truncations, byte flips, FIFOs, link loops, file names that are not UTF-8 ...), as a user runs it: nothing is
patched, and a hang fails the test through the subprocess timeout. The decoding pool is then pushed directly
(a decoder that blocks, a worker that dies, a worker over its memory cap), and the Python API is given what the
command line never passes on (empty lists, 0-pixel images, boxes at infinity).
"""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from item_cli.console import plural
from item_cli.data import display_path
from item_cli.data.decode import ImageReader
from item_cli.testing.hostile import EITHER, EXTENSIONS, SCORE, SKIP, encode, photo, png_header, write_hostile_corpus
from item_detector.images_item import load_image

REPO = Path(__file__).resolve().parent.parent
CORPUS_COUNT = 24  # random variants: about 310 files, under a minute of `item detect` on 2 cores
DETECT_TIMEOUT_S = 420  # far above a normal run: reaching it means something hangs


def run_detect(checkpoint, *inputs, json_lines=True, env=None) -> subprocess.CompletedProcess:
    """`item detect INPUTS --model CHECKPOINT [--json]` in a fresh process; stdout and stderr as bytes."""
    command = [sys.executable, "-m", "item_cli.cli", "detect", *map(os.fspath, inputs), "--model", str(checkpoint),
               "--device", "cpu", "--batch-size", "8", *(["--json"] if json_lines else [])]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(command, capture_output=True, env=environment, timeout=DETECT_TIMEOUT_S, cwd=REPO)


def decode_worker_pids() -> list[int]:
    """The decoding processes this test process started (children running `item_cli.data.decode`)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"item_cli.data.decode" in command:
            pids.append(int(entry))
    return pids


# ---------------------------------------------------------------------------------------------- item detect --json
def test_detect_answers_for_every_hostile_file(checkpoint, tmp_path):
    """One run over the corpus, checked four ways (one test, so that `pytest -n 2` runs `item detect` once)."""
    manifest = write_hostile_corpus(tmp_path / "corpus", count=CORPUS_COUNT, seed=0)
    started = time.monotonic()
    run = run_detect(checkpoint, manifest.folder)
    seconds = time.monotonic() - started
    stderr = run.stderr.decode("utf-8", "replace")
    assert run.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    records = [json.loads(line) for line in run.stdout.decode("ascii").splitlines()]  # a line not JSON fails here
    errors = [record["error"] for record in records if "error" in record]
    print(f"\nhostile corpus: {len(manifest.files)} files, {len(records) - len(errors)} results, {len(errors)} skips, "
          f"{sum('crashed' in e for e in errors)} crashes, {sum('longer than' in e for e in errors)} hangs, "
          f"{seconds:.0f} s; notes: {manifest.notes}")
    assert f"{plural(len(records) - len(errors), 'image')} scored, {plural(len(errors), 'file')} skipped" in stderr
    assert not [e for e in errors if "crashed" in e or "longer than" in e]  # no decoder of this corpus dies or hangs
    check_every_file_once(manifest, records)
    printed = {os.fsencode(record["path"]): record for record in records}  # \udcXX escapes back to the name's bytes
    check_refusals(manifest, printed)
    check_scored(manifest, printed)


def check_every_file_once(manifest, records) -> None:
    printed = collections.Counter(os.fsencode(record["path"]) for record in records)
    expected = collections.Counter(os.fsencode(entry.path) for entry in manifest.files)
    assert printed == expected  # nothing lost, nothing twice, nothing from inside the link loops
    # the manifest lists every regular file under the folder (a file it forgot would go unchecked)
    on_disk = {os.fsencode(os.path.join(root, name)) for root, _, names in os.walk(manifest.folder) for name in names}
    assert {path for path in on_disk if os.path.isfile(path)} <= set(expected)
    names = {os.fsencode(entry.path.name) for entry in manifest.files}
    assert {b"latin1-caf\xe9.png", b"new\nline.png", b"\xff\xfe not utf-8.jpg"} <= names


def check_refusals(manifest, printed) -> None:
    for entry in manifest.expecting(SKIP):
        record = printed[os.fsencode(entry.path)]
        assert "error" in record, f"{entry.kind} was scored: {display_path(entry.path)}"
        assert any(word in record["error"].lower() for word in entry.reason), (entry.kind, record["error"])
    kinds = {entry.kind for entry in manifest.expecting(SKIP)}
    for kind in ("PNG header 1 x 100,000,000", "EPS renamed .jpg", "PDF renamed .jpg", "zero bytes: empty.jpg",
                 "text file caption.jpg", "damaged AVIF named .png", "6 GiB file of zeros", "FIFO", "hidden file",
                 "symbolic link to a listed file", "dangling symbolic link", "PNG cut at 8"):
        assert kind in kinds, f"the corpus has no {kind!r}: {manifest.notes}"
    bomb = printed[os.fsencode(manifest.find("PNG header 1 x 100,000,000").path)]["error"]
    assert "1 x 100000000" in bomb and "decompression bomb" in bomb


def check_scored(manifest, printed) -> None:
    for entry in manifest.expecting(SCORE):
        record = printed[os.fsencode(entry.path)]
        assert "error" not in record, (entry.kind, record.get("error"))
        assert 0.0 <= record["fake_probability"] <= 1.0 and isinstance(record["caption"], str)
    scored = {entry.kind for entry in manifest.expecting(SCORE)}
    formats = {kind.split()[0] for kind in scored if kind.split()[0] in EXTENSIONS}
    assert formats >= {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "JPEG2000", "PPM", "TGA", "ICO"}, formats
    for kind in ("PNG I;16", "TIFF I;16", "TIFF F", "TIFF CMYK", "JPEG CMYK", "PNG P+transparency", "PNG LA", "TIFF LAB",
                 "multi-frame GIF", "multi-frame TIFF", "1 x 200000 PNG", "200000 x 1 PNG", "1 x 1 JPEG",
                 "9000 x 9000 PNG (81 Mpx, under the limit)", "non-ASCII name", "EXIF orientation 6"):
        assert kind in scored, kind
    either = [printed[os.fsencode(entry.path)] for entry in manifest.expecting(EITHER)]
    assert any("error" not in record for record in either) and any("error" in record for record in either)


def test_exif_orientation_is_applied(tmp_path):
    manifest = write_hostile_corpus(tmp_path / "corpus", count=0)
    rotated = manifest.find("EXIF orientation 6").path
    with Image.open(rotated) as stored:
        assert stored.size == (64, 32)
    assert load_image(rotated).size == (32, 64)  # upright: a phone photo held sideways is not read sideways
    assert load_image(manifest.find("EXIF orientation 3").path).size == (64, 32)


# ---------------------------------------------------------------------------------------------- item detect, text
def test_text_output_with_names_that_are_not_utf8(checkpoint, tmp_path):
    """Text mode prints each name on one line, escaped as the locale needs, and answers for every file."""
    data = tmp_path / "plain.png"
    photo(np.random.default_rng(1)).save(data)
    folder = os.fsencode(tmp_path)
    for name in (b"latin1-caf\xe9.png", b"new\nline.png", "日本語 line\u2028break.png".encode()):
        with open(os.path.join(folder, name), "wb") as out:
            out.write(data.read_bytes())
    (tmp_path / "empty.png").touch()
    scored = sorted(Path(os.fsdecode(os.path.join(folder, name))) for name in os.listdir(folder) if name != b"empty.png")
    for env, encoding in (({}, "utf-8"), ({"PYTHONIOENCODING": "ascii"}, "ascii")):
        run = run_detect(checkpoint, tmp_path, json_lines=False, env=env)
        out, err = run.stdout.decode(encoding), run.stderr.decode("utf-8", "replace")
        assert run.returncode == 0 and "Traceback" not in err and "UnicodeEncodeError" not in err, err[-2000:]
        verdicts = [line for line in out.split("\n") if line.startswith(str(tmp_path))]
        shown = [display_path(path).encode(encoding, "backslashreplace").decode(encoding) for path in scored]
        assert sorted(line.split(": ")[0] for line in verdicts) == sorted(shown)  # one line per image, name intact
        assert "empty.png: the file is empty" in err
        assert "4 images scored, 1 file skipped" in err


# ---------------------------------------------------------------------------------------------- the decoding pool
@pytest.fixture
def good_images(tmp_path):
    paths = []
    for i, size in enumerate([(40, 30), (24, 36)]):
        paths.append(tmp_path / f"good{i}.png")
        photo(np.random.default_rng(i), size).save(paths[-1])
    return paths


def test_a_decoder_that_blocks_is_stopped_after_the_timeout(tmp_path, good_images):
    """A FIFO handed straight to the reader (the finder never would) blocks the worker's open() for ever."""
    fifo = tmp_path / "blocks.png"
    os.mkfifo(fifo)
    with ImageReader(workers=2, timeout_s=2.0) as reader:
        started = time.monotonic()
        decoded = list(reader.read([good_images[0], fifo, good_images[1]]))
        elapsed = time.monotonic() - started
    assert [Path(d.path) for d in decoded] == [good_images[0], fifo, good_images[1]]  # in order, each once
    assert "longer than 2 s" in decoded[1].error and decoded[1].image is None
    assert decoded[0].image.size == (40, 30) and decoded[2].image.size == (24, 36)
    assert 2.0 <= elapsed < 15.0


def test_a_worker_that_dies_costs_only_its_file(tmp_path, good_images):
    fifo = tmp_path / "blocks.png"
    os.mkfifo(fifo)
    with ImageReader(workers=1, timeout_s=120.0) as reader:
        killer = threading.Timer(1.0, lambda: [os.kill(pid, signal.SIGKILL) for pid in decode_worker_pids()])
        started = time.monotonic()
        killer.start()
        decoded = list(reader.read([fifo, good_images[0]]))
        elapsed = time.monotonic() - started
        killer.join()
    assert "crashed" in decoded[0].error and "-9" in decoded[0].error  # SIGKILL, not the 120 s timeout
    assert decoded[1].error is None and decoded[1].image.size == (40, 30)
    assert elapsed < 60.0


def test_a_worker_over_its_memory_cap_skips_the_file(tmp_path, good_images):
    """An allowed 81-megapixel image needs ~600 MB more than a worker holds at rest; cap it 256 MB above that."""
    big = tmp_path / "big.png"
    big.write_bytes(png_header(9000, 9000, b"\0" * (9001 * 9000)))
    with ImageReader(workers=1) as reader:  # the default cap: it decodes, and shows what a worker holds at rest
        assert next(iter(reader.read([good_images[0]]))).error is None
        (pid,) = decode_worker_pids()
        status = Path(f"/proc/{pid}/status").read_text()
        at_rest = int(next(line for line in status.splitlines() if line.startswith("VmPeak:")).split()[1]) * 1024
    with ImageReader(workers=1, memory_limit=at_rest + (256 << 20)) as reader:
        decoded = list(reader.read([good_images[0], big, good_images[1]]))
    assert decoded[0].error is None and decoded[2].image.size == (24, 36)
    assert "memory" in decoded[1].error or "crashed" in decoded[1].error, decoded[1].error
    with ImageReader(workers=1) as reader:  # under the default cap it is an ordinary image
        assert next(iter(reader.read([big]))).image.size == (9000, 9000)


# ---------------------------------------------------------------------------------------------- the Python API
@pytest.fixture(scope="module")
def pipe(checkpoint):
    from transformers import pipeline

    return pipeline("image-classification", model=str(checkpoint), trust_remote_code=True, device="cpu")


def test_pipeline_names_the_broken_path_or_records_it(pipe, good_images, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good_images[0].read_bytes()[:1000])  # cut inside the pixel data
    with pytest.raises(ValueError) as raised:
        pipe([good_images[0], str(broken), good_images[1]])
    assert str(broken) in str(raised.value) and "Image 1" in str(raised.value)
    results = pipe([str(good_images[0]), str(broken), str(good_images[1])], on_error="record", batch_size=2)
    assert len(results) == 3
    assert results[1]["input"] == str(broken) and "truncated" in results[1]["error"].lower()
    for result in (results[0], results[2]):
        assert {item["label"] for item in result} == {"real", "fake"}
    assert pipe([]) == []


@pytest.mark.parametrize("image, words", [
    (Image.new("RGB", (0, 0)), "0 x 0"),
    (Image.new("RGB", (0, 5)), "0 x 5"),
    (np.zeros((0, 0, 3), dtype=np.uint8), "0 x 0"),
    (np.zeros((0,), dtype=np.uint8), "shape (0,)"),
    (np.array([]), "float64"),
])
def test_pipeline_refuses_images_without_pixels(pipe, image, words):
    with pytest.raises(ValueError) as raised:
        pipe(image)
    assert words in str(raised.value)


def test_a_box_at_infinity_is_refused_naming_it(pipe):
    image = photo(np.random.default_rng(0))
    with pytest.raises(ValueError) as raised:
        pipe.processor.annotate([image], captions=["a man"], nouns=[["man"]], boxes=[[[0.0, 0.0, float("inf"), 5.0]]])
    assert "inf" in str(raised.value) and "man" in str(raised.value)


def test_pipeline_refuses_bombs_and_documents_before_decoding(pipe, tmp_path):
    """In-process reading (no worker) holds the same rules: the header's size and the format list come first."""
    bomb, document = tmp_path / "tall.png", tmp_path / "report.jpg"
    bomb.write_bytes(png_header(1, 100_000_000))
    document.write_bytes(encode(photo(np.random.default_rng(0)), "EPS"))
    results = pipe([str(bomb), str(document)], on_error="record")
    assert [result["input"] for result in results] == [str(bomb), str(document)]
    assert "decompression bomb" in results[0]["error"] and "1 x 100000000" in results[0]["error"]
    assert "not a file of a supported format" in results[1]["error"]
