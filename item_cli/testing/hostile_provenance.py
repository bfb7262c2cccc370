"""The provenance part of the hostile corpus: damaged and oversized C2PA manifest stores, PNG text bombs in the
fields Stable Diffusion front ends write, and watermark-shaped noise. Each must be answered (scored, its provenance
`unreadable` with the reason where the store is broken, or skipped with a reason), never end a run."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

SCORE, SKIP, EITHER = "score", "skip", "either"  # what `item detect` must do with an entry (see hostile.py)


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def jumbf_segment(body: bytes) -> bytes:
    """A JPEG APP11 segment holding a JUMBF box labelled "c2pa" (a C2PA manifest store's header) and `body`."""
    label = b"jumd" + b"\0" * 16 + b"\x03c2pa\0"
    payload = b"JP" + b"\0\x01" + b"\0\0\0\x01" + struct.pack(">I", 8 + 8 + len(label) + len(body)) + b"jumb" \
        + struct.pack(">I", 8 + len(label)) + label + body
    return b"\xff\xeb" + struct.pack(">H", len(payload) + 2) + payload


def write_provenance_cases(w) -> None:
    """Damaged and oversized C2PA stores, PNG text bombs in generator fields and watermark-shaped noise: each
    image is scored, with its provenance `unreadable` (and why) where the store is broken."""
    small = w.rng.integers(40, 200, (28, 40, 3), dtype=np.uint8)
    jpeg, png = encode(small, "JPEG"), encode(small, "PNG")
    w.add("provenance/c2pa-garbage.jpg", jpeg[:2] + jumbf_segment(w.rng.bytes(3000)) + jpeg[2:],
          "JPEG with a damaged C2PA store", SCORE)
    w.add("provenance/c2pa-truncated-box.jpg", jpeg[:2] + jumbf_segment(b"")[:30] + jpeg[2:],
          "JPEG whose C2PA segment is cut short", EITHER)
    huge = struct.pack(">I", 0x7FFF_FFF0) + b"caBX" + w.rng.bytes(64)  # claims 2 GiB, holds 64 bytes
    w.add("provenance/c2pa-claims-2GiB.png", png[:33] + huge + png[33:], "PNG whose caBX chunk claims 2 GiB", EITHER)
    many = b"".join(png_chunk(b"tEXt", b"parameters\0" + b"x" * 1000) for _ in range(2000))
    w.add("provenance/2000-text-chunks.png", png[:33] + many + png[33:], "PNG with 2,000 text chunks", EITHER)
    nested = png_chunk(b"tEXt", b"prompt\0" + b"[" * 200_000)
    w.add("provenance/comfyui-nested-json.png", png[:33] + nested + png[33:], "PNG with a 200,000-deep JSON prompt", SCORE)
    settings = png_chunk(b"tEXt", b"parameters\0a cat\nSteps: " + b"a" * 900_000)  # no colon for a regex to find
    w.add("provenance/900KB-settings-line.png", png[:33] + settings + png[33:], "PNG with a 900 KB settings line", SCORE)
    long_text = png_chunk(b"tEXt", b"parameters\0" + b"a cat, " * 100_000 + b"\nSteps: 20, Seed: 1")
    w.add("provenance/700KB-parameters.png", png[:33] + long_text + png[33:], "PNG with 700 KB of parameters", SCORE)
    noise = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    w.add("provenance/watermark-shaped-noise.png", encode(noise, "PNG"), "512 x 512 noise", SCORE)
