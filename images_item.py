"""Reading any image ITEM is given, safely, into 8-bit RGB.

Every image reaches the networks through `load_image`, whatever its source (a path, bytes, a PIL image or a
numpy array), so one set of rules holds for the pipeline, the processor and the command line:

- files are opened with an explicit list of formats (`ALLOWED_FORMATS`): a file renamed `.jpg` is never handed
  to an external decoder such as Ghostscript, and only regular files are opened (a FIFO would block forever);
- the size is checked from the header, before any pixel is decoded: at most `MAX_IMAGE_PIXELS` pixels (PIL's own
  decompression-bomb limit; `load_image(..., max_pixels=N)` or the command line's `--max-image-pixels N` raise it),
  and no zero-sized image. This is the one limit and the one message: PIL's own check, which would refuse twice
  the limit first with another message (and refuse a raised limit), is not run;
- any decoder failure (truncation, a damaged AVIF, a malformed header) becomes a `ValueError` naming the input;
- the EXIF orientation is applied, as transformers' own `load_image` does, so a phone photo is not captioned
  and grounded sideways;
- any mode (RGBA, palette, CMYK, 16-bit ...) becomes RGB: transparency over white, 16/32-bit gray rescaled.

`limit_aspect_ratio` keeps very elongated images and crops within what the networks' resizers can take.
"""

import io
import os
import stat
import struct
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# Raster formats that photos and generated images come in. EPS, PDF, WMF and the like are left out on purpose:
# PIL hands them to external programs or they are not pictures of the world.
ALLOWED_FORMATS = (
    "JPEG", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "AVIF", "HEIF", "JPEG2000", "PPM", "TGA", "ICO", "QOI",
)
# PIL's decompression-bomb threshold (it only warns below twice this); ITEM refuses anything larger outright,
# unless the caller raises the limit (`max_pixels`, `--max-image-pixels`).
MAX_IMAGE_PIXELS = 89_478_485
# Images and crops more elongated than this are padded (bottom / right) before a network sees them: image
# processors that resize the short side and cap the long side turn a 1 x 300 image into a 0-pixel-wide one.
MAX_ASPECT_RATIO = 8.0
# The padding grows with the square of the long side (1 x 80,000 would become 10,000 x 80,000); beyond this many
# pixels the image is shrunk first. Every network resizes to at most ~1,333 px anyway.
MAX_PADDED_PIXELS = 16_000_000
EXIF_ORIENTATION = 0x0112
PAD_COLOR = (124, 116, 104)  # CLIP's mean colour: about zero after normalisation

ImageInput = Any  # str | os.PathLike | bytes | PIL.Image.Image | np.ndarray


def load_image(image: ImageInput, max_pixels: int | None = None) -> Image.Image:
    """Return `image` as an 8-bit RGB PIL image, upright (EXIF orientation applied).

    Accepts a path (str or PathLike), the bytes of an image file, a PIL image in any mode, or an HWC / HW uint8
    numpy array. Raises `ValueError` naming the input when it is not a readable image or is too large to decode
    (`max_pixels`, default `MAX_IMAGE_PIXELS`, checked from the file's header), and `TypeError` for an unsupported
    type. The limit guards decoding: an image already in memory (PIL, numpy) is taken whatever its size, as it was
    decoded under its maker's rules (ITEM's decoding workers, or PIL's own limit in `Image.open`).
    """
    max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels={max_pixels!r}; pass a positive number of pixels (default {MAX_IMAGE_PIXELS:,}).")
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            info = os.stat(path)
        except OSError as error:
            raise ValueError(f"Cannot open {path!r}: {error.strerror or error}. Pass the path of an existing image file.") from None
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path!r} is not a regular file (a folder, FIFO or device); pass an image file.")
        try:
            with open(path, "rb") as handle:
                return _decode(handle, repr(path), max_pixels)
        except OSError as error:
            raise ValueError(f"Cannot read {path!r}: {error.strerror or error}.") from None
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(bytes(image)), f"<{len(image)} bytes>", max_pixels)
    if isinstance(image, Image.Image):
        check_size(image.size, "the PIL image")
        return to_rgb(upright(image))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(
                f"A numpy image must be uint8 of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got dtype "
                f"{image.dtype} and shape {image.shape}."
            )
        check_size((image.shape[1], image.shape[0]), f"the array of shape {image.shape}")
        return to_rgb(Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[2] == 1 else image))
    raise TypeError(
        f"Expected an image path, image file bytes, a PIL.Image or a uint8 numpy array, got {type(image).__name__}."
    )


