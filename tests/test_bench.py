"""`item benchmark`: the measurements add up, profiles and levers are compared on the same inputs, the tables
say what the numbers are. On the tiny networks (their timings mean nothing; their bookkeeping must be right)."""

import json

import pytest

from item_cli.bench.agreement import box_recall, iou
from item_cli.bench.networks import fixed_caption
from item_cli.bench.pipeline import STAGES
from item_cli.bench.run import BenchmarkSettings, format_report, run_benchmark
from item_detector.processing_item import ItemAnnotations


@pytest.fixture(scope="module")
def report():
    settings = BenchmarkSettings(size="tiny", batch_sizes=(1, 2), repeats=1, n_objects=3, caption_tokens=12,
                                 image_size=(64, 48), profiles=("default", "fast"))
    messages = []
    result = run_benchmark(settings, log=messages.append)
    assert messages
    return result


def test_the_stages_add_up_to_the_pipeline_and_the_baseline_is_timed_alongside(report):
    for name in ("default", "fast"):
        for batch, entry in report["profiles"][name]["batches"].items():
            assert set(entry["stages"]) == set(STAGES) and all(s["seconds"] > 0 for s in entry["stages"].values())
            assert entry["stages_sum_seconds"] == pytest.approx(sum(s["seconds"] for s in entry["stages"].values()))
            assert entry["overhead_ratio"] == pytest.approx(entry["pipeline"]["seconds"] / entry["stages_sum_seconds"])
            assert entry["cost_vs_baseline"] == pytest.approx(entry["pipeline"]["seconds"] / entry["baseline"]["seconds"])
            assert entry["pipeline"]["images_per_second"] == pytest.approx(int(batch) / entry["pipeline"]["seconds"])
            # The fixed workload: 3 nouns, each grounded (threshold 0) unless its box falls outside the tower's view.
            assert 0 < entry["objects_per_image"] <= 3
    json.dumps(report)  # the JSON the command writes


def test_the_fast_profile_is_compared_with_the_default_on_the_same_inputs(report):
    agreement = report["profiles"]["fast"]["agreement"]
    assert -1 <= agreement["image_embeds"]["cosine_min"] <= agreement["image_embeds"]["cosine_mean"] <= 1
    assert agreement["text_embeds"]["cosine_mean"] > 0.99  # int8 of the text tower only: close to float
    assert 0 <= agreement["fake_probability_change"]["mean"] <= agreement["fake_probability_change"]["max"]
    assert agreement["boxes"]["boxes"] > 0
    table = format_report(report)
    assert "fast, batch 2" in table and "ITEM cost / baseline cost" in table and "fast against default" in table


def test_box_recall_counts_boxes_found_again():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0 and iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(1 / 3)
    reference = [ItemAnnotations("c", ["a", "b", "c"], [[0, 0, 10, 10], [0, 0, 4, 4], None])]
    other = [ItemAnnotations("c", ["a", "b", "c"], [[1, 0, 10, 10], [2, 2, 6, 6], [0, 0, 1, 1]])]
    assert box_recall(reference, other) == {"boxes": 2, "found_again": 1, "recall": 0.5, "iou_threshold": 0.5}


def test_fixed_caption_names_exactly_the_requested_nouns():
    from item_detector.processing_item import load_spacy

    nlp = load_spacy("en_core_web_sm")
    for n in range(1, 9):
        caption, nouns = fixed_caption(n)
        assert [chunk.root.text for chunk in nlp(caption + " . . .").noun_chunks] == nouns and len(nouns) == n
    with pytest.raises(ValueError):
        fixed_caption(9)


def test_benchmark_command_line(tmp_path, capsys):
    from item_cli.cli import main

    assert main(["benchmark", "--tiny", "--quick", "--profiles", "default", "--batch-sizes", "1", "--output",
                 str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "default, batch 1" in out and json.loads((tmp_path / "b.json").read_text())["settings"]["repeats"] == 1


def test_backbone_cost_table_runs_for_every_family(monkeypatch):
    """`item benchmark --backbones` builds each family and times forward_features (tiny sizes here)."""
    from item_cli.bench import backbones

    small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4)
    tiny = {
        "clip": dict(checkpoint="tiny clip", vision=dict(small, patch_size=8, image_size=32),
                     text=dict(small, vocab_size=1000, max_position_embeddings=77), projection_dim=24),
        "siglip": dict(checkpoint="tiny siglip", vision=dict(small, patch_size=8, image_size=32),
                       text=dict(small, vocab_size=1000, max_position_embeddings=64, projection_size=32)),
        "siglip2": dict(checkpoint="tiny siglip2", vision=dict(small, patch_size=8, num_patches=16),
                        text=dict(small, vocab_size=1000, max_position_embeddings=64, projection_size=32)),
        "metaclip_2": dict(checkpoint="tiny metaclip 2", vision=dict(small, patch_size=8, image_size=32),
                           text=dict(small, vocab_size=1000, max_position_embeddings=77), projection_dim=16),
    }
    monkeypatch.setattr(backbones, "FAMILIES", tiny)
    report = backbones.measure_backbones(tuple(tiny), n_objects=2, repeats=1, log=lambda message: None)
    rows = report["backbones"]
    assert list(rows) == list(tiny) and [rows[f]["embedding_dim"] for f in tiny] == [24, 32, 32, 16]
    assert all(row["seconds_per_image"] > 0 for row in rows.values())
    assert all(f"| {family} |" in backbones.format_backbone_table(report) for family in tiny)


def test_head_training_epoch_on_cached_features_runs_through_trainer():
    from item_cli.bench.training import head_training_epoch

    result = head_training_epoch(images=512, dim=32, objects=2, repeats=1)
    assert result["images"] == 512 and result["seconds_per_epoch"] > 0
    assert result["images_per_second"] == pytest.approx(512 / result["seconds_per_epoch"])


def test_ablation_grid_timing_trains_every_variant():
    from item_cli.bench.training import ablation_grid

    result = ablation_grid(images=64, val_images=32, dim=16, objects=2, repeats=1)
    assert result["variants"] == 12 and len(result["variants_summary"]) == 12 and result["seconds"] > 0
