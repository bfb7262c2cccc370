"""Where provenance hides in an image file: C2PA manifest stores in containers, and generator metadata.

`find_manifest_store(data)` walks the container (JPEG markers, PNG chunks, WebP RIFF chunks; a JUMBF `c2pa` label
elsewhere) without any C2PA library, so that a store is seen even where the library is not installed, and the
library only parses files that hold one. `read_file_metadata(data)` reads the header with Pillow (no pixel is
decoded): XMP / IPTC digital source type, EXIF and PNG text fields, the generation parameters of Stable Diffusion
front ends. `header_signals(image, stream)` says which of them a file carries, for the shortcut audit.
Every read is bounded: at most `MAX_SEGMENTS` segments or chunks are walked and text is cut at `MAX_TEXT_CHARS`.
"""

import io
import json
import re
import struct

from PIL import Image

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI_SOURCE_TYPES = {IPTC + "trainedAlgorithmicMedia", IPTC + "compositeWithTrainedAlgorithmicMedia"}
CAPTURE_SOURCE_TYPES = {IPTC + name for name in ("digitalCapture", "negativeFilm", "positiveFilm", "print",
                                                 "minorHumanEdits", "computationalCapture")}
MAX_SEGMENTS = 10_000
MAX_TEXT_CHARS = 4_000  # prompts and settings kept in a record; longer text is cut
MAX_XMP_BYTES = 1 << 20
EXIF_MAKE, EXIF_MODEL, EXIF_SOFTWARE, EXIF_IFD, EXIF_USER_COMMENT = 0x010F, 0x0110, 0x0131, 0x8769, 0x9286
XMP_SOURCE_TYPE = re.compile(r"DigitalSourceType(?:\s*=\s*[\"']|>|\s+rdf:resource\s*=\s*[\"'])\s*([^\"'<\s]+)")
XMP_CREATOR_TOOL = re.compile(r"CreatorTool(?:\s*=\s*[\"']|>)\s*([^\"'<]+)")
A1111_SETTING = re.compile(r'\s*([\w][\w /.\-]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
GENERATION_KEYS = ("parameters", "prompt", "workflow", "Comment")


def short_source_type(source_type: str | None) -> str:
    """`trainedAlgorithmicMedia` for the IPTC URI."""
    return (source_type or "unknown").rsplit("/", 1)[-1]


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    text = str(text).strip()
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "..."


# ---------------------------------------------------------------------------------------------- C2PA stores
def find_manifest_store(data: bytes) -> tuple[str, int] | None:
    """(container, bytes of the store) when the file embeds a C2PA manifest store, else None."""
    stream = io.BytesIO(data)
    head = data[:12]
    if head[:2] == b"\xff\xd8":
        size = _jpeg_store(stream)
        return ("JPEG", size) if size else None
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        size = _png_store(stream)
        return ("PNG", size) if size else None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        size = _webp_store(stream)
        return ("WEBP", size) if size else None
    at = data.find(b"jumd")
    while at != -1:  # any other container (TIFF, HEIF, AVIF): a JUMBF description box labelled "c2pa"
        if b"c2pa" in data[at: at + 40]:
            container = "TIFF" if head[:4] in (b"II*\0", b"MM\0*") else "HEIF" if head[4:8] == b"ftyp" else None
            return container, len(data) - at
        at = data.find(b"jumd", at + 4)
    return None


def _jpeg_store(stream) -> int:
    """Total bytes of the APP11 JUMBF segments of a C2PA store (0: none), walking markers up to the scan data."""
    stream.seek(2)
    size, found = 0, False
    for _ in range(MAX_SEGMENTS):
        marker = stream.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            break
        if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7 or marker[1] == 0xFF:
            if marker[1] == 0xFF:
                stream.seek(-1, 1)  # a fill byte
            continue
        if marker[1] in (0xDA, 0xD9):
            break
        length_bytes = stream.read(2)
        if len(length_bytes) < 2:
            break
        length = struct.unpack(">H", length_bytes)[0]
        if length < 2:  # a segment length below its own two bytes: the header is damaged, stop here
            break
        if marker[1] == 0xEB:
            start = stream.read(min(length - 2, 64))
            if start[:2] == b"JP":
                size += length
                found = found or (b"jumb" in start and b"c2pa" in start)
            stream.seek(length - 2 - len(start), 1)
        else:
            stream.seek(length - 2, 1)
    return size if found else 0


def _png_store(stream) -> int:
    stream.seek(8)
    size = 0
    for _ in range(MAX_SEGMENTS):
        header = stream.read(8)
        if len(header) < 8:
            break
        length, kind = struct.unpack(">I4s", header)
        if kind == b"caBX":
            size += length
        if kind == b"IEND":
            break
        stream.seek(length + 4, 1)
    return size


def _webp_store(stream) -> int:
    stream.seek(12)
    size = 0
    for _ in range(MAX_SEGMENTS):
        header = stream.read(8)
        if len(header) < 8:
            break
        kind, length = struct.unpack("<4sI", header)
        if kind == b"C2PA":
            size += length
        stream.seek(length + (length & 1), 1)
    return size


# ---------------------------------------------------------------------------------------------- metadata
def read_file_metadata(data: bytes, record_class):
    """A `record_class` (provenance_item.MetadataRecord) filled from the file's header; its `note` says why
    when the header cannot be read."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            info = dict(image.info)
            exif = _exif(info.get("exif"))
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, MemoryError, Image.DecompressionBombError) as error:
        return record_class(note=f"unreadable: {type(error).__name__}: {str(error)[:200]}")
    record = record_class(checked=True)
    xmp = _xmp_text(info)
    match = XMP_SOURCE_TYPE.search(xmp)
    record.digital_source_type = match.group(1) if match else None
    tool = XMP_CREATOR_TOOL.search(xmp)
    record.software = _cut(_text(info.get("Software")) or exif.get(EXIF_SOFTWARE) or (tool.group(1) if tool else None))
    record.camera_make, record.camera_model = _cut(exif.get(EXIF_MAKE)), _cut(exif.get(EXIF_MODEL))
    _generation(record, info, exif.get(EXIF_USER_COMMENT))
    if record.front_end or record.digital_source_type in AI_SOURCE_TYPES:
        record.ai_generated = True
    elif record.digital_source_type in CAPTURE_SOURCE_TYPES:
        record.ai_generated = False
    return record


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) and value.strip() else None


def _xmp_text(info: dict) -> str:
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or ""
    if isinstance(xmp, bytes):
        xmp = xmp[:MAX_XMP_BYTES].decode("utf-8", "replace")
    return str(xmp)[:MAX_XMP_BYTES]


def _exif(exif_bytes) -> dict:
    """Make, model, software and the Exif IFD's UserComment (decoded) from raw EXIF bytes."""
    if not isinstance(exif_bytes, bytes) or not exif_bytes:
        return {}
    exif = Image.Exif()
    try:
        exif.load(exif_bytes)
        fields = {tag: _text(exif.get(tag)) for tag in (EXIF_MAKE, EXIF_MODEL, EXIF_SOFTWARE)}
        fields[EXIF_USER_COMMENT] = _user_comment(exif.get_ifd(EXIF_IFD).get(EXIF_USER_COMMENT))
    except (OSError, ValueError, SyntaxError, struct.error, EOFError, KeyError, IndexError, TypeError):
        return {}
    return fields


def _user_comment(value) -> str | None:
    """EXIF UserComment: an 8-byte character code, then the text (A1111 writes "UNICODE" + UTF-16)."""
    if isinstance(value, str):
        return _text(value)
    if not isinstance(value, bytes) or len(value) <= 8:
        return None
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        return _text(body.decode("utf-16-be" if body[:1] == b"\0" else "utf-16-le", "replace"))
    return _text(body.decode("utf-8", "replace"))


def _generation(record, info: dict, user_comment: str | None) -> None:
    """Front end, prompt, model and settings from the text fields Stable Diffusion front ends write."""
    parameters = _text(info.get("parameters")) or (user_comment if user_comment and "Steps:" in user_comment else None)
    software = _text(info.get("Software")) or ""
    if parameters:
        _a1111(record, parameters)
    elif _text(info.get("prompt")) or _text(info.get("workflow")):
        _comfyui(record, _text(info.get("prompt")))
    elif "novelai" in software.lower() and _text(info.get("Comment")):
        _novelai(record, info)


def _a1111(record, parameters: str) -> None:
    lines = parameters.strip().split("\n")
    settings_line = lines[-1] if len(lines) > 1 and lines[-1].lstrip().startswith("Steps:") else ""
    body = "\n".join(lines[:-1]) if settings_line else parameters
    prompt, _, negative = body.partition("\nNegative prompt:")
    # Cut before the regular expression: on a hostile megabyte of word characters it would take quadratic time.
    settings_line = settings_line[:MAX_TEXT_CHARS]
    settings = {key.strip(): value.strip().strip('"') for key, value in A1111_SETTING.findall(settings_line)}
    version = settings.get("Version", "")
    record.front_end = "Forge" if version.startswith("f") else "AUTOMATIC1111"
    record.prompt, record.negative_prompt = _cut(prompt), _cut(negative) if negative else None
    record.model = _cut(settings.get("Model") or settings.get("Model hash"))
    record.settings = {key: _cut(value) for key, value in list(settings.items())[:40]}


def _comfyui(record, prompt_json: str | None) -> None:
    """ComfyUI writes its node graph: the prompt is the text node feeding a sampler's `positive` input."""
    record.front_end = "ComfyUI"
    try:
        graph = json.loads(prompt_json or "{}")
    except (ValueError, RecursionError):  # a hostile file can nest JSON deeper than the parser goes
        return
    if not isinstance(graph, dict):
        return
    nodes = {key: node for key, node in graph.items() if isinstance(node, dict)}
    texts = {key: node["inputs"].get("text") for key, node in nodes.items()
             if "TextEncode" in str(node.get("class_type")) and isinstance(node.get("inputs"), dict)}
    for node in nodes.values():
        inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
        if "ckpt_name" in inputs and record.model is None:
            record.model = _cut(str(inputs["ckpt_name"]))
        for name, target in (("positive", "prompt"), ("negative", "negative_prompt")):
            link = inputs.get(name)
            if isinstance(link, list) and link and isinstance(texts.get(str(link[0])), str):
                setattr(record, target, _cut(texts[str(link[0])]))
    if record.prompt is None:
        record.prompt = _cut(next((text for text in texts.values() if isinstance(text, str)), None))


def _novelai(record, info: dict) -> None:
    record.front_end = "NovelAI"
    try:
        comment = json.loads(_text(info.get("Comment")))
    except (ValueError, RecursionError):
        comment = {}
    comment = comment if isinstance(comment, dict) else {}
    record.prompt = _cut(comment.get("prompt") or _text(info.get("Description")))
    record.negative_prompt = _cut(comment.get("uc"))
    record.model = _cut(_text(info.get("Source")))
    record.settings = {key: _cut(str(comment[key])) for key in ("steps", "sampler", "seed", "scale") if key in comment}


# ---------------------------------------------------------------------------------------------- audit
def header_signals(image: Image.Image, stream) -> list[str]:
    """Which provenance signals an opened image's header carries (for the shortcut audit): "C2PA manifest",
    "digital source type", "generation parameters". `stream`: the file, seekable (only JPEG / PNG / WebP
    container headers are walked for a store)."""
    signals = []
    stream.seek(0)
    head = stream.read(12)
    walk = {b"\xff\xd8": _jpeg_store, b"\x89P": _png_store}.get(head[:2])
    if walk is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        walk = _webp_store
    if walk is not None and walk(stream):
        signals.append("C2PA manifest")
    if XMP_SOURCE_TYPE.search(_xmp_text(image.info)):
        signals.append("digital source type")
    comment = _exif(image.info.get("exif")).get(EXIF_USER_COMMENT) or ""
    novelai = "novelai" in str(image.info.get("Software", "")).lower()
    if any(_text(image.info.get(key)) for key in GENERATION_KEYS[:3]) or "Steps:" in comment or novelai:
        signals.append("generation parameters")
    return signals
