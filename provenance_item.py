"""Provenance beside the pixels: Content Credentials (C2PA), generator metadata and known invisible watermarks.

`read_provenance(source)` reads what a file says about its own origin and returns a `Provenance` record
(`to_dict()` is JSON-ready) with three parts:

- `c2pa`: a signed C2PA manifest store (JPEG APP11, PNG caBX, WebP C2PA chunk, JUMBF elsewhere): whether one is
  present, its validation state (`valid`: signature and hashes hold and the signer is in the trust list;
  `untrusted_signer`: they hold but the signer is not in the trust list; `invalid`: the signature, or the hash
  binding it to the file's content, fails; `unreadable`: the store is damaged; the reason says which), the claim
  generator, the signer, the actions and their IPTC digital source type, and `ai_generated` (True / False /
  None = unknown) as the manifest claims it;
- `metadata` (Pillow only, always available): the XMP / IPTC digital source type, software fields, generation
  parameters written by Stable Diffusion front ends (AUTOMATIC1111 / Forge `parameters`, ComfyUI `prompt` /
  `workflow`, NovelAI `Software` / `Comment`, A1111 JPEG EXIF `UserComment`) with the prompt and model when
  written, and the camera make and model;
- `watermark`: the invisible-watermark (DWT-DCT) payloads of the SDXL pipelines (48 bits) and of the SD 1.x
  reference script ("StableDiffusionV1"), as bits matched out of the payload's bits, bucketed with the
  thresholds of Stability's own checker (<= 27 of 48 none, 28-33 partial, 34-35 likely, >= 36 very likely).

What these signals do not mean: their absence proves nothing (most pipelines and sites strip them); metadata
can be forged or stripped; a valid signature says who signed, not that the content is true; anyone can embed
the public watermark payloads. They are reported beside ITEM's verdict, never in its place.

Files are untrusted input: sizes are capped (`MAX_FILE_BYTES`, `MAX_MANIFEST_BYTES`, `MAX_TEXT_CHARS`), nothing
touches the network (no remote manifests, no OCSP, no trust list download; a trust list can be given as a PEM
file, or with the environment variable `ITEM_C2PA_TRUST_ANCHORS`), and a damaged manifest gives `unreadable`
with the reason, never an exception. The C2PA and watermark checks need the optional extra
(`pip install "item-detector[provenance]"`); without it the record says they were not checked and how to get them.
"""

import io
import os
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from .provenance_formats_item import (
    AI_SOURCE_TYPES,
    CAPTURE_SOURCE_TYPES,
    find_manifest_store,
    read_file_metadata,
    short_source_type,
)

INSTALL_HINT = 'pip install "item-detector[provenance]"'
TRUST_ANCHORS_ENV = "ITEM_C2PA_TRUST_ANCHORS"
MAX_FILE_BYTES = 256 << 20  # larger files are not read for provenance (the reason says so)
MAX_MANIFEST_BYTES = 16 << 20  # a manifest store larger than this is not parsed
MIN_WATERMARK_PIXELS = 256 * 256  # invisible-watermark refuses smaller images
# Generators write their mark at their output size, at most 2048 px a side; a larger image was resized or is no
# generator's output, so no mark reads from it, and the decode would cost seconds (0.15 s at 1024 x 1024 here).
MAX_WATERMARK_PIXELS = 2048 * 2048
POLICIES = ("report", "signed-ai-decides")
# The watermark payloads of the Stable Diffusion code bases (see the module docstring).
SDXL_WATERMARK = [int(bit) for bit in bin(0b101100111110110010010000011110111011000110011110)[2:]]
SD1_WATERMARK = [int(bit) for byte in b"StableDiffusionV1" for bit in f"{byte:08b}"]
WATERMARKS = {"SDXL (diffusers / Stability generative-models)": SDXL_WATERMARK,
              "Stable Diffusion 1.x (reference txt2img.py)": SD1_WATERMARK}
# Stability's checker (scripts/demo/detect.py of generative-models): upper bounds of each bucket, in bits of 48.
# For the 136-bit SD 1.x payload the same fractions are used.
WATERMARK_LEVELS = ((27, "none"), (33, "partial"), (35, "likely"), (48, "very likely"))
MIMES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff", "AVIF": "image/avif",
         "HEIF": "image/heif", "GIF": "image/gif"}


