"""A corpus of hostile files, made here from nothing: what a folder from the wild can hold.

`write_hostile_corpus(folder, count=50, seed=0)` writes every PIL format and mode ITEM accepts, wrong or no
extensions, 1 x 1 and 200,000-pixel-long images, decompression-bomb headers (crafted byte by byte, CRCs right),
truncations, seeded byte flips, documents renamed `.jpg`, empty and text files, a FIFO, a socket, an unreadable
file, link loops, duplicates, names no terminal likes (newlines, non-ASCII, non-UTF-8 bytes), damaged C2PA manifests
and PNG text bombs (hostile_provenance.py). The `CorpusManifest` says what each entry is and whether `item detect`
must score it, skip it (with which words in the reason), or may do either (a flipped byte can leave an image
readable). `count`: random variants (sizes, truncations, byte flips): 50 make a one-minute corpus, 1,750 2,000 files.

    python -m item_cli.testing.hostile FOLDER --count 1750 [--seed 0] [--manifest manifest.jsonl]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import struct
import sys
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .hostile_provenance import EITHER, SCORE, SKIP, write_provenance_cases
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "DIB": "dib", "TIFF": "tif",
              "AVIF": "avif", "JPEG2000": "jp2", "PPM": "ppm", "TGA": "tga", "ICO": "ico", "QOI": "qoi"}
MODES = ("1", "L", "LA", "P", "P+transparency", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F", "LAB", "HSV")
PIL_UNREADABLE = {("TIFF", "YCbCr")}  # PIL writes them but cannot read them back (it calls this TIFF truncated)
# Words one of which a skip reason must hold, per kind of damage (lower case).
BOMB = ("decompression bomb",)
NOT_AN_IMAGE = ("not a file of a supported format",)
EMPTY = ("empty",)
DAMAGED = ("truncated", "not a file of a supported format", "broken data stream", "could not create decoder",
           "complete image file", "expected to read", "eof")
MAX_LONG_SIDE = 200_000


@dataclass(frozen=True)
class CorpusFile:
    """One entry: `expect` is SCORE, SKIP or EITHER; a SKIP's reason must contain one of `reason` (lower case)."""

    path: Path
    kind: str
    expect: str
    reason: tuple[str, ...] = ()
    regular: bool = True  # a regular file (not a FIFO, socket or link to something that is not one)