def read_images(images) -> tuple[bool, list[Image.Image]]:
    """(was one bare image given?, the images as RGB PIL images): what the processor's steps take."""
    single = not isinstance(images, (list, tuple))
    images = [images] if single else list(images)
    if not images:
        raise ValueError("Got an empty list of images; pass at least one image.")
    return single, [load_image(image) for image in images]


def check_size(size: tuple[int, int], name: str, max_pixels: int | None = None) -> None:
    """Raise `ValueError` for an image with no pixels, or (with `max_pixels`) more pixels than that: the one message
    for an image too large to decode, wherever it is read."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"{name} is {width} x {height} pixels: an image needs at least one pixel each way.")
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(
            f"{name} is {width} x {height} = {width * height:,} pixels, over the limit of {max_pixels:,} (a possible "
            "decompression bomb). Shrink it first, or raise the limit: --max-image-pixels N on the command line, "
            "load_image(..., max_pixels=N) in Python."
        )


def _decode(handle, name: str, max_pixels: int) -> Image.Image:
    """Open a file object with the allowed formats, check its size from the header, then decode it."""
    if not handle.read(1):  # PIL would call it "not a supported format"; say what is wrong
        raise ValueError(f"{name} is empty (0 bytes): there is no image in it.")
    handle.seek(0)
    try:
        with warnings.catch_warnings():
            # PIL warns about large images; the size check below is ours and stricter.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open_header(handle, name) as opened:
                check_size(opened.size, name, max_pixels)
                opened.load()  # decode now, so a truncated file fails here and not deep inside a model
                image = to_rgb(upright(opened))
                return opened.copy() if image is opened else image  # closing the file would empty `opened`
    except ValueError as error:
        if str(error).startswith(name):
            raise  # our own size message
        # A decoder's own ValueError on a damaged file ("not enough values to unpack"): as for any other exception.
        raise ValueError(f"Cannot read {name} as an image (ValueError: {error}). Is it a complete image file?") from None
    except Image.UnidentifiedImageError:
        raise ValueError(
            f"Cannot read {name} as an image: not a file of a supported format ({', '.join(ALLOWED_FORMATS)})."
        ) from None
    except MemoryError:
        raise ValueError(f"Cannot read {name}: decoding it needs more memory than is available.") from None
    except Exception as error:  # noqa: BLE001 - decoders of malformed files raise anything (RuntimeError, struct.error ...)
        raise ValueError(f"Cannot read {name} as an image ({type(error).__name__}: {error}). Is it a complete image file?") from None


def _open_header(handle, name: str) -> Image.Image:
    """`Image.open(handle, formats=...)` without PIL's own decompression-bomb check: read the header with the first
    allowed format whose plugin accepts the file, and decode nothing.

    PIL's check refuses at twice its limit with its own message before ITEM's limit, which the caller may raise, can
    apply. PIL has no switch for it but a process-wide setting (`Image.MAX_IMAGE_PIXELS`), which remote code must
    not change in its host's process; so the plugin registry (`Image.OPEN`, what `Image.open` itself walks) is used.
    """
    prefix = handle.read(16)
    for format_name in _registered_formats():
        factory, accept = Image.OPEN[format_name]
        verdict = accept(prefix) if accept else True
        if not verdict or isinstance(verdict, str):  # a string is a plugin's reason to refuse the file
            continue
        handle.seek(0)
        try:
            return factory(handle, "")
        except (SyntaxError, IndexError, TypeError, struct.error):  # not this format after all, as Image.open tries on
            continue
    raise Image.UnidentifiedImageError(f"cannot identify image file {name}")


def _registered_formats() -> list[str]:
    """The allowed formats this PIL build can open (HEIF needs a plugin; MPO files open as JPEG)."""
    Image.init()
    return [name for name in ALLOWED_FORMATS if name in Image.OPEN]


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (a camera held sideways); a malformed EXIF block is ignored."""
    try:
        if image.getexif().get(EXIF_ORIENTATION, 1) == 1:
            return image
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - broken EXIF must not make a readable image unreadable
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: transparency is flattened onto white, 16/32-bit gray is rescaled.

    An RGB image is returned as it is (not copied)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # PIL's own convert clips these at 255; rescale the real range instead.
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        high = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        gray = np.clip(values / high * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    try:
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ValueError(f"Cannot convert an image of mode {image.mode!r} to RGB ({error}).") from None


def limit_aspect_ratio(image: Image.Image, max_ratio: float = MAX_ASPECT_RATIO) -> tuple[Image.Image, float]:
    """Pad `image` at the bottom or right so that its long side is at most `max_ratio` times its short side.

    The top-left corner stays in place. When the padded image would exceed `MAX_PADDED_PIXELS`, the image is
    shrunk first. Returns `(image, scale)`: a pixel coordinate of the result times `scale` is one of the input.
    """
    width, height = image.size
    if max(width, height) <= max_ratio * min(width, height):
        return image, 1.0
    scale = 1.0
    long_side = max(width, height)
    if long_side * long_side / max_ratio > MAX_PADDED_PIXELS:
        scale = long_side / (MAX_PADDED_PIXELS * max_ratio) ** 0.5
        width, height = max(1, round(width / scale)), max(1, round(height / scale))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    padded_size = (max(width, int(np.ceil(height / max_ratio))), max(height, int(np.ceil(width / max_ratio))))
    canvas = Image.new("RGB", padded_size, PAD_COLOR)
    canvas.paste(image, (0, 0))
    return canvas, scale


def region_patch_mask(image_processor, grid: int, size: tuple[int, int], box) -> np.ndarray:
    """Which of an image tower's `grid` x `grid` patches a box covers, once the whole image of `size` has gone
    through `image_processor`'s resize (shortest edge, or fixed height and width) and centre crop.

    A patch counts when the box covers any of it; a box outside the part the tower sees covers none.
    Returns a (grid * grid,) bool mask, row by row.
    """
    width, height = size
    resize = getattr(image_processor, "size", None) or {}
    if "shortest_edge" in resize:
        short, long = sorted((width, height))
        target = resize["shortest_edge"], int(resize["shortest_edge"] * long / short)
        new_width, new_height = target if width <= height else target[::-1]
    elif "height" in resize and "width" in resize:
        new_width, new_height = resize["width"], resize["height"]
    else:
        raise ValueError(f"local_embeddings='regions' needs a fixed-size image processor; this one resizes by {resize!r}.")
    crop = getattr(image_processor, "crop_size", None) if getattr(image_processor, "do_center_crop", False) else None
    crop_width, crop_height = (crop["width"], crop["height"]) if crop else (new_width, new_height)
    left, top = (new_width - crop_width) // 2, (new_height - crop_height) // 2
    x0, y0, x1, y1 = box
    columns = np.clip([(x * new_width / width - left) / crop_width * grid for x in (x0, x1)], 0, grid)
    rows = np.clip([(y * new_height / height - top) / crop_height * grid for y in (y0, y1)], 0, grid)
    mask = np.zeros((grid, grid), dtype=bool)
    first_col, last_col = int(np.floor(columns[0])), int(np.ceil(columns[1]))
    first_row, last_row = int(np.floor(rows[0])), int(np.ceil(rows[1]))
    if last_col > first_col and last_row > first_row:
        mask[first_row:last_row, first_col:last_col] = True
    return mask.reshape(-1)
