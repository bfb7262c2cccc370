"""The "unsure" verdict: the abstention band chosen by `item calibrate` on validation data, stored in the config,
and said by the pipeline (explain=True), `item detect`, the web page, the explanation picture and handler.py;
`item evaluate` reports coverage and accuracy on the covered images."""

import base64
import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import fixed_captions, make_cnndetection

from item_cli.cli import main
from item_cli.evaluation.abstention import add_band_columns, band_metrics, candidate_edges, choose_band
from item_detector.configuration_item import ItemConfig

HANDLER_FILE = Path(__file__).resolve().parent.parent / "handler.py"


# ------------------------------------------------------------------ choosing the band (no model)
def _covered(labels, scores, band, threshold):
    """(decided count, errors among them) by hand."""
    decided = [(label, score) for label, score in zip(labels, scores) if not band[0] <= score < band[1]]
    return len(decided), sum(int(score >= threshold) != label for label, score in decided)


def _brute_force(labels, scores, threshold, max_error=None, coverage=None):
    """The search of the module docstring over every candidate pair, spelled out: (low, high) or None."""
    lows, highs = candidate_edges(np.sort(scores), threshold)
    best = None
    for low in lows:
        for high in highs:
            decided, errors = _covered(labels, scores, (low, high), threshold)
            if max_error is not None:
                key = (-decided, errors, high - low, low) if errors <= max_error * decided + 1e-9 else None
            else:
                key = (decided, errors, high - low, low) if decided >= math.ceil(coverage * len(labels) - 1e-9) else None
            if key is not None and (best is None or key < best[0]):
                best = (key, (float(low), float(high)))
    return best


def _validation(n=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.0, 1.0)  # overlapping classes: errors near 0.5
    return labels, scores


@pytest.mark.parametrize("target", [0.0, 0.02, 0.1])
def test_the_band_meets_the_error_target_on_validation_data(target):
    labels, scores = _validation()
    band = choose_band(labels, scores, 0.5, max_error=target)
    low, high = band["band"]
    assert low <= 0.5 <= high
    decided, errors = _covered(labels, scores, (low, high), 0.5)
    assert errors <= target * decided and decided == band["n_decided"] and errors / decided == band["covered_error"]
    assert band["coverage"] == decided / len(labels) and band["method"] == "error" and band["target_error"] == target
    plain_errors = sum(int(s >= 0.5) != y for y, s in zip(labels, scores))
    assert plain_errors > target * len(labels) and band["coverage"] < 1.0  # the plain threshold misses: a real band
    wider = choose_band(labels, scores, 0.5, max_error=target + 0.05)
    assert wider["coverage"] >= band["coverage"]


@pytest.mark.parametrize("coverage", [0.5, 0.9, 1.0])
def test_the_coverage_band_decides_the_requested_share(coverage):
    labels, scores = _validation()
    band = choose_band(labels, scores, 0.5, coverage=coverage)
    decided, errors = _covered(labels, scores, band["band"], 0.5)
    assert decided == math.ceil(coverage * len(labels))  # continuous scores: exactly reachable
    assert band["coverage"] == decided / len(labels) and band["covered_error"] == errors / decided
    if coverage == 1.0:
        assert band["band"] == [0.5, 0.5]  # the empty band: every image decided, as without one


def test_the_search_is_the_brute_force_one_with_its_tie_rules():
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = int(rng.integers(2, 30))
        labels = rng.integers(0, 2, n)
        scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.25), 0, 1), 1)  # many tied scores
        threshold = float(rng.choice([0.5, scores[0], 0.0, 1.0]))
        for options in ({"max_error": float(rng.choice([0.0, 0.1, 0.25]))}, {"coverage": float(rng.choice([0.3, 0.8]))}):
            expected = _brute_force(labels, scores, threshold, **options)
            if expected is None or expected[0][0] == 0:  # nothing decided within the target
                with pytest.raises(ValueError, match="No band decides any validation image"):
                    choose_band(labels, scores, threshold, **options)
                continue
            assert tuple(choose_band(labels, scores, threshold, **options)["band"]) == expected[1], (trial, options)