@dataclass
class C2paRecord:
    """The C2PA manifest store of a file. `checked`: the C2PA library read it; `present`: a store was found (by
    our own container scan, with or without the library). `ai_generated`: what the active manifest's actions claim
    (None: no claim either way), whatever the validation state says of that claim."""

    checked: bool = False
    present: bool | None = None
    validation_state: str | None = None  # valid | untrusted_signer | invalid | unreadable (None: no store)
    signature_valid: bool | None = None
    signer_trusted: bool | None = None
    reason: str | None = None
    claim_generator: str | None = None
    signer: str | None = None
    digital_source_type: str | None = None
    actions: list[dict] = field(default_factory=list)
    ai_generated: bool | None = None
    note: str | None = None


@dataclass
class MetadataRecord:
    """Generator and camera metadata from the file's header (Pillow). `ai_generated`: True when an AI digital
    source type or generation parameters are written, False when a capture source type is, else None."""

    checked: bool = False
    digital_source_type: str | None = None
    software: str | None = None
    front_end: str | None = None  # AUTOMATIC1111, Forge, ComfyUI, NovelAI
    prompt: str | None = None
    negative_prompt: str | None = None
    model: str | None = None
    settings: dict = field(default_factory=dict)  # e.g. {"Steps": "20", "Sampler": "Euler a", "Seed": "1"}
    camera_make: str | None = None
    camera_model: str | None = None
    ai_generated: bool | None = None
    note: str | None = None


@dataclass
class WatermarkRecord:
    """The best-matching known invisible watermark. `matches`: its generator when the match is likely or very
    likely (Stability's buckets), else None. `level`: none | partial | likely | very likely."""

    checked: bool = False
    scheme: str | None = None
    payload: str | None = None  # the decoded bits (hex) of the best candidate
    matches: str | None = None
    bits_matched: int | None = None
    bits_total: int | None = None
    level: str | None = None
    note: str | None = None


@dataclass
class Provenance:
    """What one input says about its origin. `source`: "file" (bytes or a path were read) or "pixels" (a decoded
    image: its file-level signals are lost, only a watermark can be looked for)."""

    source: str
    c2pa: C2paRecord
    metadata: MetadataRecord
    watermark: WatermarkRecord
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def not_read(cls, reason: str, source: str = "file") -> "Provenance":
        """The record of an input whose provenance could not be read at all, saying why."""
        return cls(source, C2paRecord(note=reason), MetadataRecord(note=reason), WatermarkRecord(note=reason), [reason])

    def ai_claims(self) -> list[str]:
        """One short phrase per signal that says the image was generated."""
        claims = []
        if self.c2pa.ai_generated:
            claims.append(f"C2PA {short_source_type(self.c2pa.digital_source_type)} ({_state_words(self.c2pa)})")
        if self.metadata.ai_generated:
            what = self.metadata.front_end and f"{self.metadata.front_end} generation parameters"
            claims.append(f"metadata: {what or short_source_type(self.metadata.digital_source_type)}")
        if self.watermark.matches:
            claims.append(f"watermark: {self.watermark.matches.split(' (')[0]} "
                          f"({self.watermark.bits_matched}/{self.watermark.bits_total} bits)")
        return claims


def _state_words(record: C2paRecord) -> str:
    return {"valid": "signature valid, signer trusted", "untrusted_signer": "signature valid, signer not in the trust list",
            "invalid": "NOT valid", "unreadable": "unreadable"}.get(record.validation_state or "", "not checked")


def missing_extra() -> str | None:
    """One line saying which provenance checks this installation cannot run and how to get them, or None."""
    missing = []
    for module, check in (("c2pa", "C2PA"), ("imwatermark", "watermark")):
        try:
            __import__(module)
        except ImportError:
            missing.append(check)
    return f"provenance: {' and '.join(missing)} checks are off ({INSTALL_HINT})" if missing else None


