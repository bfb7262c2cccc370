"""`item train`: Trainer on cached features or on images, the complete checkpoint it writes, no frozen work
on a second run, and calibration of the decision threshold."""

import json

import numpy as np
import pytest
import torch
from helpers import fixed_captions
from safetensors.torch import load_file

from item_cli.cli import main
from item_cli.data.perturb import Augmentation
from item_cli.training import ImageCollator, train, training_arguments
from item_detector.modeling_item import ItemForImageClassification
from item_detector.processing_item import ItemAnnotations, ItemProcessor

EXPECTED_FILES = {
    "config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "tokenizer_config.json", "README.md",
    "configuration_item.py", "processing_item.py", "modeling_item.py", "pipeline_item.py", "images_item.py", "annotation_item.py",
    "components_item.py", "encoding_item.py", "visualization_item.py", "provenance_item.py", "provenance_formats_item.py",
    "handler.py", "requirements.txt", "captioner", "detector",
}


@pytest.fixture(scope="module")
def data(labelled_data):
    return labelled_data


@pytest.fixture(scope="module")
def trained(checkpoint, data, tmp_path_factory):
    """One `item train` run on the command line: (output folder, cache folder, exit code)."""
    root = tmp_path_factory.mktemp("trained")
    with fixed_captions("a photo of a dog"):  # a fixed caption: the tiny captioner is slow and says nothing
        code = main([
        "train", "--model", str(checkpoint), "--data", str(data), "--output_dir", str(root / "out"),
        "--cache-dir", str(root / "cache"), "--num_train_epochs", "3", "--per_device_train_batch_size", "4",
        "--learning_rate", "0.01", "--val-fraction", "0.25", "--use_cpu", "--disable_tqdm", "true",
        "--calibrate", "balanced",
        ])
    return root / "out", root / "cache", code


def _head(state: dict) -> dict:
    return {name: tensor for name, tensor in state.items() if name.startswith("head.")}


def test_features_and_images_training_give_the_same_model(checkpoint, data, tmp_path):
    heads, logs = {}, {}
    for mode in ("features", "images"):
        args = training_arguments(tmp_path / mode, num_train_epochs=2, per_device_train_batch_size=4, use_cpu=True,
                                  disable_tqdm=True, seed=3)
        result = train(checkpoint, data, args, train_on=mode, cache_dir=tmp_path / "cache", storage_dtype="float32",
                       val_fraction=0.25)
        heads[mode] = _head(load_file(tmp_path / mode / "model.safetensors"))
        logs[mode] = [entry["loss"] for entry in result["log_history"] if "loss" in entry]
    start = _head(load_file(checkpoint / "model.safetensors"))
    assert heads["features"].keys() == heads["images"].keys() == start.keys()
    for name in start:
        assert torch.allclose(heads["features"][name], heads["images"][name], atol=1e-5), name
    assert any(not torch.allclose(heads["features"][name], start[name]) for name in start)  # it did train
    assert np.allclose(logs["features"], logs["images"], atol=1e-5) and len(logs["features"]) == 2


def test_train_writes_a_complete_loadable_checkpoint(trained, data, checkpoint):
    out, _, code = trained
    assert code == 0
    assert {path.name for path in out.iterdir()} == EXPECTED_FILES  # no trainer checkpoints or pickles left
    card = (out / "README.md").read_text()
    assert "## Training" in card and "learning rate: `0.01`" in card and "| validation metric | value |" in card
    assert f"training data: `{data.name} (" in card and str(data) not in card  # the data's name, not its path
    assert "trained on: `cached frozen features`" in card
    config = json.loads((out / "config.json").read_text())
    assert config["threshold_calibration"]["method"] == "balanced"
    assert config["decision_threshold"] == config["threshold_calibration"]["threshold"]

    from transformers import AutoModelForImageClassification, pipeline

    model = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True)
    saved = _head(load_file(out / "model.safetensors"))
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in saved.items())
    pipe = pipeline("image-classification", model=str(out), trust_remote_code=True)
    image = next((data / "progan" / "0_real").iterdir())
    result = pipe(str(image), explain=True)
    assert {item["label"] for item in result["labels"]} == {"real", "fake"}
    assert result["threshold"] == pytest.approx(config["decision_threshold"])


def test_a_second_train_does_no_captioning_detection_or_backbone_work(trained, checkpoint, data, monkeypatch, tmp_path):
    _, cache_dir, code = trained
    assert code == 0

    def forbidden(*args, **kwargs):
        raise AssertionError("frozen network called on a second run")

    monkeypatch.setattr(ItemProcessor, "caption", forbidden)
    monkeypatch.setattr(ItemProcessor, "ground", forbidden)
    monkeypatch.setattr(ItemProcessor, "extract_nouns", forbidden)
    monkeypatch.setattr(ItemForImageClassification, "forward_features", forbidden)
    code = main([
        "train", "--model", str(checkpoint), "--data", str(data), "--output_dir", str(tmp_path / "second"),
        "--cache-dir", str(cache_dir), "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
        "--val-fraction", "0.5", "--use_cpu", "--disable_tqdm", "true",  # another split: the same cache
    ])
    assert code == 0 and (tmp_path / "second" / "model.safetensors").is_file()