def test_bad_targets_are_refused_with_the_option_named():
    labels, scores = _validation(20)
    with pytest.raises(ValueError, match="--unsure-error 1.5"):
        choose_band(labels, scores, 0.5, max_error=1.5)
    with pytest.raises(ValueError, match="--unsure-coverage 0.0"):
        choose_band(labels, scores, 0.5, coverage=0.0)
    with pytest.raises(ValueError, match="both given"):
        choose_band(labels, scores, 0.5, max_error=0.1, coverage=0.9)


def test_coverage_columns_by_hand():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.45, 0.55, 0.9, 0.8, 0.2])
    groups = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    table = {"a": {}, "b": {}, "mean": {}}
    add_band_columns(table, labels, scores, groups, [0.4, 0.6], 0.5, "mean")
    # a: 0.45 and 0.55 unsure, 0.1 decided real (right); b: all decided, 0.8 real called fake and 0.2 fake called real
    assert table["a"]["coverage"] == pytest.approx(1 / 3) and table["a"]["covered_acc"] == 1.0
    assert table["b"]["coverage"] == 1.0 and table["b"]["covered_acc"] == pytest.approx(1 / 3)
    assert table["mean"]["coverage"] == pytest.approx(2 / 3) and table["mean"]["covered_acc"] == pytest.approx(2 / 3)
    assert math.isnan(band_metrics([0], [0.5], [0.4, 0.6], 0.5)["covered_acc"])  # every image unsure


# ------------------------------------------------------------------ the config
def test_the_band_round_trips_and_old_configs_load(tmp_path):
    config = ItemConfig(decision_threshold=0.4, unsure_band=(0.25, 0.7))
    assert config.unsure_band == [0.25, 0.7]
    config.save_pretrained(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "config.json").read_text())["unsure_band"] == [0.25, 0.7]
    assert ItemConfig.from_pretrained(tmp_path / "new").unsure_band == [0.25, 0.7]
    ItemConfig().save_pretrained(tmp_path / "old")
    saved = json.loads((tmp_path / "old" / "config.json").read_text())
    saved.pop("unsure_band", None)
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    old = ItemConfig.from_pretrained(tmp_path / "old")
    assert old.unsure_band is None and old.verdict(0.9, True) == "fake" and old.verdict(0.1, False) == "real"
    assert config.verdict(0.25, False) == "unsure" and config.verdict(0.7, True) == "fake"  # low <= p < high


@pytest.mark.parametrize("band, message", [
    ([0.6, 0.3], "0 <= low <= high <= 1"), ([0.1, 1.2], "0 <= low <= high <= 1"), ([0.5], r"\[low, high\]"),
    ("0.2,0.8", r"\[low, high\]"), ([0.6, 0.8], "does not hold decision_threshold=0.5"), ([True, 0.8], r"\[low, high\]"),
])
def test_a_bad_band_is_refused_by_the_config(band, message):
    with pytest.raises(ValueError, match=message):
        ItemConfig(unsure_band=band)


def test_a_threshold_moved_out_of_the_band_is_refused_on_save(tmp_path):
    config = ItemConfig(unsure_band=[0.3, 0.6])
    config.decision_threshold = 0.9
    with pytest.raises(ValueError, match="does not hold decision_threshold=0.9"):
        config.save_pretrained(tmp_path)


def test_training_the_head_again_drops_the_band():
    from types import SimpleNamespace

    from item_cli.training import calibrate_on_validation

    model = SimpleNamespace(config=ItemConfig(unsure_band=[0.3, 0.6], unsure_calibration={"method": "error"}))
    assert calibrate_on_validation(model, [0, 1], [0.2, 0.8], None, None, "val") is None
    assert model.config.unsure_band is None and model.config.unsure_calibration is None


# ------------------------------------------------------------------ through the model
@pytest.fixture(scope="module")
def banded(checkpoint, tmp_path_factory):
    """The tiny checkpoint with the band [0, 1]: every score below 1 is unsure."""
    folder = tmp_path_factory.mktemp("banded") / "model"
    shutil.copytree(checkpoint, folder)
    config = ItemConfig.from_pretrained(folder)
    config.unsure_band = [0.0, 1.0]
    config.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def photos(sample_photos):
    return [str(path) for path in sample_photos[:2]]


