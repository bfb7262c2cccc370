"""The shortcut audit: header-only reads, JPEG quality from the tables, and verdicts that name the shortcut."""

import json

import numpy as np
import pytest
from PIL import Image, ImageFile

from item_cli.audit import audit
from item_cli.audit.files import read_metadata
from item_cli.jpeg_quality import estimate_jpeg_quality


def _write(path, size, rng, quality=90, exif=None):
    """A noise image of `size` (width, height), saved by its suffix (JPEG at `quality`)."""
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    options = {"quality": quality} if path.suffix == ".jpg" else {}
    if exif is not None:
        options["exif"] = exif
    image.save(path, **options)
    return str(path)


def _dataset(root, real, fake, count=20, seed=0):
    """Records for `count` reals and `count` fakes; `real` / `fake` map (index, rng) -> write options."""
    rng = np.random.default_rng(seed)
    records = []
    for label, options in ((0, real), (1, fake)):
        for index in range(count):
            spec = options(index, rng)
            path = root / f"{label}_{index}.{spec.pop('suffix', 'jpg')}"
            records.append({"path": _write(path, rng=rng, **spec), "label": label, "generator": f"g{index % 2}"})
    return records


def _varied_size(rng):
    return int(rng.integers(40, 72)), int(rng.integers(40, 72))


@pytest.mark.parametrize("quality", [50, 75, 90, 95])
def test_jpeg_quality_recovered_from_the_tables(tmp_path, quality):
    rng = np.random.default_rng(quality)
    path = _write(tmp_path / "a.jpg", (40, 32), rng, quality=quality)
    meta = read_metadata(path, 0, "g")
    assert abs(meta.jpeg_quality - quality) <= 2
    assert meta.jpeg_tables == "IJG"  # Pillow writes libjpeg's tables: the estimate is exact
    assert (meta.format, meta.width, meta.height, meta.subsampling) == ("JPEG", 40, 32, "4:2:0")
    grey = tmp_path / "grey.jpg"
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(grey, quality=quality)
    assert read_metadata(str(grey), 0, "g").jpeg_quality == quality  # one table only


def test_jpeg_quality_of_custom_tables_and_of_other_formats(tmp_path):
    rng = np.random.default_rng(0)
    png = read_metadata(_write(tmp_path / "a.png", (20, 20), rng), 1, "g")
    assert (png.format, png.jpeg_quality, png.jpeg_tables, png.subsampling) == ("PNG", None, None, None)
    path = tmp_path / "photoshop.jpg"
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path, quality="web_high")
    meta = read_metadata(str(path), 0, "g")
    assert meta.jpeg_tables == "custom" and 1 <= meta.jpeg_quality <= 100
    assert estimate_jpeg_quality(None) is None
    with pytest.raises(ValueError, match="64"):
        estimate_jpeg_quality({0: [1, 2, 3]})


@pytest.mark.parametrize("fakes_png", [True, False], ids=["png-fakes", "png-reals"])
def test_png_against_jpeg_is_flagged_and_named(tmp_path, fakes_png):
    png = lambda i, rng: {"suffix": "png", "size": _varied_size(rng)}  # noqa: E731
    jpeg = lambda i, rng: {"suffix": "jpg", "size": _varied_size(rng), "quality": 90}  # noqa: E731
    records = _dataset(tmp_path, real=jpeg if fakes_png else png, fake=png if fakes_png else jpeg)
    report = audit(records)
    assert report.metadata_auc >= 0.95 and report.flagged
    assert report.shortcuts[0]["feature"] == "file format"
    expected = "all fakes are PNG, all reals JPEG" if fakes_png else "all fakes are JPEG, all reals PNG"
    assert expected in report.warnings[0]
    assert report.warnings[0].startswith("AUC 1.00 from metadata alone")
    markdown = report.to_markdown()
    formats_row = "| formats | JPEG 100% | PNG 100% |" if fakes_png else "| formats | PNG 100% | JPEG 100% |"
    assert formats_row in markdown and "**Warning:**" in markdown


def test_same_encoding_for_both_classes_is_not_flagged(tmp_path):
    same = lambda i, rng: {"suffix": "jpg", "size": (48, 48), "quality": 95}  # noqa: E731
    report = audit(_dataset(tmp_path, real=same, fake=same, count=24))
    assert abs(report.metadata_auc - 0.5) < 0.2
    assert report.warnings == [] and report.shortcuts == [] and not report.flagged
    assert all(abs(auc - 0.5) < 0.25 for auc in report.feature_aucs.values())
    assert "No shortcut found" in report.to_markdown()


def test_size_shortcut_is_described_in_words(tmp_path):
    report = audit(
        _dataset(
            tmp_path,
            real=lambda i, rng: {"size": _varied_size(rng), "quality": 90},
            fake=lambda i, rng: {"size": (64, 64), "quality": 90},
        )
    )
    assert report.flagged and report.shortcuts[0]["feature"] == "image size"
    assert "all fakes are 64x64, reals vary (" in report.warnings[0]
    assert report.per_class["fake"]["most_common_size"] == {"size": "64x64", "share": 1.0}


