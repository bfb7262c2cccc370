"""Training the head with transformers' Trainer: only the head moves, the loss is sane, saving gives a checkpoint."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from item_detector.modeling_item import ItemForImageClassification
from item_detector.processing_item import ItemProcessor

CAPTIONS = ["a man riding a bike", "a cat on a table", "a dog on the road", "a red car near a tree"]


def make_dataset(processor, n=8, seed=0):
    """A tiny `datasets.Dataset` of noise images, processed with `Dataset.map(batched=True)` into tensors."""
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    raw = Dataset.from_dict(
        {
            "image": [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for _ in range(n)],
            "caption": [CAPTIONS[i % len(CAPTIONS)] for i in range(n)],
            "labels": [i % 2 for i in range(n)],
        }
    )

    def encode(batch):
        return dict(processor(images=batch["image"], captions=batch["caption"], return_tensors="np"))

    data = raw.map(encode, batched=True, batch_size=4, remove_columns=["image", "caption"])
    data.set_format("torch")
    return data


def train(folder, output_dir, dataset=None, max_steps=3, **arguments):
    from transformers import Trainer, TrainingArguments

    model = ItemForImageClassification.from_pretrained(folder)
    processor = ItemProcessor.from_pretrained(folder)
    dataset = dataset if dataset is not None else make_dataset(processor)
    arguments.setdefault("learning_rate", 1e-2)
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        dataloader_num_workers=0,
        seed=0,
        **arguments,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    return trainer, model, processor, dataset


@pytest.fixture(scope="module")
def small_checkpoint(build_tiny_checkpoint):
    return build_tiny_checkpoint(max_objects=3)


def test_dataset_has_model_inputs(small_checkpoint):
    data = make_dataset(ItemProcessor.from_pretrained(small_checkpoint), n=4)
    row = data[0]
    assert set(row) == {"pixel_values", "input_ids", "attention_mask", "object_mask", "labels"}
    assert row["pixel_values"].shape == (4, 3, 32, 32)
    assert row["object_mask"].dtype == torch.bool
    assert data[0:2]["input_ids"].shape == (2, 4, 77)


def test_trainer_moves_only_the_head(small_checkpoint, tmp_path):
    trainer, model, _, _ = train(small_checkpoint, tmp_path)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    # the optimizer gets the head's parameters only
    result = trainer.train()
    trainable = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert trainable == {id(p) for p in model.head.parameters()}

    assert math.isfinite(result.training_loss) and 0.0 < result.training_loss < 5.0
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, backbone_before[key]), f"backbone weight {key} changed"
    changed = [key for key, value in model.head.state_dict().items() if not torch.equal(value, head_before[key])]
    assert sorted(changed) == sorted(head_before)  # every head tensor moved
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training  # Trainer put the model in train mode; the backbone stays in eval


def test_gradient_accumulation_does_not_double_the_loss(small_checkpoint, tmp_path):
    processor = ItemProcessor.from_pretrained(small_checkpoint)
    data = make_dataset(processor)
    first = {}
    for steps in (1, 2):
        trainer, *_ = train(small_checkpoint, tmp_path / f"ga{steps}", dataset=data, max_steps=2, gradient_accumulation_steps=steps, learning_rate=1e-6)
        trainer.train()
        first[steps] = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry][0]
    # an untrained two-way head sits near ln 2 per example; a doubled loss would be near 1.39
    assert abs(first[1] - math.log(2)) < 0.1
    assert abs(first[2] - math.log(2)) < 0.1
    assert 0.8 < first[2] / first[1] < 1.25


def test_trainer_save_model_gives_a_loadable_checkpoint(small_checkpoint, tmp_path):
    from transformers import AutoModelForImageClassification, AutoProcessor, pipeline

    trainer, model, processor, data = train(small_checkpoint, tmp_path / "run", max_steps=2)
    trainer.train()
    out = tmp_path / "saved"
    trainer.save_model(str(out))
    for name in ("config.json", "model.safetensors", "processor_config.json", "modeling_item.py", "processing_item.py",
                 "configuration_item.py", "pipeline_item.py"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.bin")) or all(p.name == "training_args.bin" for p in out.rglob("*.bin"))

    batch = {key: value[:2] for key, value in data[:2].items() if key != "labels"}
    model.eval()
    with torch.no_grad():
        want = model(**batch).logits
    loaded = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True)
    assert all(not p.requires_grad for p in loaded.backbone.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, want, atol=1e-6, rtol=0)
    reloaded_processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    assert reloaded_processor.max_objects == 3
    result = pipeline("image-classification", model=str(out), trust_remote_code=True)(Image.new("RGB", (20, 16), "gray"))
    assert [item["label"] for item in result] and {item["label"] for item in result} == {"real", "fake"}


def test_on_the_fly_collator_with_raw_columns(small_checkpoint, tmp_path):
    """remove_unused_columns=False with a collator that runs the processor on raw images and captions."""
    from datasets import Dataset

    processor = ItemProcessor.from_pretrained(small_checkpoint)
    rng = np.random.default_rng(3)
    raw = Dataset.from_dict(
        {
            "image": [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for _ in range(4)],
            "caption": CAPTIONS,
            "label": [0, 1, 0, 1],
        }
    )

    def collate(rows):
        inputs = processor(images=[r["image"] for r in rows], captions=[r["caption"] for r in rows])
        inputs["labels"] = torch.tensor([r["label"] for r in rows])
        return dict(inputs)

    from transformers import Trainer, TrainingArguments

    model = ItemForImageClassification.from_pretrained(small_checkpoint)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, report_to=[], use_cpu=True,
        save_strategy="no", remove_unused_columns=False, logging_steps=1,
    )
    result = Trainer(model=model, args=args, train_dataset=raw, data_collator=collate).train()
    assert math.isfinite(result.training_loss)
