"""handler.py as Inference Endpoints runs it: imported by file path from inside a checkpoint folder, built
once with that folder, called with request bodies (base64, data URL, bytes, PIL image, batches)."""

import base64
import importlib.util
import io
import math
import shutil
from pathlib import Path

import pytest
from PIL import Image

HANDLER_FILE = Path(__file__).resolve().parent.parent / "handler.py"


@pytest.fixture(scope="module")
def handler(checkpoint, tmp_path_factory):
    """`EndpointHandler` built as the toolkit does: handler.py beside the weights, imported from there."""
    deployed = tmp_path_factory.mktemp("endpoint") / "repository"
    shutil.copytree(checkpoint, deployed)
    shutil.copyfile(HANDLER_FILE, deployed / "handler.py")
    spec = importlib.util.spec_from_file_location("handler", deployed / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EndpointHandler(str(deployed))


@pytest.fixture(scope="module")
def photo_bytes(sample_photos):
    return [path.read_bytes() for path in sample_photos[:3]]


def fake_score(labels):
    return next(item["score"] for item in labels if item["label"] == "fake")


def test_one_image_in_every_encoding_gives_the_same_scores(handler, photo_bytes):
    raw = photo_bytes[0]
    encoded = base64.b64encode(raw).decode()
    from_base64 = handler({"inputs": encoded})
    assert sorted(item["label"] for item in from_base64) == ["fake", "real"]
    assert math.isclose(sum(item["score"] for item in from_base64), 1.0, rel_tol=1e-5)
    assert from_base64[0]["score"] >= from_base64[1]["score"], "labels come best first"
    same = [
        handler({"inputs": raw}),
        handler({"inputs": "data:image/jpeg;base64," + encoded}),
        handler({"inputs": Image.open(io.BytesIO(raw))}),  # what the toolkit makes of an image/jpeg body
        handler({"inputs": "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))}),  # MIME lines
    ]
    for labels in same:
        assert fake_score(labels) == pytest.approx(fake_score(from_base64), abs=1e-5)


def test_batch_keeps_order_and_matches_single_calls(handler, photo_bytes):
    inputs = [base64.b64encode(photo_bytes[0]).decode(), photo_bytes[1], Image.open(io.BytesIO(photo_bytes[2]))]
    results = handler({"inputs": inputs, "parameters": {"batch_size": 2, "top_k": 1}})
    assert len(results) == 3 and all(len(labels) == 1 for labels in results)
    full = handler({"inputs": photo_bytes[1]})
    assert results[1][0] == max(full, key=lambda item: item["score"])


def test_explain_with_a_threshold_decides_is_fake(handler, photo_bytes):
    default = handler({"inputs": photo_bytes[0], "parameters": {"explain": True}})
    assert {"fake_probability", "is_fake", "threshold", "caption", "objects"} <= set(default)
    probability = default["fake_probability"]
    at_probability = handler({"inputs": photo_bytes[0], "parameters": {"explain": True, "threshold": probability}})
    assert at_probability["threshold"] == probability and at_probability["is_fake"] is True
    just_above = min(1.0, math.nextafter(probability, 1.0))
    above = handler({"inputs": photo_bytes[0], "parameters": {"explain": True, "threshold": just_above}})
    assert above["is_fake"] is False and above["fake_probability"] == pytest.approx(probability)
    everything = handler({"inputs": photo_bytes[:2], "parameters": {"explain": True, "threshold": 0}})
    assert [result["is_fake"] for result in everything] == [True, True]


BROKEN = {
    "no inputs": ({"image": "abc"}, r"'inputs'"),
    "not a dict": ("just a string", r"'inputs'"),
    "empty batch": ({"inputs": []}, r"empty list"),
    "bad base64": ({"inputs": "%%%not base64%%%"}, r"inputs is not valid base64"),
    "base64 of text": ({"inputs": base64.b64encode(b"hello, not an image").decode()}, r"inputs .*not an image file"),
    "url": ({"inputs": "https://example.com/cat.jpg"}, r"URL"),
    "bad data url": ({"inputs": "data:text/plain,hello"}, r"data URL"),
    "empty bytes": ({"inputs": b""}, r"empty"),
    "number": ({"inputs": 42}, r"inputs is a int"),
    "unknown parameter": ({"inputs": b"x", "parameters": {"treshold": 0.5}}, r"'treshold'.*explain, threshold, top_k"),
    "threshold above 1": ({"inputs": b"x", "parameters": {"explain": True, "threshold": 1.5}}, r"threshold.*between 0 and 1"),
    "threshold as text": ({"inputs": b"x", "parameters": {"explain": True, "threshold": "0.5"}}, r"threshold"),
    "threshold nan": ({"inputs": b"x", "parameters": {"explain": True, "threshold": float("nan")}}, r"threshold"),
    "threshold without explain": ({"inputs": b"x", "parameters": {"threshold": 0.5}}, r"explain"),
    "explain not bool": ({"inputs": b"x", "parameters": {"explain": "yes"}}, r"explain.*true or false"),
    "top_k zero": ({"inputs": b"x", "parameters": {"top_k": 0}}, r"top_k"),
    "parameters not a dict": ({"inputs": b"x", "parameters": [1]}, r"parameters"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_bad_payload_is_a_value_error_naming_the_problem(handler, name):
    payload, message = BROKEN[name]
    with pytest.raises(ValueError, match=message):
        handler(payload)


def test_undecodable_batch_item_is_named_and_the_handler_keeps_working(handler, photo_bytes):
    truncated = photo_bytes[1][: len(photo_bytes[1]) // 2]
    with pytest.raises(ValueError, match=r"inputs\[1\] .*not an image file PIL can read"):
        handler({"inputs": [photo_bytes[0], truncated, photo_bytes[2]]})
    with pytest.raises(ValueError, match=r"inputs\[2\] is not valid base64"):
        handler({"inputs": [photo_bytes[0], photo_bytes[1], "@@@@"]})
    assert len(handler({"inputs": [photo_bytes[0]]})) == 1
