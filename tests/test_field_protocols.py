"""The protocols of the field (Synthbuster, Chameleon, WildRF, SynthWildX, Community Forensics, AI-GenBench-style
chronology) resolve a miniature tree laid out as each file documents; Hub sets and release windows are checked."""

import csv
import json

import numpy as np
import pytest
from helpers import fixed_captions, noise_image

from item_cli.cli import main
from item_cli.evaluation.sets import load_sets, sets_from_arguments
from item_cli.protocols import list_protocols, load_protocol
from item_cli.protocols.__main__ import main as protocols_main

# Each protocol's documented tree: (folder relative to the root, label folder or None for a paired folder).
TREES = {
    "synthbuster": ["real_RAISE_1k", "dalle2", "dalle3", "firefly", "glide", "midjourney-v5", "stable-diffusion-1-3",
                    "stable-diffusion-1-4", "stable-diffusion-2", "stable-diffusion-xl"],
    "synthwildx": ["real", "dalle3", "firefly", "midjourney_v5"],
    "chameleon": ["test/0_real", "test/1_fake"],
    "wildrf": [f"test/{platform}/{label}" for platform in ("reddit", "facebook", "twitter")
               for label in ("0_real", "1_fake")],
}
EXPECTED = {  # set -> (real, fake) with 2 images per folder
    "synthbuster": {name: (2, 2) for name in ("dalle2", "dalle3", "firefly", "glide", "midjourney_v5", "sd13", "sd14",
                                              "sd2", "sdxl")},
    "synthwildx": {"dalle3": (2, 2), "firefly": (2, 2), "midjourney_v5": (2, 2)},
    "chameleon": {"chameleon": (2, 2)},
    "wildrf": {"reddit": (2, 2), "facebook": (2, 2), "twitter": (2, 2)},
}


def _fill(root, folders, rng, per_folder=2):
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_folder):
            noise_image(rng, (24, 24)).save(root / folder / f"{i}.png")


def test_the_new_protocols_are_built_in():
    assert {"synthbuster", "chameleon", "wildrf", "synthwildx", "communityforensics_eval", "aigenbench"} <= set(
        list_protocols())
    for name in list_protocols():  # every built-in names its source and its layout
        protocol = load_protocol(name)
        assert protocol.reference and protocol.layout and protocol.root_hint, name


@pytest.mark.parametrize("name", sorted(TREES))
def test_each_protocol_resolves_its_documented_tree(name, tmp_path):
    _fill(tmp_path, TREES[name], np.random.default_rng(0))
    sets, protocol = sets_from_arguments(None, name, str(tmp_path), manifest_dir=tmp_path / "manifests")
    loaded = load_sets(sets, protocol=protocol)
    assert [item.name for item in loaded.sets] == list(EXPECTED[name])  # the file's order
    assert {set_name: (c["real"], c["fake"]) for set_name, c in loaded.counts.items()} == EXPECTED[name]
    if name == "synthbuster":  # every generator is paired with the same RAISE reals
        reals = {r.path for r in loaded.records if r.label == 0 and r.generator == "sdxl"}
        assert reals and all("real_RAISE_1k" in path for path in reals)
        assert {r.path for r in loaded.records if r.label == 0 and r.generator == "dalle2"} == reals
    gone = {"synthbuster": "stable-diffusion-xl", "synthwildx": "midjourney_v5", "chameleon": "test",
            "wildrf": "test/twitter"}[name]
    (tmp_path / gone).rename(tmp_path / "moved")  # a missing folder is named in the error
    with pytest.raises(ValueError, match=f"1 of {len(EXPECTED[name])} sets are missing"):
        load_protocol(name, root=tmp_path)


def test_community_forensics_is_a_hub_source_that_needs_no_root():
    sets, protocol = sets_from_arguments(None, "communityforensics_eval")
    assert protocol == "communityforensics_eval"
    assert [(s.name, s.path) for s in sets] == [("publiceval", "hf:OwensLab/CommunityForensics"),
                                                ("commercial", "hf:OwensLab/CommunityForensics")]
    hub = load_protocol("communityforensics_eval").sets[0].hub
    assert hub == {"source": "hf:OwensLab/CommunityForensics", "split": "PublicEval", "image_column": "image_data",
                   "label_column": "label", "label_map": {"0": 0, "1": 1}, "generator_column": "model_name"}


@pytest.mark.parametrize("entry, match", [
    ("{name: x, source: 'OwensLab/x', label_column: label}", "hf:ORG/NAME"),
    ("{name: x, source: 'hf:a/b', label_map: 'real=0,fake=1'}", "needs `label_column`"),
    ("{name: x, source: 'hf:a/b', label_column: y, label_map: 'real=0,fake=2'}", "0 \\(real\\) or 1"),
    ("{name: x, source: 'hf:a/b', label_column: y, label_map: {real: 0}}", "one class only"),
    ("{name: x, path: p, split: test}", "belong to a `source"),
    ("{name: x, source: 'hf:a/b', path: p, label_column: y}", "exactly one of"),
    ("{name: x, path: p, released: 2023}", "YYYY-MM"),
])
def test_bad_hub_and_date_fields_are_refused_clearly(tmp_path, entry, match):
    (tmp_path / "p").mkdir()
    file = tmp_path / "bench.yaml"
    file.write_text(f"name: bench\ndescription: d\nsets:\n  - {entry}\n")
    with pytest.raises(ValueError, match=match):
        load_protocol(str(file))