@dataclass
class CorpusManifest:
    """What `write_hostile_corpus` wrote: `files` (each expects one output record) and `notes` (cases left out)."""

    folder: Path
    files: list[CorpusFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def expecting(self, expect: str) -> list[CorpusFile]:
        return [entry for entry in self.files if entry.expect == expect]

    def find(self, kind: str) -> CorpusFile:
        """The entry of kind `kind` (kinds are unique)."""
        (entry,) = [entry for entry in self.files if entry.kind == kind]
        return entry

    def summary(self) -> dict:
        return {"files": len(self.files), **{expect: len(self.expecting(expect)) for expect in (SCORE, SKIP, EITHER)}}


class _Writer:
    """Writes entries under one folder and records them."""

    def __init__(self, folder: Path, seed: int):
        self.manifest = CorpusManifest(folder)
        self.rng = np.random.default_rng(seed)

    def path(self, name: str | bytes) -> Path:
        path = self.manifest.folder / os.fsdecode(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add(self, name, data: bytes, kind: str, expect: str, reason=(), regular: bool = True) -> Path:
        path = self.path(name)
        path.write_bytes(data)
        return self.record(path, kind, expect, reason, regular)

    def record(self, path: Path, kind: str, expect: str, reason=(), regular: bool = True) -> Path:
        self.manifest.files.append(CorpusFile(path, kind, expect, tuple(reason), regular))
        return path


# ---------------------------------------------------------------------------------------------- images
def photo(rng, size=(48, 32)) -> Image.Image:
    """An RGB image with some structure (two colour ramps) and noise, like a small photo, not pure noise."""
    width, height = size
    across = np.linspace(0, 1, width)[None, :, None] * rng.uniform(-90, 90, 3)
    down = np.linspace(0, 1, height)[:, None, None] * rng.uniform(-90, 90, 3)
    pixels = rng.uniform(60, 190, 3) + across + down + rng.normal(0, 18, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def in_mode(image: Image.Image, mode: str) -> tuple[Image.Image, dict]:
    """`image` converted to `mode` with real content in every channel; returns (image, save options)."""
    gray = np.asarray(image.convert("L"))
    deep = {"I;16": lambda: gray.astype(np.uint16) * 257, "I": lambda: gray.astype(np.int32) * 1000,
            "F": lambda: gray.astype(np.float32) / 7.0}  # the full range of each, not 0..255
    if mode in deep:
        return Image.fromarray(deep[mode]()), {}
    if mode in ("RGBA", "LA", "PA"):
        alpha = Image.linear_gradient("L").resize(image.size)
        base = image.convert("P") if mode == "PA" else image.convert(mode[:-1])
        converted = base.convert(mode)
        converted.putalpha(alpha)
        return converted, {}
    if mode == "P+transparency":
        return image.convert("P"), {"transparency": 0}
    return image.convert(mode), {}


def encode(image: Image.Image, fmt: str, **options) -> bytes | None:
    """The file PIL writes for `image` in `fmt`, or None when this PIL build cannot write that combination."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # "saving I mode images as PNG is deprecated": None once it is gone
            warnings.simplefilter("ignore", DeprecationWarning)
            image.save(buffer, fmt, **options)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return buffer.getvalue()


def _formats_and_modes(w: _Writer) -> None:
    """Every allowed format in every mode this PIL can write it in: all must score."""
    base = photo(w.rng, (40, 28))
    Image.init()
    for fmt, ext in EXTENSIONS.items():
        if fmt not in Image.SAVE:
            w.manifest.notes.append(f"this PIL cannot write {fmt}: no {fmt} files in the corpus")
        for mode in MODES if fmt in Image.SAVE else ():
            image, options = in_mode(base, mode)
            data = encode(image, fmt, **options)
            if data is not None:  # None: PIL does not write this mode in this format
                w.add(f"formats/{fmt.lower()}/{mode.replace(';', '-').replace('+', '-')}.{ext}", data, f"{fmt} {mode}",
                      EITHER if (fmt, mode) in PIL_UNREADABLE else SCORE)


def _animations_and_orientation(w: _Writer) -> None:
    """Multi-frame files (animated GIF / PNG / WEBP, multi-page TIFF, MPO) and EXIF orientations."""
    frames = [photo(w.rng, (40, 28)) for _ in range(3)]
    for fmt, name in (("GIF", "animated.gif"), ("PNG", "animated.png"), ("WEBP", "animated.webp"),
                      ("TIFF", "multipage.tif"), ("MPO", "two-views.mpo")):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
        if data is None:
            w.manifest.notes.append(f"this PIL cannot write a multi-frame {fmt}")
            continue
        w.add(f"frames/{name}", data, f"multi-frame {fmt}", SCORE)
    upright = photo(w.rng, (64, 32))
    for orientation in (6, 8, 3):
        exif = Image.Exif()
        exif[0x0112] = orientation
        w.add(f"exif/orientation-{orientation}.jpg", encode(upright, "JPEG", exif=exif.tobytes()),
              f"EXIF orientation {orientation}", SCORE)
    broken_exif = encode(upright, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x01" * 40)
    w.add("exif/broken-exif.jpg", broken_exif, "malformed EXIF block", SCORE)
    w.add("exif/progressive.jpg", encode(upright, "JPEG", progressive=True), "progressive JPEG", SCORE)


def _names(w: _Writer) -> None:
    """Wrong, missing and hostile names: the content decides, and every name must survive the output."""
    png, jpeg = encode(photo(w.rng), "PNG"), encode(photo(w.rng), "JPEG")
    for name, data, kind in (
        ("names/png-named.jpg", png, "PNG named .jpg"), ("names/jpeg-named.png", jpeg, "JPEG named .png"),
        ("names/IMG_0001", jpeg, "JPEG with no extension"), ("names/PHOTO.JPG", jpeg, "upper-case extension"),
        ("names/picture.txt", png, "PNG named .txt"), ("names/archive.tar.gz", encode(photo(w.rng), "GIF"), "GIF named .tar.gz"),
        ("names/with space.png", png, "space in the name"), ("names/new\nline.png", png, "newline in the name"),
        ("names/tab\tand\rreturn.png", png, "tab and carriage return in the name"),
        ("names/naïve café 日本語 🙂.png", png, "non-ASCII name"), (b"names/latin1-caf\xe9.png", png, "Latin-1 byte in the name"),
        (b"names/\xff\xfe not utf-8.jpg", jpeg, "bytes that are not UTF-8 in the name"),
        ("names/escape-\x1b[31mred.png", png, "terminal escape in the name"), ("names/line\u2028separator.png", png, "U+2028 in the name"),
        ("names/-starts-with-a-dash.png", png, "name starting with a dash"), ("names/quo'te\"s and \\back.png", png, "quotes and a backslash"),
        ("names/" + "long" * 60 + ".png", png, "244-byte name"),
    ):
        w.add(name, data, kind, SCORE)
    w.add("names/.hidden.png", png, "hidden file", SKIP, ("hidden",))


def _sizes(w: _Writer, variants: int) -> None:
    """1 x 1, 1 x N and N x 1 up to 200,000 pixels long (tiny files), and `variants` random elongated sizes."""
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"):
        w.add(f"sizes/1x1.{EXTENSIONS[fmt]}", encode(photo(w.rng, (1, 1)), fmt), f"1 x 1 {fmt}", SCORE)
    fixed = [((1, MAX_LONG_SIDE), "PNG"), ((MAX_LONG_SIDE, 1), "PNG"), ((65_500, 1), "JPEG"), ((1, 65_500), "JPEG"),
             ((16_383, 1), "WEBP"), ((2, 100_000), "TIFF"), ((1, 2), "PNG"), ((3, 1), "GIF")]
    for size, fmt in fixed:
        w.add(f"sizes/{size[0]}x{size[1]}.{EXTENSIONS[fmt]}", encode(photo(w.rng, size), fmt), f"{size[0]} x {size[1]} {fmt}", SCORE)
    for i in range(variants):
        long_side = int(np.exp(w.rng.uniform(0, np.log(MAX_LONG_SIDE))))
        short_side = int(w.rng.integers(1, 5))
        size = (long_side, short_side) if w.rng.random() < 0.5 else (short_side, long_side)
        limits = {"JPEG": 65_500, "WEBP": 16_383, "GIF": 65_535, "PNG": MAX_LONG_SIDE, "BMP": MAX_LONG_SIDE}
        fmt = str(w.rng.choice([name for name, limit in limits.items() if limit >= long_side]))
        w.add(f"sizes/random-{i:04d}-{size[0]}x{size[1]}.{EXTENSIONS[fmt]}", encode(photo(w.rng, size), fmt),
              f"random size {i}", SCORE)


# ---------------------------------------------------------------------------------------------- crafted headers
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, pixels: bytes = b"\0" * 64) -> bytes:
    """A well-formed PNG (right CRCs) that claims `width` x `height` 8-bit gray pixels and holds `pixels`."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(pixels, 9)) + _chunk(b"IEND", b"")


def bomb_headers(width: int, height: int) -> dict[str, bytes]:
    """Tiny files of several formats whose headers claim `width` x `height` pixels (each side at most 65,535)."""
    sof = b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 122), (277, 3, 1),
            (278, 4, 1), (279, 4, 16)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in tags)
    return {
        "png": png_header(width, height),
        "gif": b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
        + b"\x02\x02\x44\x01\x00;",
        "bmp": b"BM" + struct.pack("<IHHI", 70, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
        + b"\0" * 16,
        "ppm": b"P6\n%d %d\n255\n" % (width, height) + b"\0" * 16,
        "jpg": sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\0" * 16 + b"\xff\xd9",
        "tif": b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\0" * 16,
        "qoi": b"qoif" + struct.pack(">IIBB", width, height, 3, 0) + b"\0" * 23 + b"\1",
        "tga": struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, width, height, 24, 0) + b"\0" * 16,
        "j2k": b"\xff\x4f\xff\x51" + struct.pack(">HHIIIIIIIIH", 41, 0, width, height, 0, 0, width, height, 0, 0, 1)
        + b"\x07\x01\x01\xff\xd9",
    }


def _bombs(w: _Writer) -> None:
    """Headers that claim too many pixels (refused before decoding), a zTXt bomb, a large-but-allowed image and a
    6 GiB file (sparse: it takes no disk)."""
    w.add("bombs/1x100000000.png", png_header(1, 100_000_000), "PNG header 1 x 100,000,000", SKIP, BOMB)
    w.add("bombs/100000x100000.png", png_header(100_000, 100_000), "PNG header 100,000 x 100,000", SKIP, BOMB)
    w.add("bombs/zero-width.png", png_header(0, 10), "PNG header 0 x 10", SKIP, NOT_AN_IMAGE + ("pixel",))
    for side, label in ((65_535, "65535"), (10_000, "10000")):
        for ext, data in bomb_headers(side, side).items():
            w.add(f"bombs/{label}x{label}.{ext}", data, f"{ext} header {label} x {label}", SKIP, BOMB)
    small = encode(photo(w.rng, (16, 16)), "PNG")
    text_bomb = _chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * (64 << 20), 9))
    w.add("bombs/ztxt-64MiB.png", small[:33] + text_bomb + small[33:], "PNG with a 64 MiB zTXt chunk", SKIP, ("too large",))
    w.add("bombs/9000x9000-allowed.png", png_header(9000, 9000, b"\0" * (9001 * 9000)), "9000 x 9000 PNG (81 Mpx, under the limit)", SCORE)
    path = w.path("bombs/6GiB-sparse.jpg")
    with open(path, "wb") as handle:
        handle.truncate(6 << 30)
    if os.stat(path).st_blocks * 512 > (1 << 20):  # this file system does not do sparse files: do not fill the disk
        path.unlink()
        w.manifest.notes.append("the file system does not support sparse files: no 6 GiB file")
    else:
        w.record(path, "6 GiB file of zeros", SKIP, ("bytes", "too large", "over the limit"))