def summary_lines(provenance: dict | None, hint: bool = True) -> list[str]:
    """One or two lines that say what a `Provenance.to_dict()` found, for text output, pages and the banner;
    `hint`: add the line that says which checks the missing extra left out."""
    if not provenance:
        return []
    c2pa, metadata, watermark = (provenance.get(part) or {} for part in ("c2pa", "metadata", "watermark"))
    if provenance.get("notes") and not c2pa.get("checked") and not metadata.get("checked"):
        return [f"provenance: {provenance['notes'][0]}"]
    parts = []
    if c2pa.get("present"):
        if c2pa.get("checked"):
            who = f" signed by {c2pa['signer']}" if c2pa.get("signer") else ""
            claim = {True: "claims AI-generated", False: "claims a capture", None: "no AI claim"}[c2pa.get("ai_generated")]
            why = f" ({c2pa['reason'][:160]})" if c2pa.get("validation_state") in ("invalid", "unreadable") else ""
            parts.append(f"C2PA{who}: {_state_words(C2paRecord(**c2pa))}{why}; {claim}")
        else:
            parts.append(f"C2PA manifest present, not verified ({INSTALL_HINT})")
    if metadata.get("front_end"):
        model = f", model {metadata['model']}" if metadata.get("model") else ""
        parts.append(f"metadata: {metadata['front_end']} generation parameters{model}")
    elif metadata.get("digital_source_type"):
        parts.append(f"metadata: source type {short_source_type(metadata['digital_source_type'])}")
    if watermark.get("matches"):
        parts.append(f"watermark: {watermark['matches'].split(' (')[0]} {watermark['level']} "
                     f"({watermark['bits_matched']}/{watermark['bits_total']} bits)")
    if provenance.get("source") == "pixels":
        parts.append("credentials and metadata not read: only decoded pixels were given (a file's credentials and "
                     "metadata are not in its pixels; pass the path or bytes)")
    elif not parts:
        parts.append("no credentials, generator metadata or known watermark (absence proves nothing)")
    missing = [name for name in ("c2pa", "watermark") if INSTALL_HINT in str((provenance.get(name) or {}).get("note"))]
    lines = ["provenance: " + "; ".join(parts)]
    if hint and missing and not any(INSTALL_HINT in part for part in parts):
        lines.append(f"provenance: {' and '.join(missing)} not checked ({INSTALL_HINT})")
    return lines


# ---------------------------------------------------------------------------------------------- reading
def read_provenance(source, pixels: Image.Image | None = None, trust_anchors: str | os.PathLike | None = None,
                    watermark: bool = True) -> Provenance:
    """The `Provenance` of `source`: a path, the bytes of an image file, or a decoded PIL image / uint8 array.

    pixels: the image already decoded from `source` (saves a second decode for the watermark check).
    trust_anchors: a PEM file (or PEM text) of C2PA trust anchors; default `$ITEM_C2PA_TRUST_ANCHORS`, else none
    (every signer is then "untrusted"). watermark: look for the known invisible watermarks.
    Never raises for a bad file (the record says what could not be read); `ValueError` for an unreadable
    trust-anchor file or an unsupported input type.
    """
    anchors = load_trust_anchors(trust_anchors)
    if isinstance(source, (Image.Image, np.ndarray)):
        image = source if isinstance(source, Image.Image) else Image.fromarray(source)
        note = "not read: only decoded pixels were given; pass the file's path or bytes"
        return Provenance("pixels", C2paRecord(note=note), MetadataRecord(note=note),
                          _watermark(image) if watermark else WatermarkRecord(note="not asked for"))
    data, problem = _file_bytes(source)
    if problem is not None:
        return Provenance.not_read(problem)
    c2pa = _c2pa(data, anchors)
    metadata = read_file_metadata(data, MetadataRecord)
    if not watermark:
        mark = WatermarkRecord(note="not asked for")
    else:
        mark = _watermark(pixels if pixels is not None else _open_pixels(data))
    return Provenance("file", c2pa, metadata, mark)