def test_calibrate_stores_the_threshold_and_detect_uses_it(trained, data, tmp_path, capsys):
    import shutil

    from item_cli.checkpoint import load_checkpoint
    from item_cli.commands.detect import detect, load_pipeline
    from item_cli.data import load_records
    from item_cli.data.decode import ImageReader
    from item_cli.evaluation.evaluate import score

    out, cache_dir, _ = trained
    model_dir = tmp_path / "model"
    shutil.copytree(out, model_dir)
    code = main(["calibrate", "--model", str(model_dir), "--data", str(data), "--method", "fpr", "--target-fpr", "0.25",
                 "--cache-dir", str(cache_dir)])
    assert code == 0
    config = json.loads((model_dir / "config.json").read_text())
    calibration = config["threshold_calibration"]
    assert calibration["method"] == "fpr" and calibration["target_fpr"] == 0.25
    threshold = config["decision_threshold"]
    assert threshold == calibration["threshold"]
    assert "## Decision threshold" in (model_dir / "README.md").read_text()

    # The threshold meets its target on the calibration data.
    model, processor = load_checkpoint(model_dir)
    rows, scores = score(model, processor, load_records(data)[0], cache_dir=cache_dir)
    assert (scores[rows.labels == 0] >= threshold).mean() <= 0.25
    assert model.config.decision_threshold == threshold

    # `item detect` and the pipeline's explain output call images fake at that threshold.
    pipe = load_pipeline(str(model_dir), device="cpu")
    paths = sorted((data / "stylegan").rglob("*.*"))[::3]
    with ImageReader(workers=1) as reader:
        results = list(detect(pipe, reader.read(paths), batch_size=4))
    assert all(result["threshold"] == threshold for _, result, _ in results)
    assert all(result["is_fake"] == (result["fake_probability"] >= threshold) for _, result, _ in results)
    plain = pipe(str(paths[0]))
    assert [item["label"] for item in plain] in (["fake", "real"], ["real", "fake"])  # still plain probabilities
    assert sum(item["score"] for item in plain) == pytest.approx(1.0, abs=1e-5)


def test_augmentation_needs_images_mode_and_changes_only_training_rows(checkpoint, data, tmp_path):
    args = training_arguments(tmp_path / "out", use_cpu=True)
    with pytest.raises(ValueError, match="--train-on images"):
        train(checkpoint, data, args, augmentation=Augmentation(blur_prob=0.5), cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="probability"):
        Augmentation(jpeg_prob=1.5)

    processor = ItemProcessor.from_pretrained(str(checkpoint), trust_remote_code=True)
    path = str(next((data / "progan" / "0_real").iterdir()))
    row = {"path": path, "annotation": ItemAnnotations("a photo"), "label": 0}
    collate = ImageCollator(processor, Augmentation(blur_prob=1.0, jpeg_prob=1.0, seed=0))
    clean = collate([{**row, "augment": False}])["pixel_values"]
    augmented = collate([{**row, "augment": True}])["pixel_values"]
    assert torch.equal(clean, ImageCollator(processor, None)([{**row, "augment": True}])["pixel_values"])
    assert not torch.allclose(clean, augmented)


def test_genimage_data_validates_on_its_own_val_folders(checkpoint, tmp_path):
    from helpers import fixed_captions, make_genimage

    data = make_genimage(tmp_path / "genimage", generators=("adm",), per_class=2)
    args = training_arguments(tmp_path / "out", num_train_epochs=1, per_device_train_batch_size=4, use_cpu=True,
                              disable_tqdm=True)
    with fixed_captions("a photo"):
        result = train(checkpoint, data, args, cache_dir=tmp_path / "cache")
    assert (result["train_images"], result["val_images"]) == (4, 4)
    assert "the data's own val folders" in (tmp_path / "out" / "README.md").read_text()


def test_the_best_epoch_is_kept_and_trainer_checkpoints_hold_only_the_head(checkpoint, data, tmp_path):
    args = training_arguments(tmp_path / "out", num_train_epochs=4, per_device_train_batch_size=4, use_cpu=True,
                              disable_tqdm=True, learning_rate=0.05, save_total_limit=None)
    with fixed_captions("a photo"):
        result = train(checkpoint, data, args, cache_dir=tmp_path / "cache", val_fraction=0.25, keep_checkpoints=True)
    work = tmp_path / "out" / "trainer-checkpoints"
    folders = sorted(work.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(folders) == 4
    for folder in folders:  # no 1.7 GB backbone per epoch: the head only
        assert set(load_file(folder / "model.safetensors")) == set(_head(load_file(checkpoint / "model.safetensors")))
    state = json.loads((folders[-1] / "trainer_state.json").read_text())
    losses = [entry["eval_loss"] for entry in result["log_history"] if "eval_loss" in entry]
    best = folders[int(np.argmin(losses))]
    assert state["best_model_checkpoint"].endswith(best.name)
    final = _head(load_file(tmp_path / "out" / "model.safetensors"))
    assert all(torch.equal(final[name], tensor) for name, tensor in load_file(best / "model.safetensors").items())