def test_exif_and_jpeg_quality_shortcuts_are_described_direction_neutrally(tmp_path):
    camera = Image.Exif()
    camera[0x010F] = "CameraMaker"  # Make
    report = audit(
        _dataset(
            tmp_path,
            real=lambda i, rng: {"size": (40, 40), "quality": 75, "exif": camera},
            fake=lambda i, rng: {"size": (40, 40), "quality": 95},
        )
    )
    text = " ".join(report.warnings)
    assert "JPEG quality 95 for all fakes, 75 for all reals" in text
    assert "EXIF in 100% of reals, 0% of fakes" in text
    assert report.per_class["real"]["camera_share"] == 1.0 and report.per_class["fake"]["exif_share"] == 0.0


def test_a_shortcut_of_one_generator_is_reported_for_that_generator(tmp_path):
    # Across the data set formats are balanced; within each generator they split by class.
    def real(i, rng):
        return {"suffix": "png" if i % 2 else "jpg", "size": (40, 40), "quality": 90}

    def fake(i, rng):
        return {"suffix": "jpg" if i % 2 else "png", "size": (40, 40), "quality": 90}

    report = audit(_dataset(tmp_path, real=real, fake=fake, count=24))
    assert report.metadata_auc < 0.8
    assert report.per_generator["g1"]["metadata_auc"] >= 0.95
    assert report.per_generator["g1"]["compared_with"] == "own reals"
    assert any(w.startswith("Generator 'g1'") and "all fakes are JPEG, all reals PNG" in w for w in report.warnings)


def test_unreadable_files_are_skipped_with_a_reason(tmp_path):
    same = lambda i, rng: {"size": (32, 32)}  # noqa: E731
    records = _dataset(tmp_path, real=same, fake=same, count=6)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    (tmp_path / "folder.png").mkdir()
    records += [
        {"path": str(tmp_path / "broken.jpg"), "label": 1, "generator": "g0"},
        {"path": str(tmp_path / "missing.png"), "label": 0, "generator": "g0"},
        {"path": str(tmp_path / "folder.png"), "label": 0, "generator": "g0"},
    ]
    report = audit(records)
    reasons = {entry["path"].rsplit("/", 1)[-1]: entry["reason"] for entry in report.skipped}
    assert reasons.keys() == {"broken.jpg", "missing.png", "folder.png"}
    assert reasons["missing.png"] == "file not found" and "folder" in reasons["folder.png"]
    assert len(report.files) == 12 and report.per_class["real"]["images"] == 6
    assert "## Skipped files" in report.to_markdown()


def test_records_may_be_objects_with_numpy_labels(tmp_path):
    from types import SimpleNamespace

    same = lambda i, rng: {"size": (32, 32)}  # noqa: E731
    records = [SimpleNamespace(path=r["path"], label=np.int64(r["label"]), generator=r["generator"])
               for r in _dataset(tmp_path, real=same, fake=same, count=4)]
    report = audit(records, folds=2)
    assert len(report.files) == 8 and {f.label for f in report.files} == {0, 1}
    assert set(report.per_generator) == {"g0", "g1"}


def test_pixels_are_never_decoded(tmp_path, monkeypatch):
    png = lambda i, rng: {"suffix": "png", "size": (32, 32)}  # noqa: E731
    records = _dataset(tmp_path, real=lambda i, rng: {"size": (32, 32)}, fake=png, count=4)

    def refuse(self):
        raise AssertionError("the audit decoded pixel data")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    report = audit(records, folds=2)
    assert len(report.files) == 8 and report.skipped == []


def test_report_is_json_ready_and_copes_with_one_class(tmp_path):
    same = lambda i, rng: {"size": (32, 32)}  # noqa: E731
    records = _dataset(tmp_path, real=same, fake=same, count=3)
    only_reals = [r for r in records if r["label"] == 0]
    report = audit(only_reals)
    content = report.to_dict(include_files=True)
    json.dumps(content, allow_nan=False)  # NaN AUCs became None
    assert content["metadata_auc"] is None and content["per_class"]["fake"] is None
    assert content["files"][0]["format"] == "JPEG" and "at least 2 readable images of each class" in content["notes"][0]
    assert report.warnings == [] and "No verdict" in report.to_markdown()


@pytest.mark.parametrize(
    "records, options, error, match",
    [
        ("a.jpg", {}, TypeError, "list of dicts"),
        ([["a.jpg", 0]], {}, TypeError, r"records\[0\]"),
        ([{"path": "a.jpg", "label": 2}], {}, ValueError, r"records\[0\].*label 2.*0 for real"),
        ([{"path": "", "label": 0}], {}, ValueError, "path"),
        ([{"path": "a.jpg", "label": -1}], {}, ValueError, "unlabelled images cannot be audited"),
        ([], {"folds": 1}, ValueError, "folds=1"),
        ([], {"warn_auc": 0.3}, ValueError, "warn_auc=0.3"),
        ([], {"seed": "x"}, TypeError, "seed"),
    ],
)
def test_bad_input_is_refused_with_the_fix(records, options, error, match):
    with pytest.raises(error, match=match):
        audit(records, **options)


