"""Hugging Face Inference Endpoints handler for an ITEM checkpoint (this file lies in the checkpoint folder).

The endpoint toolkit imports this file, builds `EndpointHandler(path=<checkpoint folder>)` once, and calls it
with each request's body:

    {"inputs": <image>, "parameters": {"explain": true, "threshold": 0.3, "top_k": 2, "batch_size": 8}}

`<image>` is a base64 string (plain, or a `data:image/...;base64,` URL), raw bytes, a PIL image (the toolkit
turns a binary `image/*` body into one), or a list of these for a batch. Every parameter is optional:

- `explain` (bool): per image, the explanation dict of `pipe(image, explain=True)` instead of the labels; its
  `verdict` is "unsure" when the fake probability lies in the checkpoint's `unsure_band`, else "real" / "fake";
- `threshold` (float in [0, 1], needs `explain`): `is_fake = fake_probability >= threshold`, replacing the
  checkpoint's calibrated `decision_threshold` in each result;
- `top_k` (int >= 1): how many labels to return; `batch_size` (int >= 1): images per forward pass;
- `provenance_policy` ("report" or "signed-ai-decides", needs `explain`): see below.

With `explain`, each result also carries `provenance`: the Content Credentials (C2PA), generator metadata and
known invisible watermarks of the file, read from the request's bytes (a PIL image body has lost them: the record
says so). It is reported beside the verdict; "signed-ai-decides" lets a trusted, valid C2PA claim of AI generation
set `is_fake`. C2PA and watermark checks need `c2pa-python` and `invisible-watermark` in requirements.txt; trust
anchors come from the environment variable ITEM_C2PA_TRUST_ANCHORS (a PEM file), never from the network.

It returns the pipeline's output: for one image a list of `{"label", "score"}` (or the explanation dict), for
a batch one such entry per image, in order. Any bad payload raises `ValueError` with what is wrong and how to
fix it; the toolkit answers those with HTTP 400.
"""

import base64
import binascii
import io
import math
import re

from PIL import Image

from transformers import pipeline
from transformers.utils import is_torch_cuda_available

PARAMETERS = ("explain", "threshold", "top_k", "batch_size", "provenance_policy")
PROVENANCE_POLICIES = ("report", "signed-ai-decides")
DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,", re.IGNORECASE)
PAYLOAD_EXAMPLE = '{"inputs": "<base64 of the image file>", "parameters": {"explain": true}}'


def _decode_base64(text: str, where: str) -> bytes:
    """The bytes of a base64 image string (standard or URL-safe alphabet, padding optional)."""
    text = text.strip()
    if text.lower().startswith(("http://", "https://", "file:")):
        raise ValueError(f"{where} is a URL ({text[:60]!r}); this endpoint does not download images. "
                         "Send the image file's bytes, base64-encoded.")
    if text.lower().startswith("data:"):
        match = DATA_URL.match(text)
        if match is None:
            raise ValueError(f"{where} is a data URL that is not a base64 image ({text[:40]!r}...); "
                             "use the form 'data:image/png;base64,<base64>'.")
        text = text[match.end():]
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")  # MIME line breaks, URL-safe alphabet
    compact += "=" * (-len(compact) % 4)
    try:
        decoded = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"{where} is not valid base64 ({error}); send the image file's bytes base64-encoded, "
                         f"e.g. base64.b64encode(open(path, 'rb').read()).decode().") from None
    if not decoded:
        raise ValueError(f"{where} is an empty string; send the image file's bytes base64-encoded.")
    return decoded


