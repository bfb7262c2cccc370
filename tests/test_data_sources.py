"""Data sets as sources (Parquet, save_to_disk, Hub-like folders, WebDataset): rows are records whose bytes are
the cache key, decoded by the same workers; labels checked before any network; every row once across ranks."""

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from helpers import NetworkCalls, fixed_captions, make_cnndetection
from PIL import Image

from item_cli.cli import main
from item_cli.data import Skipped, SourceOptions, iter_source_records, load_records, source_kind
from item_cli.data.decode import ImageReader
from item_cli.data.sources import record_chunks

datasets = pytest.importorskip("datasets")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

BROKEN = b"\x89PNG\r\n\x1a\n broken"
FEATURES = {"image": datasets.Image(), "label": datasets.ClassLabel(names=["real", "fake"]),
            "generator": datasets.Value("string")}


def png_bytes(rng, brightness=0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rng.integers(0, 200, (24, 32, 3)) + brightness, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def folder_rows(folder: Path) -> dict:
    """The images of a CNNDetection folder as data-set columns (sorted like the folder's records)."""
    records, _ = load_records(folder)
    return {"image": [{"bytes": Path(r.path).read_bytes(), "path": None} for r in records],
            "label": [r.label for r in records], "generator": [r.generator for r in records]}


def data_set(columns: dict, features=None):
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features or FEATURES))


def write_tar(path: Path, samples: list[tuple[str, dict]]) -> Path:
    with tarfile.open(path, "w") as archive:
        for key, files in samples:
            for extension, data in files.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


# ---------------------------------------------------------------------------------------------- evaluate
def test_a_parquet_data_set_evaluates_like_its_folder_from_the_same_cache(checkpoint, tmp_path, monkeypatch, capsys):
    folder = make_cnndetection(tmp_path / "cnn", generators=("biggan", "progan"), per_class=2)
    columns = folder_rows(folder)
    (folder / "progan" / "1_fake" / "broken.png").write_bytes(BROKEN)
    columns["image"].append({"bytes": BROKEN, "path": None})  # a row with broken bytes: skipped, the run goes on
    columns["label"].append(1)
    columns["generator"].append("progan")
    data_set(columns).to_parquet(str(tmp_path / "test.parquet"))
    common = ["--model", str(checkpoint), "--cache-dir", str(tmp_path / "cache"), "--batch-size", "4", "--no-plots"]
    with fixed_captions("a photo of a dog"):
        assert main(["evaluate", "--data", str(folder), "--output", str(tmp_path / "folder"), *common,
                     "--gallery-size", "0", "--no-report"]) == 0
    calls = NetworkCalls(monkeypatch, forbid=True)  # every row's bytes are a file's bytes: all cached
    assert main(["evaluate", "--data", str(tmp_path / "test.parquet"), "--generator-column", "generator",
                 "--output", str(tmp_path / "parquet"), *common, "--gallery-size", "1"]) == 0
    assert main(["cache", "--data", str(tmp_path / "test.parquet"), *common[:4]]) == 0  # streamed, also cached
    assert calls.total() == 0
    assert "8 images cached (annotations) in" in capsys.readouterr().out
    assert list((tmp_path / "parquet" / "gallery").glob("*.png"))  # mistakes drawn from the rows' bytes
    table = {name: (tmp_path / name / "table.md").read_text() for name in ("folder", "parquet")}
    assert table["parquet"].startswith("# ITEM on test.parquet")  # the title names the data; the table is the same
    assert table["parquet"].partition("\n")[2] == table["folder"].partition("\n")[2]
    skipped = (tmp_path / "parquet" / "skipped.csv").read_text()
    assert "test.parquet#8" in skipped and str(tmp_path) not in skipped  # the row, not a path of this machine
    scores = (tmp_path / "parquet" / "scores.csv").read_text()
    assert "test.parquet#0" in scores and str(tmp_path) not in scores


