"""The three data layouts load with an explicit label mapping (0 = real, 1 = fake) and generator names; every
file under a folder is answered for, each real file once."""

import os

import numpy as np
import pytest
from helpers import make_cnndetection, make_genimage, write_images

from item_cli.data import detect_layout, find_files, load_records, require_labels, split_train_val, summary


def test_cnndetection_layout_labels_generators_and_categories(tmp_path):
    root = make_cnndetection(tmp_path / "cnn", generators=("biggan", "progan"), per_class=2)
    make_cnndetection(tmp_path / "cnn", generators=("cyclegan",), per_class=1, categories=("apple", "horse"), seed=1)
    records, skipped = load_records(root)
    assert skipped == []
    for record in records:
        assert record.label == {"0_real": 0, "1_fake": 1}[record.path.split("/")[-2]]
    assert summary(records) == {
        "biggan": {"real": 2, "fake": 2}, "progan": {"real": 2, "fake": 2}, "cyclegan": {"real": 2, "fake": 2},
    }
    assert {r.category for r in records if r.generator == "cyclegan"} == {"apple", "horse"}
    # One generator's folder on its own: the generator is the folder's name.
    single, _ = load_records(root / "progan")
    assert {r.generator for r in single} == {"progan"} and sorted(r.label for r in single) == [0, 0, 1, 1]
    # CNNDetection's ProGAN training folder has categories at the first level: --generator names it.
    named, _ = load_records(tmp_path / "cnn" / "cyclegan", generator="progan")
    assert {r.generator for r in named} == {"progan"} and len(named) == 4
    # A subset assembled from symbolic links (e.g. the 4-class ProGAN setting) is followed.
    (tmp_path / "subset").mkdir()
    (tmp_path / "subset" / "horse").symlink_to(tmp_path / "cnn" / "cyclegan" / "horse")
    linked, _ = load_records(tmp_path / "subset", generator="progan")
    assert len(linked) == 2 and sorted(r.label for r in linked) == [0, 1]


def test_a_symlink_loop_neither_hangs_nor_duplicates(tmp_path):
    """`ln -s . root/gen/0_real/again` once gave 84 records for 4 files, leaking images across train/val."""
    root = make_cnndetection(tmp_path / "cnn", generators=("gen",), per_class=2)
    os.symlink(".", root / "gen" / "0_real" / "again")
    os.symlink(root / "gen", root / "gen" / "1_fake" / "up")  # a loop through a parent, too
    os.symlink(root / "gen" / "0_real" / "000.png", root / "gen" / "0_real" / "same.png")  # a second name, one file
    records, skipped = load_records(root)
    assert len(records) == 4 and len({os.path.realpath(r.path) for r in records}) == 4
    assert [s.reason for s in skipped if s.path.endswith("same.png")] == [
        f"the same file as {root / 'gen' / '0_real' / '000.png'}, listed once"]
    # `item detect` walks by the same rule.
    files, _ = find_files([root])
    assert sorted(os.path.realpath(f) for f in files) == sorted(os.path.realpath(r.path) for r in records)


def test_every_entry_is_answered_for(tmp_path):
    """Files outside label folders, hidden files, FIFOs and broken links come back as skipped, with the reason."""
    root = make_cnndetection(tmp_path / "cnn", generators=("progan",), per_class=1)
    (root / "progan" / "README.txt").write_text("outside the label folders")
    (root / "progan" / "0_real" / ".DS_Store").write_bytes(b"\0")
    os.mkfifo(root / "progan" / "1_fake" / "pipe.png")
    os.symlink(tmp_path / "gone.png", root / "progan" / "1_fake" / "dangling.png")
    (root / "progan" / "1_fake" / "no_extension").write_bytes((root / "progan" / "1_fake" / "000.jpg").read_bytes())
    records, skipped = load_records(root)
    reasons = {os.path.basename(s.path): s.reason for s in skipped}
    assert reasons == {
        "README.txt": "not inside a 0_real or 1_fake folder, so it has no label",
        ".DS_Store": "hidden file",
        "pipe.png": "not a regular file (a FIFO, socket or device)",
        "dangling.png": "broken symbolic link",
    }
    # An image without an image-like name is a candidate like any other: its bytes decide, not its name.
    assert sorted(os.path.basename(r.path) for r in records) == ["000.jpg", "000.png", "no_extension"]


def test_genimage_layout_is_not_inverted(tmp_path):
    root = make_genimage(tmp_path / "genimage", per_class=2)
    assert detect_layout(root) == "genimage"
    records, _ = load_records(root)
    assert len(records) == 16
    for record in records:
        # Alphabetical order (imagefolder) would give ai = 0: here ai is fake (1), nature real (0).
        assert record.label == {"ai": 1, "nature": 0}[record.path.split("/")[-2]]
    assert {r.generator for r in records} == {"adm", "midjourney"}
    assert {r.split for r in records} == {"train", "val"}
    val, _ = load_records(root, split="val")
    assert len(val) == 8 and {r.split for r in val} == {"val"}


def test_csv_manifest_with_and_without_header(tmp_path):
    images = write_images(tmp_path / "img", 4, np.random.default_rng(0))
    (tmp_path / "with_header.csv").write_text(
        "generator,path,label\n"
        f"sdxl,img/{images[0].name},fake\nsdxl,img/{images[1].name},real\n,{images[2]},1\nflux,img/missing.png,0\n"
    )
    records, skipped = load_records(tmp_path / "with_header.csv")
    assert [r.label for r in records] == [1, 0, 1]
    assert [r.generator for r in records] == ["sdxl", "sdxl", "all"]
    assert records[0].path == str(images[0].absolute())  # relative to the manifest's folder
    assert len(skipped) == 1 and skipped[0].path.endswith("missing.png") and "No such file" in skipped[0].reason

    (tmp_path / "paths_only.csv").write_text(f"{images[0]}\n{images[3]}\n")
    unlabelled, _ = load_records(tmp_path / "paths_only.csv")
    assert [r.label for r in unlabelled] == [-1, -1]
    with pytest.raises(ValueError, match="no label"):
        require_labels(unlabelled, "training")

    (tmp_path / "bad_label.csv").write_text(f"{images[0]},maybe\n")
    with pytest.raises(ValueError, match="'maybe'.*0/real or 1/fake"):
        load_records(tmp_path / "bad_label.csv")


def test_bad_sources_raise_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_records(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="0_real,1_fake"):
        load_records(tmp_path / "empty")
    make_cnndetection(tmp_path / "both", generators=("progan",), per_class=1)
    make_genimage(tmp_path / "both", generators=("adm",), per_class=1)
    with pytest.raises(ValueError, match="--layout cnndetection"):
        load_records(tmp_path / "both")
    assert {r.generator for r in load_records(tmp_path / "both", layout="genimage")[0]} == {"adm"}
    with pytest.raises(ValueError, match="layout="):
        load_records(tmp_path / "both", layout="imagefolder")


def test_stratified_split_keeps_every_group(tmp_path):
    records, _ = load_records(make_cnndetection(tmp_path / "cnn", per_class=5))
    train, val = split_train_val(records, 0.2, seed=0)
    assert len(train) + len(val) == len(records) and not set(train) & set(val)
    assert summary([records[i] for i in val]) == {"progan": {"real": 1, "fake": 1}, "stylegan": {"real": 1, "fake": 1}}
    assert split_train_val(records, 0.2, seed=0)[1] == val  # deterministic
