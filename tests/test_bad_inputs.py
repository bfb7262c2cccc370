"""Bad and unusual inputs: each gives a clear error naming the value, or a defined result."""

import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from item_detector.configuration_item import ItemConfig
from item_detector.modeling_item import ItemForImageClassification
from helpers import annotate_and_encode, noise_images

from item_detector.images_item import load_image, to_rgb
from item_detector.processing_item import ItemProcessor


def noise(size=(40, 30), seed=0):
    return noise_images(1, size, seed)[0]


LOADED_OPTIONS = {"max_objects": 3}


def run(loaded, images, **kwargs):
    model, processor = loaded
    inputs, found = annotate_and_encode(processor, images, **kwargs)
    annotations = {key: [getattr(a, key) for a in found] for key in ("caption", "nouns", "boxes", "box_scores")}
    with torch.no_grad():
        output = model(**inputs)
    return inputs, annotations, output


@pytest.fixture
def broken_files(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    buffer = io.BytesIO()
    noise((64, 48)).save(buffer, "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return text, truncated


# ---------------------------------------------------------------------------------------------- unreadable files
def test_unreadable_files_raise_value_error_naming_the_path(broken_files, tmp_path):
    for path in (*broken_files, tmp_path / "missing.png"):
        with pytest.raises(ValueError) as info:
            load_image(path)
        assert str(path) in str(info.value)
        with pytest.raises(ValueError, match=path.name):
            load_image(str(path))


def test_processor_reports_the_bad_file(loaded, broken_files):
    _, processor = loaded
    with pytest.raises(ValueError, match="truncated.jpg"):
        processor(images=[noise(), broken_files[1]], captions=["a", "b"], nouns=[[], []], boxes=[[], []])


def test_folder_with_one_broken_file(broken_files, tmp_path):
    from item_cli.data import find_files
    from item_cli.data.decode import ImageReader

    folder = broken_files[0].parent
    for i in range(2):
        noise(seed=i).save(folder / f"good{i}.png")
    (folder / "readme.txt").write_text("not an image, and not named like one")
    paths, skipped = find_files([folder])
    assert [p.name for p in paths] == ["good0.png", "good1.png", "notes.jpg", "readme.txt", "truncated.jpg"] and not skipped
    with ImageReader(workers=2) as reader:
        read = list(reader.read(paths))
    assert [Path(d.path).name for d in read if d.error is None] == ["good0.png", "good1.png"]
    assert all(d.image.mode == "RGB" for d in read if d.error is None)
    failed = {Path(d.path).name: d.error for d in read if d.error is not None}
    assert set(failed) == {"notes.jpg", "readme.txt", "truncated.jpg"}
    assert "not a file of a supported format" in failed["readme.txt"] and "truncated" in failed["truncated.jpg"]


def test_detect_command_skips_the_broken_file(broken_files, checkpoint, capsys, monkeypatch):
    from item_cli.cli import main

    folder = broken_files[0].parent
    for i in range(2):
        noise(seed=i).save(folder / f"good{i}.png")
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    code = main(["detect", str(folder), "--model", str(checkpoint), "--json", "--batch-size", "2", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0
    records = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    records = [record for record in records if "error" not in record]
    assert [record["path"] for record in records] == [str(folder / "good0.png"), str(folder / "good1.png")]
    for record in records:
        assert 0.0 <= record["fake_probability"] <= 1.0
        assert record["is_fake"] == (record["fake_probability"] >= record["threshold"])
        assert {item["label"] for item in record["labels"]} == {"real", "fake"}
    errors = {Path(r["path"]).name: r["error"] for r in (json.loads(line) for line in captured.out.splitlines()) if "error" in r}
    assert set(errors) == {"truncated.jpg", "notes.jpg"}  # every input file answered for, exactly once
    assert "2 images scored, 2 files skipped" in captured.err


def test_detect_command_text_output_and_threshold(checkpoint, tmp_path, capsys, monkeypatch):
    from item_cli.cli import main

    noise(seed=3).save(tmp_path / "one.png")
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    assert main(["detect", str(tmp_path / "one.png"), "--model", str(checkpoint), "--threshold", "0"]) == 0
    out = capsys.readouterr().out
    assert "one.png: FAKE" in out and "threshold 0.000" in out and "caption:" in out


def test_detect_command_with_no_readable_image_fails(broken_files, checkpoint, capsys, monkeypatch):
    from item_cli.cli import main

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    assert main(["detect", str(broken_files[1]), "--model", str(checkpoint), "--json"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "truncated" in json.loads(lines[0])["error"]


def test_detect_command_with_a_missing_path(checkpoint, tmp_path, capsys, monkeypatch):
    from item_cli.cli import main

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    # the missing path is one skipped entry (issue 17); with nothing else to score the exit code is 1
    assert main(["detect", str(tmp_path / "nowhere"), "--model", str(checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "skipped " in err and "nowhere: no such file or folder" in err
    assert "error: no image files found in the given paths (1 entry skipped)" in err


# ---------------------------------------------------------------------------------------------- image modes
def test_rgba_transparency_becomes_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    rgb = load_image(rgba)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((1, 1)) == (0, 0, 255)


def test_palette_with_transparency():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((2, 2), 1)
    palette.info["transparency"] = 0
    rgb = load_image(palette)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((2, 2)) == (200, 100, 50)


def test_grayscale_and_cmyk():
    gray = load_image(Image.new("L", (3, 3), 77))
    assert gray.mode == "RGB" and gray.getpixel((1, 1)) == (77, 77, 77)
    cmyk = load_image(Image.new("CMYK", (3, 3), (0, 255, 255, 0)))
    assert cmyk.mode == "RGB" and cmyk.getpixel((0, 0)) == (255, 0, 0)
    gray_array = load_image(np.full((5, 6, 1), 9, dtype=np.uint8))
    assert gray_array.size == (6, 5) and gray_array.getpixel((0, 0)) == (9, 9, 9)


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 48).round().astype(np.uint16).reshape(48, 64)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    path = tmp_path / "deep.png"
    image.save(path)
    for source in (image, path):
        rgb = np.asarray(load_image(source))
        assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
        np.testing.assert_allclose(rgb[..., 0], np.round(values / 65535 * 255), atol=1)
        assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
        assert 120 <= rgb[24, 32, 0] <= 135  # the middle is mid-gray, not clipped to white
        assert (rgb == 255).mean() < 0.01


def test_thirty_two_bit_modes_are_rescaled():
    values = np.array([[0, 1000], [2000, 4000]], dtype=np.int32)
    rgb = np.asarray(to_rgb(Image.fromarray(values, mode="I")))
    assert rgb[..., 0].tolist() == [[0, 64], [128, 255]]


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "CMYK", "I;16", "LA", "1"])
def test_every_mode_runs_through_the_processor(loaded, mode):
    image = noise((24, 20)).convert("RGBA" if mode == "P" else "RGB")
    if mode == "P":
        image = image.convert("P")
        image.info["transparency"] = 0
    elif mode == "I;16":
        image = Image.fromarray((np.asarray(image.convert("L"), dtype=np.uint16) * 257))
    else:
        image = image.convert(mode)
    inputs, _, output = run(loaded, [image], captions=["a man"], nouns=[["man"]], boxes=[[[2, 2, 15, 15]]])
    assert inputs["pixel_values"].shape == (1, 4, 3, 32, 32)
    assert torch.isfinite(output.logits).all()


def test_sixteen_bit_through_the_processor_is_not_white(loaded):
    _, processor = loaded
    mid = Image.fromarray(np.full((16, 16), 32768, dtype=np.uint16))
    white = Image.new("RGB", (16, 16), (255, 255, 255))
    pixels = processor(images=[mid, white], captions=["a", "a"], nouns=[[], []], boxes=[[], []])["pixel_values"]
    assert (pixels[0, 0] < pixels[1, 0] - 0.5).all()


def test_bad_arrays_and_types():
    with pytest.raises(ValueError, match="float32"):
        load_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(4, 4, 2\)"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(TypeError, match="int"):
        load_image(123)
    with pytest.raises(ValueError, match="4 bytes"):
        load_image(b"\x89PNG")  # bytes are an image file's contents: these are not a readable one


# ---------------------------------------------------------------------------------------------- odd sizes
def test_one_pixel_image_end_to_end(loaded):
    """Captioner, spaCy, detector, crop and model on a 1 x 1 image."""
    inputs, annotations, output = run(loaded, [Image.new("RGB", (1, 1), (200, 10, 10))], captions=["a man on a bike"])
    assert inputs["pixel_values"].shape == (1, 4, 3, 32, 32)
    assert annotations["nouns"] == [["man", "bike"]]
    for box in annotations["boxes"][0]:
        assert box is None or box == [0.0, 0.0, 1.0, 1.0]
    assert torch.isfinite(output.logits).all()
    inputs, annotations, output = run(loaded, [Image.new("RGB", (1, 1))])  # with the captioner too
    assert isinstance(annotations["caption"][0], str)
    assert torch.isfinite(output.logits).all()


@pytest.mark.parametrize("size", [(300, 1), (1, 300), (200, 3)])
def test_extreme_aspect_ratio_end_to_end(loaded, size):
    image = noise(size)
    inputs, annotations, output = run(loaded, [image], captions=["a man on a road"])
    assert torch.isfinite(output.logits).all()
    assert torch.isfinite(inputs["pixel_values"]).all()
    for box in annotations["boxes"][0]:
        if box is not None:
            assert 0 <= box[0] < box[2] <= size[0] and 0 <= box[1] < box[3] <= size[1]


def test_thin_crop_keeps_its_colour(loaded):
    """A crop 64 x 3 pixels is padded, not stretched or misread: its own pixels keep their colour."""
    _, processor = loaded
    image = Image.new("RGB", (64, 48), (200, 30, 100))
    out = processor(images=[image], captions=["a"], nouns=[["x"]], boxes=[[[0, 0, 64, 3]]], return_tensors="np")
    mean = np.array(processor.image_processor.image_mean)
    std = np.array(processor.image_processor.image_std)
    expected = (np.array([200, 30, 100]) / 255 - mean) / std
    crop = out["pixel_values"][0, 1]
    # at least the top rows (the crop's own pixels) carry its colour in every channel
    np.testing.assert_allclose(crop[:, 0, 16], expected, atol=0.05)


# ---------------------------------------------------------------------------------------------- annotations
def test_caption_without_nouns(loaded):
    inputs, annotations, output = run(loaded, [noise()], captions=["it is."])
    assert annotations["nouns"] == [[]]
    assert not inputs["object_mask"].any()
    assert torch.isfinite(output.logits).all()
    assert (output.similarities[0, 1:] == 0).all()


def test_empty_caption(loaded):
    inputs, annotations, output = run(loaded, [noise()], captions=[""])
    assert annotations["nouns"] == [[]] and not inputs["object_mask"].any()
    assert torch.isfinite(output.logits).all()


def test_nouns_the_detector_cannot_find_are_dropped(build_tiny_checkpoint):
    folder = build_tiny_checkpoint(max_objects=3, box_threshold=1.0)
    model, processor = ItemForImageClassification.from_pretrained(folder), ItemProcessor.from_pretrained(folder)
    inputs, annotations = annotate_and_encode(processor, [noise()], captions=["a man riding a bike"])
    assert annotations[0].nouns == ["man", "bike"]
    assert annotations[0].boxes == [None, None]
    assert all(score < 1.0 for score in annotations[0].box_scores)
    assert not inputs["object_mask"].any()
    assert not inputs["pixel_values"][0, 1:].any()
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_long_caption_is_truncated_to_77_tokens(loaded):
    _, processor = loaded
    caption = " ".join(["a man riding a red bike down a busy street"] * 20)
    assert len(processor.tokenizer(caption)["input_ids"]) > 77
    inputs, annotations, output = run(loaded, [noise()], captions=[caption], nouns=[["man"]], boxes=[[[0, 0, 10, 10]]])
    assert inputs["input_ids"].shape == (1, 4, 77)
    assert inputs["attention_mask"][0, 0].all()  # the whole window is caption
    assert int(inputs["input_ids"][0, 0, -1]) == processor.tokenizer.eos_token_id  # still ends with its end token
    assert int(inputs["input_ids"][0, 0, 0]) == processor.tokenizer.bos_token_id
    assert torch.isfinite(output.logits).all()


def test_zero_area_and_outside_boxes_leave_their_slot_empty(loaded):
    inputs, annotations, output = run(
        loaded,
        [noise((40, 30))],
        captions=["a man, a dog and a cat"],
        nouns=[["man", "dog", "cat"]],
        boxes=[[[5, 5, 5, 9], [50, 50, 60, 60], [1, 1, 8, 8]]],
    )
    assert inputs["object_mask"].tolist() == [[False, False, True]]
    assert not inputs["pixel_values"][0, 1:3].any() and not inputs["input_ids"][0, 1:3].any()
    assert output.similarities[0, 1:3].tolist() == [0.0, 0.0]
    assert output.similarities[0, 3] != 0


# ---------------------------------------------------------------------------------------------- wrong arguments
def test_mismatched_lengths_raise(loaded):
    _, processor = loaded
    with pytest.raises(ValueError, match="2 images but 3 captions"):
        processor(images=[noise(), noise()], captions=["a", "b", "c"])
    with pytest.raises(ValueError, match="nouns"):
        processor(images=[noise(), noise()], captions=["a", "b"], nouns=[["a"]])
    with pytest.raises(ValueError, match=r"boxes\[0\]"):
        processor(images=[noise()], captions=["a"], nouns=[["a", "b"]], boxes=[[[0, 0, 4, 4]]])
    with pytest.raises(ValueError, match=r"boxes\[0\]"):
        processor(images=[noise()], captions=["a"], boxes=[[[0, 0, 4, 4]]])  # boxes without their nouns


def test_wrong_types_raise(loaded):
    _, processor = loaded
    with pytest.raises(TypeError, match="captions"):
        processor(images=[noise(), noise()], captions="a cat")
    with pytest.raises(TypeError, match=r"captions\[1\].*int"):
        processor(images=[noise(), noise()], captions=["a cat", 5])
    with pytest.raises(TypeError, match=r"nouns\[0\].*str"):
        processor(images=[noise(), noise()], captions=["a", "b"], nouns=["cat", ["dog"]])
    with pytest.raises(TypeError, match="int"):
        processor(images=[noise(), 7])
    with pytest.raises(ValueError, match="images"):
        processor(images=None)


def test_bad_config_values_raise_before_anything_is_written(tiny_parts, tmp_path):
    from item_cli.checkpoint import build_checkpoint

    for options, word in (({"distance_type": "foo"}, "foo"), ({"fusion": "bar"}, "bar"), ({"decision_threshold": 2}, "2")):
        with pytest.raises(ValueError, match=word):
            ItemConfig(**options)
        with pytest.raises(ValueError, match=word):
            build_checkpoint(
                tmp_path / "out",
                backbone=tiny_parts["backbones"]["clip"],
                captioner=tiny_parts["captioner"],
                detector=tiny_parts["detectors"]["owlv2"],
                config_options=options,
            )
        assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="box_threshold"):
        build_checkpoint(
            tmp_path / "out",
            backbone=tiny_parts["backbones"]["clip"],
            captioner=tiny_parts["captioner"],
            detector=tiny_parts["detectors"]["owlv2"],
            processor_options={"box_threshold": 3},
        )


def test_cached_embeddings_of_the_wrong_size(loaded):
    model, _ = loaded
    mask = torch.zeros(1, 3, dtype=torch.bool)
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"24.*\(1, 4, 5\)"):
            model(image_embeds=torch.zeros(1, 4, 5), text_embeds=torch.zeros(1, 4, 5), object_mask=mask)
        with pytest.raises(ValueError, match="object_mask"):
            model(image_embeds=torch.zeros(1, 4, 24), text_embeds=torch.zeros(1, 4, 24), object_mask=torch.zeros(1, 2, dtype=torch.bool))
        logits = model(image_embeds=torch.zeros(1, 4, 24), text_embeds=torch.zeros(1, 4, 24), object_mask=mask).logits
    assert math.isfinite(float(logits.sum()))


def test_a_processor_config_cannot_point_outside_its_checkpoint(checkpoint, tmp_path):
    """A bundled component is one sub-folder of the checkpoint: "./../x" or an absolute path in a saved config
    would load networks from elsewhere and make save_pretrained write outside the target folder."""
    import shutil

    copy = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, copy)
    config_path = copy / "processor_config.json"
    original = json.loads(config_path.read_text())
    for bad in ("./../x", "./captioner/../../x", "./", "./.hidden"):
        config_path.write_text(json.dumps({**original, "captioner_name_or_path": bad}))
        with pytest.raises(ValueError, match="outside the checkpoint"):
            ItemProcessor.from_pretrained(copy)
    config_path.write_text(json.dumps(original))
    assert ItemProcessor.from_pretrained(copy).captioner_name_or_path == "./captioner"