def test_an_unmapped_label_is_one_error_before_any_network(checkpoint, tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    features = {"image": datasets.Image(), "kind": datasets.Value("string")}
    data_set({"image": [{"bytes": png_bytes(rng), "path": None} for _ in range(3)], "kind": ["human", "sd15", "maybe"]},
             features).to_parquet(str(tmp_path / "words.parquet"))
    calls = NetworkCalls(monkeypatch, forbid=True)
    code = main(["evaluate", "--model", str(checkpoint), "--data", str(tmp_path / "words.parquet"), "--label-column",
                 "kind", "--label-map", "human=real,sd15=fake", "--output", str(tmp_path / "out")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "'kind'" in errors[0] and "'maybe'" in errors[0]
    assert calls.total() == 0 and not (tmp_path / "out").exists()
    records, _ = load_records(tmp_path / "words.parquet",
                              options=SourceOptions(label_column="kind", label_map="human=real,sd15=fake,maybe=1"))
    assert [record.label for record in records] == [0, 1, 1]


# ---------------------------------------------------------------------------------------------- the forms
def test_save_to_disk_and_hub_like_folders_load_through_datasets(tmp_path):
    rng = np.random.default_rng(1)
    images = [png_bytes(rng, 40 * (i % 2)) for i in range(4)]
    columns = {"image": [{"bytes": b, "path": None} for b in images], "label": [0, 1, 0, 1], "generator": ["a"] * 4}
    data_set(columns).save_to_disk(str(tmp_path / "saved"))
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    data_set(columns).to_parquet(str(repo / "data" / "test-00000-of-00001.parquet"))
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                    "  - split: test\n    path: data/test-*\n---\n# fakes\n")
    assert (source_kind(tmp_path / "saved"), source_kind(repo), source_kind(tmp_path)) == ("disk", "repo", None)
    for source, split in ((tmp_path / "saved", None), (repo, "test")):
        records, skipped = load_records(source, split=split)
        assert not skipped and [r.label for r in records] == [0, 1, 0, 1]
        # The content key is the sha256 of the stored bytes, exactly as a file's.
        assert [hashlib.sha256(r.row.read_bytes()).hexdigest() for r in records] == \
            [hashlib.sha256(b).hexdigest() for b in images]
    assert records[2].path == "repo:test#2"
    saved = [r.path for r in load_records(tmp_path / "saved")[0]]  # streamed or not, a row has one identity
    assert [r.path for r in iter_source_records(str(tmp_path / "saved"))] == saved == [f"saved#{i}" for i in range(4)]
    shares = [[r.path for r in iter_source_records(str(tmp_path / "saved"), rank=k, world_size=3)] for k in range(3)]
    assert sorted(sum(shares, [])) == saved and all(shares)
    with pytest.raises(ValueError, match="train.*test"):
        load_records(repo, split="train")
    with pytest.raises(ValueError, match="--image-column 'picture'.*no such column"):
        load_records(tmp_path / "saved", options=SourceOptions(image_column="picture"))


def test_webdataset_shards_stream_and_decode(tmp_path):
    rng = np.random.default_rng(2)
    write_tar(tmp_path / "shard-0000.tar", [(f"{i:04d}", {"png": png_bytes(rng), "cls": str(i % 2).encode()}) for i in range(4)])
    write_tar(tmp_path / "shard-0001.tar", [("0004", {"png": png_bytes(rng), "cls": b"1"}), ("0005", {"png": BROKEN, "cls": b"0"})])
    rows = list(iter_source_records(str(tmp_path / "shard-*.tar")))
    assert [r.path for r in rows] == [f"shard-*.tar#shard-000{i // 4}.tar/{i:04d}" for i in range(6)]
    assert [r.label for r in rows] == [0, 1, 0, 1, 1, 0]
    with ImageReader(workers=2) as reader:
        decoded = list(reader.read(rows))
    assert [d.image.size for d in decoded[:5]] == [(32, 24)] * 5
    assert decoded[5].path == rows[5].path and "not a file of a supported format" in decoded[5].error
    assert decoded[0].key == hashlib.sha256(rows[0].row.read_bytes()).hexdigest()
    # `item cache` holds one chunk of streamed rows at a time: by count, or by bytes.
    assert [len(r) for r, _ in record_chunks(str(tmp_path / "shard-*.tar"), size=4)] == [4, 2]
    assert [len(r) for r, _ in record_chunks(str(tmp_path / "shard-*.tar"), max_bytes=1)] == [1] * 6


def test_a_row_without_an_image_is_skipped_by_name(tmp_path):
    rng = np.random.default_rng(3)
    data_set({"image": [{"bytes": png_bytes(rng), "path": None}, None], "label": [0, 1], "generator": ["a", "a"]}) \
        .to_parquet(str(tmp_path / "gap.parquet"))
    streamed = list(iter_source_records(str(tmp_path / "gap.parquet")))
    assert isinstance(streamed[1], Skipped) and streamed[1] == Skipped("gap.parquet#1", "the row has no image")
    records, _ = load_records(tmp_path / "gap.parquet")
    with ImageReader(workers=1) as reader:
        decoded = list(reader.read(records))
    assert decoded[0].image is not None and decoded[1].error == "the row has no image"


# ---------------------------------------------------------------------------------------------- ranks
@pytest.mark.parametrize("files, id_column", [(3, None), (1, None), (2, "name")])
def test_two_ranks_answer_every_row_exactly_once(tmp_path, files, id_column):
    rng = np.random.default_rng(4)
    features = {**FEATURES, "name": datasets.Value("string")}
    for part in range(files):
        data_set({"image": [{"bytes": png_bytes(rng), "path": None} for _ in range(5)], "label": [0, 1, 0, 1, 0],
                  "generator": ["g"] * 5, "name": [f"img-{part}-{i}" for i in range(5)]}, features) \
            .to_parquet(str(tmp_path / f"part-{part}.parquet"))
    options = SourceOptions(id_column=id_column)
    source = str(tmp_path / "part-*.parquet")
    alone = [r.path for r in iter_source_records(source, options)]
    shares = [[r.path for r in iter_source_records(source, options, rank=rank, world_size=2)] for rank in (0, 1)]
    assert len(alone) == len(set(alone)) == 5 * files
    assert sorted(shares[0] + shares[1]) == sorted(alone) and not set(shares[0]) & set(shares[1])
    assert shares[0] and shares[1]


def test_the_audit_reads_rows_as_it_reads_files(tmp_path):
    folder = make_cnndetection(tmp_path / "cnn", generators=("sd",), per_class=3)
    data_set(folder_rows(folder)).to_parquet(str(tmp_path / "sd.parquet"))
    for name, source in (("folder", folder), ("parquet", tmp_path / "sd.parquet")):
        assert main(["audit", "--data", str(source), "--output", str(tmp_path / name), "--include-files",
                     "--folds", "2"]) == 0
    files = {name: json.loads((tmp_path / name / "audit.json").read_text())["files"] for name in ("folder", "parquet")}
    assert [f["path"] for f in files["parquet"]] == [f"sd.parquet#{i}" for i in range(6)]
    strip = [{key: value for key, value in f.items() if key != "path"} for f in files["folder"]]
    # Named sets mix folders and data sets; the data-set options apply to the data sets only.
    assert main(["audit", "--data", f"a={folder}", "--data", f"b={tmp_path / 'sd.parquet'}", "--label-column", "label",
                 "--folds", "2"]) == 0
    assert [{key: value for key, value in f.items() if key != "path"} for f in files["parquet"]] == strip


def test_class_names_are_checked_before_the_first_row(tmp_path):
    rng = np.random.default_rng(5)
    features = {"image": datasets.Image(), "label": datasets.ClassLabel(names=["human", "ai-made", "unsure"])}
    data_set({"image": [{"bytes": png_bytes(rng), "path": None}] * 2, "label": [0, 1]}, features) \
        .to_parquet(str(tmp_path / "names.parquet"))
    rows = iter_source_records(str(tmp_path / "names.parquet"), SourceOptions(label_map="ai-made=fake"))
    with pytest.raises(ValueError, match="Label column 'label' holds 'unsure'"):
        next(rows)
    options = SourceOptions(label_map="ai-made=fake,unsure=1")  # human: a real word already
    assert [r.label for r in iter_source_records(str(tmp_path / "names.parquet"), options)] == [0, 1]
