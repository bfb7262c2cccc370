"""`item ablate`: every distance x fusion head trained from one cache, with no frozen-network call once it is
filled; seeded, summarised as mean ± std, written in the paper's grid order."""

import csv
import json

import numpy as np
import pytest
from helpers import NetworkCalls, make_cnndetection

from item_cli.cli import main
from item_cli.evaluation.ablation import HeadSchedule, Variant, variant_grid

GRID = [(d, f) for d in ("difference", "cosine", "both") for f in ("sum", "concat", "global", "local")]


@pytest.fixture(scope="module")
def ablated(checkpoint, tmp_path_factory):
    """Two ablations on the same data: the first fills the cache, the second may not call a frozen network."""
    root = tmp_path_factory.mktemp("ablate")
    make_cnndetection(root / "train", generators=("progan", "biggan"), per_class=4, seed=0)
    make_cnndetection(root / "val", generators=("progan",), per_class=3, seed=1)
    common = ["ablate", "--model", str(checkpoint), "--data", str(root / "train"), "--val-data", str(root / "val"),
              "--cache-dir", str(root / "cache"), "--batch-size", "8", "--epochs", "3", "--head-batch-size", "4"]
    with pytest.MonkeyPatch.context() as patch:
        calls = NetworkCalls(patch, caption="a photo of a dog")
        assert main([*common, "--distance-types", "cosine", "difference", "--fusions", "sum", "--seeds", "0",
                     "--output", str(root / "first")]) == 0
        assert calls["features"] == 22  # the cache was filled: 16 training + 6 validation images
    with pytest.MonkeyPatch.context() as patch:
        NetworkCalls(patch, forbid=True)  # any caption, noun, box or backbone call now raises
        assert main([*common, "--seeds", "0", "1", "--output", str(root / "second")]) == 0
    return root


def test_second_run_has_every_variant_in_grid_order(ablated, capsys):
    results = json.loads((ablated / "second" / "ablation.json").read_text())
    assert [(v["distance_type"], v["fusion"]) for v in results["variants"]] == GRID
    assert len(results["runs"]) == 2 * len(GRID) and results["train_images"] == 16 and results["val_images"] == 6
    assert results["schedule"]["batch_size"] == 4 and results["schedule"]["epochs"] == 3  # the head's, not the cache's
    with open(ablated / "second" / "ablation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["distance_type"], r["fusion"], r["head_hidden_size"], r["seeds"]) for r in rows] == [
        (d, f, "512", "0 1") for d, f in GRID
    ]
    markdown = (ablated / "second" / "ablation.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| difference") or line.startswith("| cosine")
             or line.startswith("| both")]
    assert len(table) == len(GRID) + 3  # the long table, then the 3 x 4 grid of AP
    assert "| distance | sum | concat | global | local |" in markdown and "sum (checkpoint)" in markdown
    assert "±" in markdown and "24 heads trained" in markdown


def test_summary_is_the_mean_and_std_over_seeds_and_seeds_repeat(ablated):
    second = json.loads((ablated / "second" / "ablation.json").read_text())
    first = json.loads((ablated / "first" / "ablation.json").read_text())
    for variant in second["variants"]:
        runs = [r for r in second["runs"] if r["variant"] == variant["variant"]]
        assert [r["seed"] for r in runs] == [0, 1]
        for key in ("acc", "ap"):
            values = [r[key] for r in runs]
            assert variant[f"{key}_mean"] == pytest.approx(np.mean(values))
            assert variant[f"{key}_std"] == pytest.approx(np.std(values, ddof=1))
        assert all(1 <= r["epoch"] <= 3 for r in runs)
    # The same variant and seed give the same head, whether the features were just computed or read back.
    for run in first["runs"]:
        again = next(r for r in second["runs"] if r["variant"] == run["variant"] and r["seed"] == run["seed"])
        assert again["ap"] == pytest.approx(run["ap"]) and again["val_loss"] == pytest.approx(run["val_loss"])
    assert [v["variant"] for v in first["variants"]] == ["difference/sum/h512", "cosine/sum/h512"]  # paper order


def test_bad_grids_and_schedules_are_refused():
    assert variant_grid(["both", "cosine"], ["local", "sum"], [64, 16]) == [
        Variant(d, f, s) for d in ("cosine", "both") for f in ("sum", "local") for s in (16, 64)
    ]
    with pytest.raises(ValueError, match="--distance-types euclid: choose from difference cosine both"):
        variant_grid(["euclid"], ["sum"])
    with pytest.raises(ValueError, match="--fusions"):
        variant_grid(["cosine"], [])
    with pytest.raises(ValueError, match="--head-hidden-sizes"):
        variant_grid(["cosine"], ["sum"], [0])
    for options, match in (({"epochs": 0}, "epochs=0"), ({"learning_rate": 0}, "learning_rate=0"),
                           ({"batch_size": 0}, "batch_size=0"), ({"threshold": 2}, "threshold=2")):
        with pytest.raises(ValueError, match=match):
            HeadSchedule(**options)