# ------------------------------------------------------------------------------------------ item audit, equalize
def _picture(rng, size):
    """Content of varying complexity, as photos have: a gradient plus noise of a random amplitude."""
    width, height = size
    pixels = (np.linspace(0, 1, width)[None, :, None] * rng.uniform(0, 255, 3) + rng.uniform(0, 100)
              + rng.normal(0, rng.uniform(2, 60), (height, width, 3)))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def png_fakes(tmp_path_factory):
    """Two generator folders whose reals are JPEG (quality 95) and fakes PNG, sizes and content alike."""
    root = tmp_path_factory.mktemp("png-fakes")
    rng = np.random.default_rng(0)
    for generator in ("sd", "mj"):
        for label, suffix in (("0_real", ".jpg"), ("1_fake", ".png")):
            (root / generator / label).mkdir(parents=True)
            for i in range(12):
                image = _picture(rng, (32 + 4 * (i % 3), 32))
                image.save(root / generator / label / f"{i:03d}{suffix}", **({"quality": 95} if suffix == ".jpg" else {}))
    return root


def test_item_audit_flags_png_fakes_and_writes_its_files(png_fakes, tmp_path, capsys):
    from item_cli.cli import main

    code = main(["audit", "--data", f"stable={png_fakes / 'sd'}", "--data", str(png_fakes / "mj"),
                 "--output", str(tmp_path / "out"), "--fail-on-shortcut"])
    captured = capsys.readouterr()
    assert code == 1  # flagged, and asked to fail
    assert "all fakes are PNG, all reals JPEG" in captured.out and "**Warning:**" in captured.out
    assert "warning: audit: AUC 1.00" in captured.err
    content = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert content["flagged"] and content["shortcuts"][0]["feature"] == "file format"
    assert list(content["per_generator"]) == ["mj", "stable"]  # each set is its own generator, under its name
    assert [s["set"] for s in content["sets"]] == ["stable", "mj"] and content["equalize"] is None
    assert (tmp_path / "out" / "audit.md").read_text().strip() == captured.out.strip()
    assert main(["audit", "--data", str(png_fakes)]) == 0  # without --fail-on-shortcut the audit reports only


def test_the_same_data_after_equalize_is_not_flagged(png_fakes, tmp_path, capsys):
    from item_cli.cli import main

    code = main(["audit", "--data", str(png_fakes), "--equalize", "jpeg:95", "--output", str(tmp_path / "eq"),
                 "--fail-on-shortcut"])
    captured = capsys.readouterr()
    assert code == 0 and "No shortcut found" in captured.out and "warning:" not in captured.err
    content = json.loads((tmp_path / "eq" / "audit.json").read_text())
    assert not content["flagged"] and content["equalize"] == "equalize_jpeg95"
    assert content["per_class"]["fake"]["formats"] == {"JPEG": 1.0} and content["per_class"]["real"]["jpeg_quality"]["median"] == 95
    assert "as --equalize re-encodes them" in content["notes"][0]
    assert set(content["per_generator"]) == {"sd", "mj"}  # one unnamed folder: the layout's generators
    assert main(["audit", "--data", str(png_fakes), "--equalize", "png"]) == 2  # one-line error, no traceback
    assert "pass jpeg:QUALITY" in capsys.readouterr().err


def test_audit_warnings_for_item_train(png_fakes, tmp_path):
    from item_cli.audit import audit_equalized, audit_warnings
    from item_cli.data import load_records
    from item_cli.data.perturb import Perturbation

    records, _ = load_records(png_fakes)
    warnings = audit_warnings(records)
    assert len(warnings) == 1 and warnings[0].startswith("shortcut audit of 48 of the training images: AUC 1.00")
    assert "all fakes are PNG, all reals JPEG" in warnings[0] and "--equalize jpeg:95" in warnings[0]
    assert audit_warnings(records, equalize=Perturbation("equalize", 95)) == []
    assert audit_warnings([r for r in records if r.label == 1]) == []  # one class: nothing to compare
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    report = audit_equalized([*records[:6], {"path": str(broken), "label": 1, "generator": "sd"}],
                             Perturbation("equalize", 90), folds=2)
    assert report.skipped[0]["path"] == str(broken) and "cannot be re-encoded" in report.skipped[0]["reason"]
    assert {f.path for f in report.files} == {r.path for r in records[:6]}  # reported under the original paths
    with pytest.raises(ValueError, match="pass an equalization"):
        audit_equalized(records, Perturbation("jpeg", 95))