@pytest.fixture(scope="module")
def pipe(banded):
    """The banded checkpoint's pipeline, loaded once for the pipeline, detect and page tests."""
    from item_cli.commands.detect import load_pipeline

    return _fixed_caption(load_pipeline(str(banded), device="cpu"))


def _fixed_caption(pipeline):
    """The pipeline with one caption for every image: the tiny captioner is slow and says nothing. (The pipeline's
    processor is the checkpoint's remote-code class, which `helpers.fixed_captions` does not reach.)"""
    pipeline.processor.caption = lambda images: ["a photo of a dog"] * len(images)
    return pipeline


def test_the_pipeline_says_unsure_inside_the_band_and_keeps_its_labels(pipe, photos, monkeypatch):
    result = pipe(photos[0], explain=True)
    plain = pipe(photos[0])
    assert result["verdict"] == "unsure" and result["unsure_band"] == [0.0, 1.0]
    assert result["is_fake"] == (result["fake_probability"] >= 0.5)  # the threshold's decision stays
    assert sorted(item["label"] for item in plain) == ["fake", "real"] and plain == result["labels"]
    picture = pipe.draw_explanation(pipe.read_image(photos[0]), result)
    assert picture.getpixel((2, 2)) == (96, 96, 96)  # the grey "unsure" banner
    monkeypatch.setattr(pipe.model.config, "unsure_band", [0.5, 0.5])  # an empty band: the threshold decides
    outside = pipe(photos[0], explain=True)
    assert outside["verdict"] == ("fake" if outside["is_fake"] else "real")
    assert pipe.draw_explanation(pipe.read_image(photos[0]), outside).getpixel((2, 2)) != (96, 96, 96)