def _file_bytes(source) -> tuple[bytes | None, str | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > MAX_FILE_BYTES:
                    return None, f"not read: the file is {size:,} bytes, over the provenance limit of {MAX_FILE_BYTES:,}"
                data = handle.read()
        except OSError as error:
            return None, f"not read: cannot read the file ({error.strerror or error})"
    else:
        raise TypeError(f"read_provenance takes a path, bytes, a PIL image or an array; got {type(source).__name__}.")
    if len(data) > MAX_FILE_BYTES:
        return None, f"not read: {len(data):,} bytes, over the provenance limit of {MAX_FILE_BYTES:,}"
    return data, None


def load_trust_anchors(trust_anchors) -> str | None:
    """PEM text of the C2PA trust anchors (a PEM file or PEM text; default `$ITEM_C2PA_TRUST_ANCHORS`), or None
    when none are given. `ValueError` naming the file when it cannot be read or holds no certificate."""
    trust_anchors = trust_anchors or os.environ.get(TRUST_ANCHORS_ENV) or None
    if trust_anchors is None:
        return None
    text = os.fspath(trust_anchors)
    if "-----BEGIN CERTIFICATE-----" not in text:
        try:
            with open(text, encoding="ascii", errors="replace") as handle:
                text = handle.read(4 << 20)
        except OSError as error:
            raise ValueError(f"C2PA trust anchors {os.fspath(trust_anchors)!r} cannot be read "
                             f"({error.strerror or error}); pass a PEM file of CA certificates.") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"C2PA trust anchors {os.fspath(trust_anchors)!r} hold no PEM certificate "
                         "('-----BEGIN CERTIFICATE-----'); pass a PEM file of CA certificates.")
    return text


