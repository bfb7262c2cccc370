"""`item evaluate` writes every output file with consistent numbers; perturbations do what they say."""

import csv
import json

import numpy as np
import pytest
from helpers import fixed_captions, make_cnndetection
from PIL import Image

from item_cli.cli import main
from item_cli.data.perturb import (
    Augmentation,
    Composed,
    Perturbation,
    compose,
    downscale,
    gaussian_blur,
    jpeg,
    parse_equalize,
    perturbations_from_args,
)
from item_cli.evaluation.evaluate import OUTPUT_FILES
from item_cli.evaluation.metrics import accuracy_real, average_precision


@pytest.fixture(scope="module")
def evaluated(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    data = make_cnndetection(root / "cnn", generators=("biggan", "progan"), per_class=2)
    (data / "progan" / "1_fake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with fixed_captions("a photo of a dog"):  # a fixed caption: the tiny captioner is slow and says nothing
        code = main([
        "evaluate", "--model", str(checkpoint), "--data", str(data), "--output", str(root / "out"),
        "--cache-dir", str(root / "cache"), "--jpeg-quality", "50", "--blur-sigma", "1", "--downscale", "0.5",
        "--batch-size", "4", "--gallery-size", "0",
        ])
    return root / "out", data, code


def test_evaluate_writes_every_output_file(evaluated):
    out, data, code = evaluated
    assert code == 0
    for name in (*OUTPUT_FILES, "skipped.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("per_generator.png", "robustness.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 300
    conditions = ["clean", "jpeg_q50", "blur_s1", "downscale_x0.5"]
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["condition"], row["generator"]) for row in rows] == [
        (condition, generator) for condition in conditions for generator in ("biggan", "progan", "mean")
    ]
    with open(out / "scores.csv") as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == 8 * len(conditions)  # 8 readable images per condition; the broken one is skipped
    assert not any("broken" in row["path"] for row in scores)
    assert {row["caption"] for row in scores} == {"a photo of a dog"} and {row["nouns"] for row in scores} == {"photo; dog"}
    with open(out / "skipped.csv") as handle:
        assert "broken.png" in handle.read()

    # metrics.csv and metrics.json agree with a recomputation from the per-image scores.
    results = json.loads((out / "metrics.json").read_text())
    threshold = results["threshold"]
    assert results["images"] == 8 and set(results["conditions"]) == set(conditions)
    for condition in conditions:
        for generator in ("biggan", "progan"):
            mine = [r for r in scores if r["condition"] == condition and r["generator"] == generator]
            labels = [int(r["label"] == "fake") for r in mine]
            values = [float(r["fake_probability"]) for r in mine]
            assert all(float(repr(v)) == v and len(r["fake_probability"]) > 9 for v, r in zip(values, mine))  # full precision
            reported = results["conditions"][condition]["generators"][generator]
            assert reported["ap"] == pytest.approx(average_precision(labels, values), abs=1e-5)
            assert reported["acc_real"] == pytest.approx(accuracy_real(labels, values, threshold))
            assert all(r["predicted"] == ("fake" if float(r["fake_probability"]) >= threshold else "real") for r in mine)
        mean = results["conditions"][condition]["generators"]["mean"]
        per = [results["conditions"][condition]["generators"][g]["acc"] for g in ("biggan", "progan")]
        assert mean["acc"] == pytest.approx(np.mean(per))
    markdown = (out / "metrics.md").read_text()
    assert all(f"## {condition}" in markdown for condition in conditions) and "Robustness" in markdown


def test_perturbed_conditions_see_perturbed_images(evaluated):
    out, _, _ = evaluated
    with open(out / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    clean = {r["path"]: float(r["fake_probability"]) for r in rows if r["condition"] == "clean"}
    blurred = {r["path"]: float(r["fake_probability"]) for r in rows if r["condition"] == "blur_s1"}
    assert clean.keys() == blurred.keys()
    assert any(abs(clean[p] - blurred[p]) > 1e-6 for p in clean)  # the model saw other pixels


def _impulse(size=61):
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[size // 2, size // 2] = 255
    return Image.fromarray(pixels)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_gaussian_blur_has_the_requested_standard_deviation(sigma):
    spread = np.asarray(gaussian_blur(_impulse(), sigma), dtype=np.float64)[..., 0]
    weights = spread / spread.sum()
    coordinates = np.arange(spread.shape[0]) - spread.shape[0] // 2
    measured = np.sqrt((weights.sum(axis=0) * coordinates**2).sum())
    assert measured == pytest.approx(sigma, rel=0.15)
    assert np.array_equal(np.asarray(gaussian_blur(_impulse(), 0)), np.asarray(_impulse()))


def test_jpeg_and_downscale_do_what_they_say(random_images):
    import io

    image = random_images(1, size=(64, 48))[0]
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    assert np.array_equal(np.asarray(jpeg(image, 75)), expected)  # exactly PIL's JPEG at that quality
    errors = [np.abs(np.asarray(jpeg(image, q), dtype=int) - np.asarray(image, dtype=int)).mean() for q in (95, 75, 50, 30)]
    assert errors[0] > 0 and errors == sorted(errors)  # lower quality, larger error
    assert downscale(image, 0.5).size == (32, 24)
    assert downscale(image, 0.01).size == (1, 1)
    assert Perturbation("downscale", 0.5)(image).size == (32, 24)
    assert [p.name for p in perturbations_from_args([95, 30], [1], [0.5])] == ["jpeg_q95", "jpeg_q30", "blur_s1", "downscale_x0.5"]
    for kind, value in (("jpeg", 0), ("jpeg", 101), ("blur", -1), ("downscale", 0), ("downscale", 2)):
        with pytest.raises(ValueError):
            Perturbation(kind, value)
    with pytest.raises(ValueError, match="Unknown perturbation"):
        Perturbation("rotate", 90)


def test_augmentation_is_seeded_and_respects_its_probabilities(random_images):
    image = random_images(1, size=(48, 48))[0]
    assert np.array_equal(np.asarray(Augmentation()(image)), np.asarray(image))  # p = 0: untouched
    first = [np.asarray(Augmentation(blur_prob=0.5, jpeg_prob=0.5, seed=7)(image)) for _ in range(1)]
    again = Augmentation(blur_prob=0.5, jpeg_prob=0.5, seed=7)
    assert np.array_equal(again(image), first[0])
    always = Augmentation(blur_prob=1.0, jpeg_prob=1.0, seed=1)
    assert not np.array_equal(np.asarray(always(image)), np.asarray(image))
    assert always(image).size == image.size  # blur and JPEG keep the geometry (stored boxes stay valid)


def test_equalize_is_a_perturbation_that_composes_before_the_conditions(random_images):
    image = random_images(1, size=(40, 32))[0]
    equalize = parse_equalize("jpeg:95")
    assert equalize == Perturbation("equalize", 95) and equalize.name == "equalize_jpeg95"
    assert parse_equalize("JPEG") == equalize and parse_equalize(None) is None and parse_equalize("") is None
    assert np.array_equal(np.asarray(equalize(image)), np.asarray(jpeg(image, 95)))  # the pixels the model sees
    with Image.open(__import__("io").BytesIO(equalize.encode(image.convert("RGBA")))) as written:
        assert (written.format, written.mode, written.size) == ("JPEG", "RGB", (40, 32))  # the file the audit reads
    blur = Perturbation("blur", 2)
    both = compose(equalize, blur)
    assert isinstance(both, Composed) and both.name == "equalize_jpeg95+blur_s2"  # the cache key
    assert (both.kind, both.value) == ("blur", 2)  # what the table reports
    assert np.array_equal(np.asarray(both(image)), np.asarray(blur(equalize(image))))  # equalize first, then perturb
    assert compose(None, blur) is blur and compose(equalize, None) is equalize and compose(None, None) is None
    for text, match in (("png:9", "not supported"), ("jpeg:high", "not an integer"), ("jpeg:0", "out of range")):
        with pytest.raises(ValueError, match=match):
            parse_equalize(text)
    with pytest.raises(ValueError, match="Only 'equalize'"):
        blur.encode(image)
