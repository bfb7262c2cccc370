"""The three data layouts load with an explicit label mapping (0 = real, 1 = fake) and generator names."""

import pytest
from item_data_helpers import make_cnndetection, make_genimage, write_images

from item_cli.data import (
    detect_layout,
    load_dataset,
    require_labels,
    split_train_val,
    summary,
)


def _by_path(dataset):
    return {path: row for path, row in zip(dataset["path"], dataset.to_list())}


def test_cnndetection_layout_labels_generators_and_categories(tmp_path):
    root = make_cnndetection(tmp_path / "cnn", generators=("biggan", "progan"), per_class=2)
    make_cnndetection(tmp_path / "cnn", generators=("cyclegan",), per_class=1, categories=("apple", "horse"), seed=1)
    errors = []
    dataset = load_dataset(root, errors=errors)
    assert errors == []
    assert dataset.features["label"].names == ["real", "fake"]
    for row in dataset:
        folder = row["path"].split("/")[-2]
        assert row["label"] == {"0_real": 0, "1_fake": 1}[folder]
    assert summary(dataset) == {
        "biggan": {"real": 2, "fake": 2}, "progan": {"real": 2, "fake": 2}, "cyclegan": {"real": 2, "fake": 2},
    }
    categories = {row["category"] for row in dataset if row["generator"] == "cyclegan"}
    assert categories == {"apple", "horse"}
    # One generator's folder on its own: the generator is the folder's name.
    single = load_dataset(root / "progan")
    assert set(single["generator"]) == {"progan"} and sorted(single["label"]) == [0, 0, 1, 1]
    # CNNDetection's ProGAN training folder has categories at the first level: --generator names it.
    named = load_dataset(tmp_path / "cnn" / "cyclegan", generator="progan")
    assert set(named["generator"]) == {"progan"} and len(named) == 4
    # A subset assembled from symbolic links (e.g. the 4-class ProGAN setting) is followed.
    (tmp_path / "subset").mkdir()
    (tmp_path / "subset" / "horse").symlink_to(tmp_path / "cnn" / "cyclegan" / "horse")
    linked = load_dataset(tmp_path / "subset", generator="progan")
    assert len(linked) == 2 and sorted(linked["label"]) == [0, 1]


def test_genimage_layout_is_not_inverted(tmp_path):
    root = make_genimage(tmp_path / "genimage", per_class=2)
    assert detect_layout(root) == "genimage"
    dataset = load_dataset(root)
    assert len(dataset) == 16
    for row in dataset:
        folder = row["path"].split("/")[-2]
        # Alphabetical order (imagefolder) would give ai = 0: here ai is fake (1), nature real (0).
        assert row["label"] == {"ai": 1, "nature": 0}[folder]
        assert dataset.features["label"].int2str(row["label"]) == {"ai": "fake", "nature": "real"}[folder]
    assert set(dataset["generator"]) == {"adm", "midjourney"}
    assert set(dataset["split"]) == {"train", "val"}
    val = load_dataset(root, split="val")
    assert len(val) == 8 and set(val["split"]) == {"val"}


def test_csv_manifest_with_and_without_header(tmp_path):
    images = write_images(tmp_path / "img", 4, __import__("numpy").random.default_rng(0))
    (tmp_path / "with_header.csv").write_text(
        "generator,path,label\n"
        f"sdxl,img/{images[0].name},fake\nsdxl,img/{images[1].name},real\n,{images[2]},1\nflux,img/missing.png,0\n"
    )
    errors = []
    dataset = load_dataset(tmp_path / "with_header.csv", errors=errors)
    assert dataset["label"] == [1, 0, 1]
    assert dataset["generator"] == ["sdxl", "sdxl", "all"]
    assert dataset["path"][0] == str(images[0].resolve())  # relative to the manifest's folder
    assert len(errors) == 1 and errors[0][0].endswith("missing.png") and "not found" in errors[0][1]

    (tmp_path / "paths_only.csv").write_text(f"{images[0]}\n{images[3]}\n")
    unlabelled = load_dataset(tmp_path / "paths_only.csv")
    assert unlabelled["label"] == [-1, -1]
    with pytest.raises(ValueError, match="no label"):
        require_labels(unlabelled, "training")

    (tmp_path / "bad_label.csv").write_text(f"{images[0]},maybe\n")
    with pytest.raises(ValueError, match="'maybe'.*0/real or 1/fake"):
        load_dataset(tmp_path / "bad_label.csv")


def test_unreadable_and_non_image_files_are_reported_and_skipped(tmp_path):
    root = make_cnndetection(tmp_path / "cnn", generators=("progan",), per_class=2)
    (root / "progan" / "1_fake" / "broken.png").write_bytes(b"not an image at all")
    (root / "progan" / "0_real" / "notes.txt").write_text("hello")
    (root / "progan" / "0_real" / ".DS_Store").write_bytes(b"\0")
    errors = []
    dataset = load_dataset(root, errors=errors)
    assert len(dataset) == 4
    reported = {path.split("/")[-1]: reason for path, reason in errors}
    assert set(reported) == {"broken.png", "notes.txt"}
    assert "cannot read as an image" in reported["broken.png"]


def test_bad_sources_raise_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="0_real,1_fake"):
        load_dataset(tmp_path / "empty")
    make_cnndetection(tmp_path / "both", generators=("progan",), per_class=1)
    make_genimage(tmp_path / "both", generators=("adm",), per_class=1)
    with pytest.raises(ValueError, match="layout='cnndetection'"):
        load_dataset(tmp_path / "both")
    assert set(load_dataset(tmp_path / "both", layout="genimage")["generator"]) == {"adm"}
    with pytest.raises(ValueError, match="layout="):
        load_dataset(tmp_path / "both", layout="imagefolder")


def test_stratified_split_keeps_every_group(tmp_path):
    dataset = load_dataset(make_cnndetection(tmp_path / "cnn", per_class=5))
    train, val = split_train_val(dataset, 0.2, seed=0)
    assert len(train) + len(val) == len(dataset)
    assert not set(train["path"]) & set(val["path"])
    assert summary(val) == {"progan": {"real": 1, "fake": 1}, "stylegan": {"real": 1, "fake": 1}}
    assert split_train_val(dataset, 0.2, seed=0)[1]["path"] == val["path"]  # deterministic