def test_a_user_hub_set_reads_a_label_map_text(tmp_path):
    file = tmp_path / "bench.yaml"
    file.write_text("name: bench\ndescription: d\nsets:\n  - {name: x, source: 'hf:me/data', split: test, "
                    "label_column: kind, label_map: 'human=0,ai=1'}\n")
    assert load_protocol(str(file)).sets[0].hub["label_map"] == {"human": 0, "ai": 1}


def test_until_trains_on_the_past_and_tests_on_the_next_window():
    protocol = load_protocol("aigenbench", until="2021-09")
    train = [s.name for s in protocol.select("train")]
    test = [s.name for s in protocol.select("test")]
    assert train[0] == "cyclegan" and train[-2:] == ["lama", "facesynthetics"] and len(train) == 18
    assert test == ["projectedgan", "palette", "vq_diffusion", "denoising_diffusion_gan"]  # the next 4, in order
    assert all(s.released <= "2021-09" for s in protocol.select("train"))
    everything = load_protocol("aigenbench")
    assert len(everything.select("test")) == 36 and [s.released for s in everything.sets] == sorted(
        s.released for s in everything.sets)
    for until, match in (("2016-01", "no generator is released by then"), ("2030-01", "after it"),
                         ("2023-13", "YYYY-MM")):
        with pytest.raises(ValueError, match=match):
            load_protocol("aigenbench", until=until)
    with pytest.raises(ValueError, match="chronological protocols"):
        load_protocol("genimage", until="2023-01")


def test_a_chronological_window_trains_and_evaluates_from_the_command_line(checkpoint, tmp_path, capsys):
    generators = ["cyclegan", "crn", "progan", "stargan", "sn_patchgan", "biggan", "imle"]
    _fill(tmp_path / "aigb", [f"{g}/{label}" for g in generators for label in ("0_real", "1_fake")],
          np.random.default_rng(1), per_folder=1)
    root = str(tmp_path / "aigb")
    assert protocols_main(["manifest", "aigenbench", "--protocol-root", root, "--until", "2017-10",
                           "--output", str(tmp_path / "m")]) == 0
    manifest = tmp_path / "m" / "aigenbench-until-2017-10-train.csv"
    assert capsys.readouterr().out.strip() == str(manifest)
    with open(manifest) as handle:
        rows = list(csv.DictReader(handle))
    assert sorted({row["generator"] for row in rows}) == ["crn", "cyclegan", "progan"] and len(rows) == 6
    with fixed_captions("a photo of a dog"):
        code = main(["evaluate", "--model", str(checkpoint), "--protocol", "aigenbench", "--protocol-root", root,
                     "--until", "2017-10", "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                     "--no-plots", "--no-report"])
    assert code == 0
    results = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [name for name in results["conditions"]["clean"]["generators"] if name != "mean"] == [
        "stargan", "sn_patchgan", "biggan", "imle"]
    assert protocols_main(["manifest", "aigenbench", "--protocol-root", root, "--until", "1999-01"]) == 2


def test_a_protocol_hub_set_is_read_with_its_own_split_columns_and_labels(tmp_path, monkeypatch):
    """The protocol's `split`, columns and `label_map` reach the data-source layer (a Hub id that names a local
    folder is read by the same `load_dataset` call that reads the Hub)."""
    import io

    from datasets import Dataset, Image

    def png(value):
        buffer = io.BytesIO()
        noise_image(np.random.default_rng(value), (16, 12)).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    repo = tmp_path / "me" / "data" / "data"
    repo.mkdir(parents=True)
    for split, kinds in (("test", ["human", "ai", "ai"]), ("train", ["human"])):
        rows = Dataset.from_dict({"picture": [png(i) for i in range(len(kinds))], "kind": kinds})
        rows.cast_column("picture", Image()).to_parquet(str(repo / f"{split}-00000-of-00001.parquet"))
    file = tmp_path / "bench.yaml"
    file.write_text("name: bench\ndescription: d\nsets:\n  - {name: x, source: 'hf:me/data', split: test, "
                    "image_column: picture, label_column: kind, label_map: 'human=0,ai=1'}\n")
    monkeypatch.chdir(tmp_path)
    sets, _ = sets_from_arguments(None, str(file))
    assert sets[0].options.split == "test" and sets[0].options.label_map == "human=0,ai=1"
    loaded = load_sets(sets)
    assert [record.label for record in loaded.records] == [0, 1, 1]  # the test split only, labels mapped
    assert {record.generator for record in loaded.records} == {"x"}