# ---------------------------------------------------------------------------------------------- damage
def _damage(w: _Writer, variants: int) -> None:
    """Truncations at fixed points (refused) and `variants` random truncations and seeded byte flips (either)."""
    image = photo(w.rng, (48, 32))
    bases = {fmt: encode(image, fmt) for fmt in EXTENSIONS if fmt != "DIB"}
    bases["JPEG-progressive"] = encode(image, "JPEG", progressive=True)
    bases = {name: data for name, data in bases.items() if data is not None}
    for name, data in bases.items():
        ext = EXTENSIONS[name.split("-")[0]]
        for cut in (1, 8, 16, len(data) // 4, len(data) // 2):
            w.add(f"damaged/{name.lower()}-cut-at-{cut}.{ext}", data[:cut], f"{name} cut at {cut}", SKIP, DAMAGED)
        w.add(f"damaged/{name.lower()}-last-byte-missing.{ext}", data[:-1], f"{name} without its last byte", EITHER)
    if "AVIF" in bases:  # a damaged AVIF under the names it travels with on the web
        avif = bases["AVIF"]
        w.add("damaged/avif-half-named.png", avif[: len(avif) // 2], "damaged AVIF named .png", SKIP, DAMAGED)
        w.add("damaged/avif-no-tail-named.jpg", avif[:-40], "damaged AVIF named .jpg", SKIP, DAMAGED)
    else:
        w.manifest.notes.append("this PIL cannot write AVIF: no damaged AVIF files")
    names = sorted(bases)
    for i in range(variants):
        name = names[i % len(names)]
        data = bytearray(bases[name])
        ext = EXTENSIONS[name.split("-")[0]]
        if w.rng.random() < 1 / 3:
            cut = int(w.rng.integers(1, len(data)))
            w.add(f"damaged/random-{i:04d}-{name.lower()}-cut-{cut}.{ext}", bytes(data[:cut]), f"random truncation {i}", EITHER)
            continue
        for position in w.rng.integers(0, len(data), int(w.rng.integers(1, 9))):
            data[position] ^= 1 << int(w.rng.integers(0, 8))
        w.add(f"damaged/random-{i:04d}-{name.lower()}-flipped.{ext}", bytes(data), f"random byte flips {i}", EITHER)


def _not_images(w: _Writer) -> None:
    """Empty files, text, documents renamed .jpg (EPS would go to Ghostscript) and formats outside the list."""
    for name in ("empty.jpg", "empty.png", "empty"):
        w.add(f"not-images/{name}", b"", f"zero bytes: {name}", SKIP, EMPTY)
    texts = {"notes.txt": b"shopping list: milk, eggs\n", "caption.jpg": b"a photo of a cat on a sofa\n",
             "page.png": b"<!DOCTYPE html><html><body><img src='x.png'></body></html>\n",
             "drawing.png": b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>\n",
             "data.jpg": json.dumps({"image": "not really"}).encode(), "README": "Ünïcödé text\n".encode()}
    for name, data in texts.items():
        w.add(f"not-images/{name}", data, f"text file {name}", SKIP, NOT_AN_IMAGE)
    image = photo(w.rng, (32, 24))
    documents = {"EPS": ("document-eps.jpg", image), "PDF": ("document-pdf.jpg", image),
                 "PCX": ("pcx.png", image), "SGI": ("sgi.jpg", image), "IM": ("im.png", image),
                 "XBM": ("xbm.jpg", image.convert("1")), "DDS": ("dds.png", image.convert("RGBA")),
                 "MSP": ("msp.jpg", image.convert("1")), "BLP": ("blp.png", image.convert("P"))}
    for fmt, (name, source) in documents.items():
        data = encode(source, fmt)
        if data is None:
            w.manifest.notes.append(f"this PIL cannot write {fmt}: no {fmt} file renamed")
            continue
        w.add(f"not-images/{name}", data, f"{fmt} renamed {Path(name).suffix}", SKIP, NOT_AN_IMAGE)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n%%EOF\n"
    w.add("not-images/handmade.eps.jpg", eps, "hand-written EPS named .jpg", SKIP, NOT_AN_IMAGE)


def _special(w: _Writer) -> None:
    """What is not a plain file: a FIFO, a socket, an unreadable file, link loops, dangling and duplicate links,
    a folder named like an image, a deeply nested image."""
    png = encode(photo(w.rng), "PNG")
    fifo = w.path("special/pipe.png")
    os.mkfifo(fifo)
    w.record(fifo, "FIFO", SKIP, ("regular file",), regular=False)
    _socket(w, w.path("special/socket.jpg"))
    locked = w.add("special/locked.png", png, "unreadable file (chmod 000)", SKIP, ("permission denied",))
    os.chmod(locked, 0)
    if os.access(locked, os.R_OK):  # root reads it anyway: it is an ordinary good image then
        w.manifest.files[-1] = CorpusFile(locked, "unreadable file (chmod 000)", SCORE)
        w.manifest.notes.append("running as root: chmod 000 does not stop reading, so the unreadable-file case scores instead")
    target = w.add("special/a-target.png", png, "target of two links", SCORE)
    os.symlink("a-target.png", w.path("special/zz-symlink-again.png"))
    w.record(w.path("special/zz-symlink-again.png"), "symbolic link to a listed file", SKIP, ("same file",))
    os.link(target, w.path("special/zz-hardlink-again.png"))
    w.record(w.path("special/zz-hardlink-again.png"), "hard link to a listed file", SKIP, ("same file",))
    os.symlink("missing.png", w.path("special/dangling.png"))
    w.record(w.path("special/dangling.png"), "dangling symbolic link", SKIP, ("broken symbolic link",), regular=False)
    os.symlink(".", w.path("special/loop"))  # no record: the folder it points to is searched once, not forever
    os.symlink("..", w.path("special/up"))
    w.add("special/album.jpg/inside.png", png, "image in a folder named .jpg", SCORE)
    w.add("special/" + "/".join(["deep"] * 40) + "/bottom.png", png, "image 40 folders deep", SCORE)


def _socket(w: _Writer, path: Path) -> None:
    """A Unix socket file (left behind after closing), when the path is short enough to bind."""
    with socket.socket(socket.AF_UNIX) as server:
        try:
            server.bind(os.fspath(path))
            w.record(path, "Unix socket", SKIP, ("regular file",), regular=False)
        except OSError as error:
            w.manifest.notes.append(f"no socket file: {error}")


def write_hostile_corpus(folder: str | os.PathLike, count: int = 50, seed: int = 0) -> CorpusManifest:
    """Write the corpus into `folder` (created; must be empty) and return its manifest; `count` random variants."""
    if count < 0:
        raise ValueError(f"count={count}; pass the number of random variants, 0 or more (50 for a quick corpus).")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{os.fsdecode(folder)!r} is not empty; pass a new or empty folder for the corpus.")
    folder.mkdir(parents=True, exist_ok=True)
    w = _Writer(folder, seed)
    _formats_and_modes(w)
    _animations_and_orientation(w)
    _names(w)
    _sizes(w, count // 4)
    _bombs(w)
    write_provenance_cases(w)
    _damage(w, count - count // 4)
    _not_images(w)
    _special(w)
    return w.manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="new or empty folder to write the corpus into")
    parser.add_argument("--count", type=int, default=50, help="random variants (sizes, truncations, byte flips)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--manifest", help="also write the manifest here, one JSON object per entry (outside FOLDER)")
    args = parser.parse_args(argv)
    manifest = write_hostile_corpus(args.folder, args.count, args.seed)
    if args.manifest:
        with open(args.manifest, "w", encoding="utf-8") as out:
            for entry in manifest.files:  # undecodable name bytes stay as \udcXX escapes: os.fsencode restores them
                out.write(json.dumps({**asdict(entry), "path": os.fspath(entry.path)}) + "\n")
    print(json.dumps(manifest.summary()), file=sys.stderr)
    for note in manifest.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