def test_detect_says_unsure_in_text_and_json(banded, pipe, photos, capsys, monkeypatch):
    import item_cli.commands.detect
    from item_cli.commands.detect import format_result

    monkeypatch.setattr(item_cli.commands.detect, "load_pipeline", lambda *args: pipe)  # loaded once for the module
    assert main(["detect", photos[0], "--model", str(banded), "--json", "--decode-workers", "1"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["verdict"] == "unsure" and line["unsure_band"] == [0.0, 1.0] and "is_fake" in line
    text = format_result(line["path"], line)  # what detect prints without --json
    assert ": UNSURE (leans " in text and "unsure band [0.000, 1.000)" in text
    outside = format_result(line["path"], {**line, "verdict": "fake" if line["is_fake"] else "real"})
    assert "UNSURE" not in outside and outside.split(": ")[1].startswith("FAKE" if line["is_fake"] else "real")


class _Gradio:
    """What the page's actions use of gradio: its warnings."""

    warnings = []

    @classmethod
    def Warning(cls, message):  # noqa: N802 - gradio's name
        cls.warnings.append(message)


def test_the_page_says_unsure(pipe, photos):
    from item_cli.serve import Checker

    checker = Checker.__new__(Checker)  # what Checker(model) holds, without loading the pipeline a second time
    checker.pipeline = pipe
    verdict, picture, _, _ = checker.check_one({"path": photos[0], "orig_name": "photo.jpg"}, _Gradio)
    rows, csv_path = checker.check_many(photos, _Gradio)
    assert verdict.startswith("## UNSURE") and "unsure between 0.00 and 1.00" in verdict and picture is not None
    assert [row[1] for row in rows] == ["UNSURE", "UNSURE"] and "UNSURE" in Path(csv_path).read_text()
    assert not _Gradio.warnings


def test_the_handler_says_unsure(banded, photos, tmp_path):
    deployed = tmp_path / "repository"
    shutil.copytree(banded, deployed)
    shutil.copyfile(HANDLER_FILE, deployed / "handler.py")
    spec = importlib.util.spec_from_file_location("handler_unsure", deployed / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(str(deployed))
    _fixed_caption(handler.pipeline)
    image = base64.b64encode(Path(photos[0]).read_bytes()).decode()
    explained = handler({"inputs": image, "parameters": {"explain": True}})
    at_zero = handler({"inputs": [image], "parameters": {"explain": True, "threshold": 0.0}})[0]
    plain = handler({"inputs": image})
    assert explained["verdict"] == "unsure" and at_zero["verdict"] == "unsure" and at_zero["is_fake"] is True
    assert sorted(item["label"] for item in plain) == ["fake", "real"]


# ------------------------------------------------------------------ calibrate and evaluate, end to end
@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    return make_cnndetection(tmp_path_factory.mktemp("unsure-data") / "cnn", per_class=4)


def test_calibrate_chooses_a_band_that_evaluate_reports(checkpoint, validation, tmp_path, capsys):
    from item_cli.checkpoint import load_checkpoint
    from item_cli.data import load_records
    from item_cli.evaluation.evaluate import score

    model_dir, cache = tmp_path / "model", tmp_path / "cache"
    with fixed_captions():
        code = main(["calibrate", "--model", str(checkpoint), "--data", str(validation), "--unsure-coverage", "0.5",
                     "--output", str(model_dir), "--cache-dir", str(cache)])
        assert code == 0
        config = json.loads((model_dir / "config.json").read_text())
        band, threshold = config["unsure_band"], config["decision_threshold"]
        assert config["unsure_calibration"]["method"] == "coverage" and band[0] <= threshold <= band[1]
        model, processor = load_checkpoint(model_dir)
        rows, scores = score(model, processor, load_records(validation)[0], cache_dir=cache)
        decided, _ = _covered(rows.labels, scores, band, threshold)
        assert decided == 8 == config["unsure_calibration"]["n_decided"]  # half of the 16 validation images
        assert main(["evaluate", "--model", str(model_dir), "--data", str(validation), "--output", str(tmp_path / "ev"),
                     "--cache-dir", str(cache), "--gallery-size", "0", "--no-plots", "--no-report"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    table = metrics["conditions"]["clean"]["generators"]
    generators = np.asarray(rows.column("generator"), dtype=object)
    for name in ("progan", "stylegan"):
        mask = generators == name
        expected = band_metrics(rows.labels[mask], scores[mask], band, threshold)
        assert table[name]["coverage"] == pytest.approx(expected["coverage"])
        assert table[name]["covered_acc"] == pytest.approx(expected["covered_acc"], nan_ok=True)
    assert table["mean"]["coverage"] == pytest.approx(np.mean([table[n]["coverage"] for n in ("progan", "stylegan")]))
    assert "| coverage | covered ACC |" in (tmp_path / "ev" / "table.md").read_text()
    # Calibrating again without a band target removes the band chosen around the old threshold.
    capsys.readouterr()
    with fixed_captions():
        assert main(["calibrate", "--model", str(model_dir), "--data", str(validation), "--cache-dir", str(cache)]) == 0
    assert json.loads((model_dir / "config.json").read_text()).get("unsure_band") is None


def test_calibrate_refuses_bad_band_options_before_any_work(checkpoint, tmp_path, capsys, monkeypatch):
    import item_cli.data

    def no_work(*args, **kwargs):
        raise AssertionError("data was read before the options were checked")

    monkeypatch.setattr(item_cli.data, "load_records", no_work)
    for options, message in ((["--unsure-error", "0.02", "--unsure-coverage", "0.9"], "both given"),
                             (["--unsure-error", "-0.1"], "--unsure-error -0.1"),
                             (["--unsure-coverage", "1.5"], "--unsure-coverage 1.5")):
        code = main(["calibrate", "--model", str(checkpoint), "--data", str(tmp_path), *options])
        err = capsys.readouterr().err
        assert code == 2 and message in err and [line for line in err.splitlines() if line.startswith("error:")] == [
            line for line in err.splitlines() if line.strip()], err


def test_evaluate_refuses_band_columns_without_a_band(checkpoint, validation, tmp_path):
    from item_cli.evaluation.evaluate import evaluate

    with pytest.raises(ValueError, match="need a checkpoint with an unsure band"):
        evaluate(checkpoint, validation, tmp_path / "out", columns=("acc", "coverage"), plots=False, report=False)
