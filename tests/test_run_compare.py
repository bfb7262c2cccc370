"""Every `item evaluate` writes run.json (no machine path in it); `--compare` finds a changed label and a removed
file; the new perturbations give robustness curves; `--fake-only-jpeg` touches the fakes only and warns."""

import csv
import json
import shutil

import pytest
from helpers import fixed_captions, make_cnndetection
from PIL import Image

from item_cli.cli import main
from item_cli.evaluation.compare import compare_runs, set_fingerprint


def _evaluate(checkpoint, root, data, out, *extra):
    with fixed_captions("a photo of a dog"):
        return main(["evaluate", "--model", str(checkpoint), "--data", f"progan={data / 'progan'}",
                     "--data", f"stylegan={data / 'stylegan'}", "--output", str(out), "--cache-dir",
                     str(root / "cache"), "--batch-size", "8", "--gallery-size", "0", *extra])


@pytest.fixture(scope="module")
def runs(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    data_a = make_cnndetection(root / "a", per_class=1)  # progan PNG fakes, stylegan JPEG fakes
    assert _evaluate(checkpoint, root, data_a, root / "out_a", "--webp-quality", "50", "--noise-sigma", "8",
                     "--center-crop", "0.8", "--social", "24:70", "--columns", "all") == 0
    data_b = root / "b"
    shutil.copytree(data_a, data_b)
    (data_b / "progan" / "0_real" / "000.png").rename(data_b / "progan" / "1_fake" / "relabelled.png")  # a label
    (data_b / "stylegan" / "1_fake" / "000.jpg").unlink()  # a removed file
    (data_b / "stylegan" / "0_real" / "000.png").rename(data_b / "stylegan" / "0_real" / "renamed.png")  # same bytes
    assert _evaluate(checkpoint, root, data_b, root / "out_b", "--no-plots", "--no-report") == 0
    data_c = root / "c"
    shutil.copytree(data_a, data_c)  # the same images elsewhere: the same run data
    assert _evaluate(checkpoint, root, data_c, root / "out_c", "--no-plots", "--no-report", "--fake-only-jpeg", "96") == 0
    return root


def test_run_json_says_what_was_used_and_names_no_path(runs):
    run = json.loads((runs / "out_a" / "run.json").read_text())
    assert run["checkpoint"]["source"] == "local" and len(run["checkpoint"]["weights_sha256"]["model.safetensors"]) == 64
    assert [(s["name"], s["images"], s["real"], s["fake"]) for s in run["sets"]] == [("progan", 2, 1, 1),
                                                                                     ("stylegan", 2, 1, 1)]
    members = json.loads((runs / "out_a" / "run-sets.json").read_text())["sets"]
    assert run["sets"][0]["sha256"] == set_fingerprint(members["progan"]["keys"],
                                                       [int(c) for c in members["progan"]["labels"]])["sha256"]
    assert [p["kind"] for p in run["perturbations"]] == ["webp", "noise", "crop", "social"]
    assert run["perturbations"][1]["seed"] == 0 and run["perturbations"][3]["long_side"] == 24
    assert run["threshold"] == 0.5 and run["seed"] == 0 and run["libraries"]["scikit-learn"]
    assert str(runs) not in (runs / "out_a" / "run.json").read_text()  # no path of this machine


def test_compare_finds_the_changed_label_and_the_removed_file(runs, capsys):
    result = compare_runs(runs / "out_a" / "run.json", runs / "out_b")
    assert not result["same_data"]
    by_set = {row["set"]: row for row in result["sets"]}
    assert by_set["progan"]["difference"] == {"only_a": 0, "only_b": 0, "relabelled": 1}
    assert by_set["stylegan"]["difference"] == {"only_a": 1, "only_b": 0, "relabelled": 0}  # the rename is no change
    assert main(["evaluate", "--compare", str(runs / "out_a" / "run.json"), str(runs / "out_b" / "run.json")]) == 1
    printed = capsys.readouterr().out
    assert "NOT use the same images" in printed and "1 relabelled" in printed and "1 only in A" in printed
    same = compare_runs(runs / "out_a", runs / "out_c")  # same images in another folder: the same data
    assert same["same_data"] and not same["settings"]["fake_only_jpeg"]["same"]
    assert not same["settings"]["perturbations"]["same"] and same["settings"]["checkpoint"]["same"]
    with pytest.raises(ValueError, match="no such file"):
        compare_runs(runs / "nowhere.json", runs / "out_a")


def test_new_perturbations_get_metrics_and_curves(runs):
    out = runs / "out_a"
    results = json.loads((out / "metrics.json").read_text())
    assert list(results["conditions"]) == ["clean", "webp_q50", "noise_s8_seed0", "crop_x0.8", "social_l24_q70"]
    mean = results["conditions"]["noise_s8_seed0"]["generators"]["mean"]
    assert {"ece", "nll", "brier", "eer", "pd_at_far_1", "balanced_acc", "min_acc"} <= set(mean)
    assert "15 equal-width bins" in results["metric_definitions"]["ece"]
    assert results["conditions"]["clean"]["worst"]["groups"]["acc"] in ("progan", "stylegan")
    with Image.open(out / "robustness.png") as image:
        assert image.size[0] >= 4 * 5 * 100  # one panel per kind: webp, noise, crop, social
    with Image.open(out / "reliability.png") as image:
        assert image.format == "PNG"
    assert "Pd@5%FAR" in (out / "table.md").read_text()


def test_fake_only_jpeg_changes_the_fakes_only_and_warns(runs):
    def clean_scores(folder):
        with open(folder / "scores.csv") as handle:
            return {(row["set"], row["path"].split("/")[-2:][0], row["path"].split("/")[-1]): row["fake_probability"]
                    for row in csv.DictReader(handle) if row["condition"] == "clean"}

    plain, fake_jpeg = clean_scores(runs / "out_a"), clean_scores(runs / "out_c")
    assert plain.keys() == fake_jpeg.keys()
    reals = [key for key in plain if key[1] == "0_real"]
    fakes = [key for key in plain if key[1] == "1_fake"]
    assert all(plain[key] == fake_jpeg[key] for key in reals)
    assert any(plain[key] != fake_jpeg[key] for key in fakes)
    warnings = json.loads((runs / "out_c" / "metrics.json").read_text())["warnings"]
    assert any("--fake-only-jpeg 96" in w and "format difference between the classes" in w and "Measured:" in w
               for w in warnings)


def test_the_audit_measures_the_format_difference_fake_only_jpeg_makes(tmp_path):
    from helpers import noise_image

    from item_cli.audit import audit
    from item_cli.audit.formats import audit_fake_only_jpeg

    import numpy as np

    rng = np.random.default_rng(0)
    records = []
    for i in range(12):  # reals and fakes alike: PNG files of one size
        for label in (0, 1):
            path = tmp_path / f"{label}_{i}.png"
            noise_image(rng, (32, 32)).save(path)
            records.append({"path": str(path), "label": label, "generator": "g"})
    assert audit(records, log=False).metadata_auc < 0.8  # nothing tells the files apart
    report = audit_fake_only_jpeg(records, 96)
    assert report.metadata_auc > 0.9  # the condition itself makes the shortcut
    assert report.warnings[0].startswith("--fake-only-jpeg 96") and "format difference" in report.warnings[0]
    assert {f.path for f in report.files} == {r["path"] for r in records}  # reported under the original paths