def _open_pixels(data: bytes) -> Image.Image | None:
    """The stored pixels as RGB (no orientation applied: a watermark is embedded in the pixels as stored)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_WATERMARK_PIXELS:
                return None
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, MemoryError):
        return None


# ---------------------------------------------------------------------------------------------- C2PA
def _c2pa(data: bytes, anchors: str | None) -> C2paRecord:
    store = find_manifest_store(data)
    if store is None:
        return C2paRecord(checked=True, present=False)
    container, size = store
    if size > MAX_MANIFEST_BYTES:
        return C2paRecord(checked=True, present=True, validation_state="unreadable",
                          reason=f"the manifest store is {size:,} bytes, over the limit of {MAX_MANIFEST_BYTES:,}")
    try:
        import c2pa
    except ImportError:
        return C2paRecord(present=True, note=f"a C2PA manifest store is present but was not verified: {INSTALL_HINT}")
    try:
        reader = c2pa.Reader(MIMES.get(container), io.BytesIO(data), context=_c2pa_context(c2pa, anchors))
        with reader:
            store_json = reader.json()
    except Exception as error:  # noqa: BLE001 - the library raises its own error types for damaged manifests
        reason = str(error).strip() or type(error).__name__
        return C2paRecord(checked=True, present=True, validation_state="unreadable", reason=reason[:500])
    return _c2pa_record(store_json)


_CONTEXTS: dict = {}


def _c2pa_context(c2pa, anchors: str | None):
    """A C2PA context with every network path off (remote manifests, OCSP), the manifest size capped, and the
    given trust anchors (none: every signer is untrusted). One per trust list, reused."""
    if anchors not in _CONTEXTS:
        settings = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False, "verify_trust": True},
                    "core": {"allowed_network_hosts": [], "max_decompressed_manifest_size_in_mb": MAX_MANIFEST_BYTES >> 20}}
        if anchors:
            settings["trust"] = {"user_anchors": anchors}
        _CONTEXTS[anchors] = c2pa.Context(settings=c2pa.Settings.from_dict(settings))
    return _CONTEXTS[anchors]


def _c2pa_record(store_json: str) -> C2paRecord:
    """The record of a manifest store the library read (its JSON report)."""
    import json

    try:
        store = json.loads(store_json)
        manifest = store["manifests"][store["active_manifest"]]
    except (ValueError, KeyError, TypeError) as error:
        return C2paRecord(checked=True, present=True, validation_state="unreadable",
                          reason=f"no active manifest in the store ({type(error).__name__}: {error})")
    failures = [status for status in store.get("validation_status") or [] if isinstance(status, dict)]
    trusted = store.get("validation_state") == "Trusted"
    broken = [status for status in failures if status.get("code") != "signingCredential.untrusted"]
    state = "invalid" if broken else "valid" if trusted else "untrusted_signer"
    reason = "; ".join(f"{s.get('code')}: {s.get('explanation', '')}" for s in (broken or failures))[:500] or None
    actions = _actions(manifest)
    source_types = [action["digital_source_type"] for action in actions if action.get("digital_source_type")]
    ai = True if any(t in AI_SOURCE_TYPES for t in source_types) else (
        False if source_types and all(t in CAPTURE_SOURCE_TYPES for t in source_types) else None)
    ai_types = [t for t in source_types if t in AI_SOURCE_TYPES]
    signature = manifest.get("signature_info") or {}
    return C2paRecord(
        checked=True, present=True, validation_state=state,
        signature_valid=_signature_validated(store), signer_trusted=trusted, reason=reason, claim_generator=_claim_generator(manifest),
        signer=signature.get("common_name") or signature.get("issuer"),
        digital_source_type=(ai_types or source_types or [None])[0], actions=actions, ai_generated=ai)


def _signature_validated(store: dict) -> bool:
    """True when the library reports the claim signature verified (`claimSignature.validated`)."""
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    return any(isinstance(s, dict) and s.get("code") == "claimSignature.validated" for s in results.get("success") or [])


def _claim_generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        return " ".join(str(info[0][key]) for key in ("name", "version") if info[0].get(key)) or None
    return manifest.get("claim_generator")


def _actions(manifest: dict) -> list[dict]:
    actions = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, dict) or not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            if isinstance(action, dict):
                agent = action.get("softwareAgent")
                actions.append({"action": action.get("action"), "digital_source_type": action.get("digitalSourceType"),
                                "software_agent": agent.get("name") if isinstance(agent, dict) else agent})
    return actions[:50]


# ---------------------------------------------------------------------------------------------- watermark
def _watermark(image: Image.Image | None) -> WatermarkRecord:
    if image is None:
        return WatermarkRecord(note="not checked: the pixels could not be read, or the image is over "
                                    f"{MAX_WATERMARK_PIXELS:,} pixels")
    try:
        from imwatermark import WatermarkDecoder
    except ImportError:
        return WatermarkRecord(note=f"not checked: {INSTALL_HINT}")
    if image.width * image.height < MIN_WATERMARK_PIXELS:
        return WatermarkRecord(checked=True, scheme="invisible-watermark dwtDct", level="none",
                               note="the image is smaller than 256 x 256 pixels: no watermark can be read")
    if image.width * image.height > MAX_WATERMARK_PIXELS:
        return WatermarkRecord(note=f"not checked: the image is over {MAX_WATERMARK_PIXELS:,} pixels")
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # the library works in OpenCV order
    best = None
    for generator, expected in WATERMARKS.items():
        try:
            decoded = [int(bit) for bit in WatermarkDecoder("bits", len(expected)).decode(bgr, "dwtDct")]
        except Exception as error:  # noqa: BLE001 - a decoder failure is reported, not raised
            return WatermarkRecord(note=f"not checked: the decoder failed ({type(error).__name__}: {error})")
        matched = sum(a == b for a, b in zip(decoded, expected))
        if best is None or matched / len(expected) > best[1] / len(best[2]):
            best = (generator, matched, expected, decoded)
    generator, matched, expected, decoded = best
    level = watermark_level(matched, len(expected))
    payload = f"{int(''.join(map(str, decoded)), 2):0{len(decoded) // 4}x}"
    return WatermarkRecord(checked=True, scheme="invisible-watermark dwtDct", payload=payload,
                           matches=generator if level in ("likely", "very likely") else None,
                           bits_matched=matched, bits_total=len(expected), level=level)


def watermark_level(matched: int, total: int) -> str:
    """Stability's bucket of a bit-match count (its 48-bit bounds scaled to `total` bits)."""
    for bound, level in WATERMARK_LEVELS:
        if matched <= bound * total / 48:
            return level
    return WATERMARK_LEVELS[-1][1]


# ---------------------------------------------------------------------------------------------- policy
def apply_policy(result: dict, provenance: dict | None, policy: str = "report") -> dict:
    """`result` (an `explain=True` dict) with `provenance` beside it. Policy "report" (the default) changes
    nothing else; "signed-ai-decides" sets `is_fake` when a C2PA manifest whose signature holds and whose signer
    is in the trust list claims AI generation, and says so in `decided_by`."""
    if policy not in POLICIES:
        raise ValueError(f"provenance policy {policy!r}; choose one of {', '.join(POLICIES)}.")
    result = {**result, "provenance": provenance}
    c2pa = (provenance or {}).get("c2pa") or {}
    if policy == "signed-ai-decides" and c2pa.get("validation_state") == "valid" and c2pa.get("ai_generated"):
        result.update(is_fake=True, decided_by="c2pa: a trusted signed manifest claims AI generation")
    return result