def _open_image(data: bytes, where: str) -> Image.Image:
    """A fully decoded PIL image from the bytes of an image file."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decode now: a truncated or corrupt file fails here, naming its batch item
    except Image.DecompressionBombError as error:
        raise ValueError(f"{where} is too large to decode safely ({error}); send a smaller image.") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{where} ({len(data)} bytes, starting {data[:8]!r}) is not an image file PIL can read "
                         f"({error}); send a JPEG, PNG, WebP, GIF, BMP or TIFF file.") from None
    return image


def decode_image(item, where: str = "inputs") -> Image.Image:
    """One request image (bytes, base64 string or PIL image) as a PIL image; ValueError names `where`."""
    if isinstance(item, Image.Image):
        try:
            item.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"{where} is a PIL image that cannot be decoded ({error}); send the file again.") from None
        return item
    if isinstance(item, (bytes, bytearray, memoryview)):
        if not bytes(item):
            raise ValueError(f"{where} is empty (0 bytes); send the bytes of an image file.")
        return _open_image(bytes(item), where)
    if isinstance(item, str):
        return _open_image(_decode_base64(item, where), where)
    raise ValueError(f"{where} is a {type(item).__name__}; send a base64 string, raw image bytes or a list of them, "
                     f"as in {PAYLOAD_EXAMPLE}.")


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"parameters[{name!r}] = {value!r}; it must be a whole number >= 1.")
    return value


def check_parameters(parameters) -> dict:
    """The request's parameters, checked; ValueError names any unknown or out-of-range one."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ValueError(f"'parameters' must be an object such as {{\"explain\": true}}, got {type(parameters).__name__}.")
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"Unknown parameter(s) {', '.join(map(repr, unknown))}; the parameters are {', '.join(PARAMETERS)}.")
    checked = {key: value for key, value in parameters.items() if value is not None}
    if "explain" in checked and not isinstance(checked["explain"], bool):
        raise ValueError(f"parameters['explain'] = {checked['explain']!r}; it must be true or false.")
    if "threshold" in checked:
        threshold = checked["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
                or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"parameters['threshold'] = {threshold!r}; it must be a number between 0 and 1.")
        if not checked.get("explain", False):
            raise ValueError("parameters['threshold'] decides 'is_fake', which only explain=true returns; "
                             "add \"explain\": true, or leave the threshold out and read the fake score.")
        checked["threshold"] = float(threshold)
    for name in ("top_k", "batch_size"):
        if name in checked:
            _check_count(name, checked[name])
    if "provenance_policy" in checked:
        if checked["provenance_policy"] not in PROVENANCE_POLICIES:
            raise ValueError(f"parameters['provenance_policy'] = {checked['provenance_policy']!r}; it must be one of "
                             f"{', '.join(PROVENANCE_POLICIES)}.")
        if not checked.get("explain", False):
            raise ValueError("parameters['provenance_policy'] needs \"explain\": true (provenance is part of the explanation).")
    return checked


def file_bytes(item) -> bytes | None:
    """The file bytes a request item carries (its provenance lives there), or None for a PIL image."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        return _decode_base64(item, "inputs")
    return None


class EndpointHandler:
    """Loads the ITEM pipeline from `path` once; each call scores one image or a batch (see the module doc)."""

    def __init__(self, path: str = ""):
        device = "cuda" if is_torch_cuda_available() else "cpu"
        self.pipeline = pipeline("image-classification", model=path or ".", trust_remote_code=True, device=device)

    def __call__(self, data: dict) -> list | dict:
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError(f"The request body needs an 'inputs' field, e.g. {PAYLOAD_EXAMPLE}.")
        parameters = check_parameters(data.get("parameters"))
        inputs = data["inputs"]
        if isinstance(inputs, list):
            if not inputs:
                raise ValueError("'inputs' is an empty list; send at least one image.")
            images = [decode_image(item, f"inputs[{index}]") for index, item in enumerate(inputs)]
        else:
            images = decode_image(inputs, "inputs")
        if parameters.get("explain"):  # the file's bytes (checked above) go in: its provenance is read from them
            if isinstance(inputs, list):
                images = [file_bytes(item) or image for item, image in zip(inputs, images)]
            else:
                images = file_bytes(inputs) or images
        threshold = parameters.pop("threshold", None)
        results = self.pipeline(images, **parameters)
        if threshold is not None:
            for result in results if isinstance(images, list) else [results]:
                result["threshold"] = threshold
                result["is_fake"] = result["fake_probability"] >= threshold
                if result.get("verdict") != "unsure":  # the unsure band does not move with the threshold
                    result["verdict"] = "fake" if result["is_fake"] else "real"
        return results
