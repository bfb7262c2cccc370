"""Issue 17, point 7: one limit for the decoded size of an image, one message (size, limit, how to raise it from
Python and from the command line) whatever the size, and `--max-image-pixels N` on every command that decodes."""

import io
import json
import re

import pytest
from PIL import Image

from item_cli.cli import main
from item_cli.data.decode import ImageReader
from item_cli.testing.hostile import png_header
from item_detector.images_item import MAX_IMAGE_PIXELS, load_image

HUGE, LARGE = (100_000, 100_000), (10_000, 10_000)  # over twice PIL's own limit, and just over ITEM's


def refusal(data: bytes, **limit) -> str:
    with pytest.raises(ValueError) as raised:
        load_image(data, **limit)
    return str(raised.value)


def without_numbers(message: str) -> str:
    return re.sub(r"[\d,]+", "N", message)


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_any_oversized_header_gets_the_one_message_naming_size_limit_and_the_fix():
    huge, large = refusal(png_header(*HUGE)), refusal(png_header(*LARGE))
    assert without_numbers(huge) == without_numbers(large)
    assert "100000 x 100000 = 10,000,000,000 pixels" in huge and "10000 x 10000 = 100,000,000 pixels" in large
    for message in (huge, large):
        assert f"over the limit of {MAX_IMAGE_PIXELS:,}" in message and "DecompressionBomb" not in message
        assert "--max-image-pixels N" in message and "max_pixels=N" in message


def test_the_keyword_moves_the_limit_both_ways():
    # Raised past the header's size, the file is decoded (and found to hold no pixel data): the limit let it through.
    raised = refusal(png_header(*LARGE), max_pixels=LARGE[0] * LARGE[1])
    assert "over the limit" not in raised and "truncated" in raised
    assert load_image(small_png()).size == (64, 48)
    assert "64 x 48 = 3,072 pixels, over the limit of 1,000" in refusal(small_png(), max_pixels=1000)
    with pytest.raises(ValueError, match="max_pixels=0"):
        load_image(small_png(), max_pixels=0)


def test_the_decoding_workers_give_the_same_message_and_take_the_limit(tmp_path):
    paths = []
    for name, data in (("huge.png", png_header(*HUGE)), ("large.png", png_header(*LARGE)), ("small.png", small_png())):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    with ImageReader(workers=1) as reader:
        huge, large, small = reader.read(paths)
    assert huge.error.startswith("the file is 100000 x 100000") and without_numbers(huge.error) == without_numbers(large.error)
    assert small.image.size == (64, 48)
    with ImageReader(workers=1, max_pixels=1000) as reader:
        (small,) = reader.read(paths[2:])
    assert small.image is None and "over the limit of 1,000" in small.error
    with pytest.raises(ValueError, match="max_pixels=-1"):
        ImageReader(max_pixels=-1)


@pytest.mark.parametrize("command", ["detect", "cache", "calibrate", "evaluate", "ablate"])
def test_every_decoding_command_takes_max_image_pixels(command):
    from importlib import import_module

    parser = import_module(f"item_cli.commands.{command}").build_parser(f"item {command}")
    assert f"(default: {MAX_IMAGE_PIXELS})" in " ".join(parser.format_help().split())
    given = ["--model", "M", "--data", "D", "--max-image-pixels", "1000"]
    assert parser.parse_known_args(given)[0].max_image_pixels == 1000


def test_item_detect_skips_with_the_message_and_the_option_reaches_the_workers(checkpoint, tmp_path, capsys):
    (tmp_path / "huge.png").write_bytes(png_header(*HUGE))
    (tmp_path / "large.png").write_bytes(png_header(*LARGE))
    (tmp_path / "small.png").write_bytes(small_png())
    main(["detect", str(tmp_path), "--model", str(checkpoint), "--device", "cpu", "--json", "--max-image-pixels", "1000"])
    errors = {record["path"].rsplit("/", 1)[1]: record["error"] for record in map(json.loads, capsys.readouterr().out.splitlines())}
    assert len({without_numbers(error) for error in errors.values()}) == 1, errors  # one message for every size
    assert "64 x 48 = 3,072 pixels, over the limit of 1,000" in errors["small.png"]
    assert "--max-image-pixels N" in errors["huge.png"] and "100000 x 100000" in errors["huge.png"]


def test_item_cache_passes_the_limit_to_its_workers(checkpoint, labelled_data, tmp_path, capsys):
    code = main(["cache", "--model", str(checkpoint), "--data", str(labelled_data), "--cache-dir", str(tmp_path),
                 "--max-image-pixels", "100"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "0 images cached" in captured.out and "over the limit of 100 " in captured.err
