"""Draw ITEM's explanation of one verdict onto the image: `draw_explanation(image, result)`.

`result` is what `pipe(image, explain=True)` returns for one image. The picture shows:

- above the image, a banner with the verdict line (`FAKE  p(fake)=0.93  threshold 0.50`, from the head's
  `is_fake`, `fake_probability` and `threshold`; `UNSURE ... band 0.30-0.70` on grey when the result's `verdict`
  is "unsure"), the caption (wrapped), the least aligned object and the caption's nouns that were not found in
  the image, and one line of provenance when the result has it (Content Credentials, generator metadata,
  watermark: reported beside the verdict, never changing it);
- on the image, each grounded object's box with a tag "noun similarity", coloured on one colour-blind-safe
  scale (viridis anchors, no matplotlib) by its similarity *relative to the other objects of this image*
  (min-max within the image): yellow = least aligned, dark purple = best aligned. The least aligned object
  has a twice-as-thick outline and a "least aligned" tag, drawn on top of the others;
- below the image, a legend of the colour scale with the image's lowest and highest similarity.

The colour never encodes "fake": whether a fake image aligns worse or better with its caption is the
trained head's business, so the verdict text comes from the head alone.

Narrow images are enlarged by a whole factor (nearest neighbour: each pixel an equal square, nothing
invented) to at least `MIN_DISPLAY_WIDTH`; text sizes and line widths grow with the picture, so a 64-pixel
thumbnail and a 6000-pixel photo both read well.
The returned image's `info["layout"]` says where the image and each box landed (for tests and callers).
It uses PIL and the image rules of `images_item` only: this file ships as Hub remote code, with the pipeline
(`pipe.draw_explanation(image, result)`).
"""

import math

from PIL import Image, ImageDraw, ImageFont

from .images_item import to_rgb as model_rgb
from .images_item import upright
from .provenance_item import summary_lines

RGB = tuple[int, int, int]

# Viridis at positions 0, 1/8, ..., 1, listed from its yellow end to its purple end: position 0 of our
# scale is the least aligned object. Viridis stays readable with every common colour-vision deficiency
# and its lightness is monotonic, so even a grey-scale print keeps the order.
ALIGNMENT_SCALE: tuple[RGB, ...] = (
    (253, 231, 37), (170, 220, 50), (92, 200, 99), (39, 173, 129), (33, 144, 141),
    (44, 113, 142), (59, 81, 139), (71, 44, 122), (68, 1, 84),
)
MIN_DISPLAY_WIDTH = 384  # narrower images are enlarged to this width before anything is drawn
MAX_ENLARGED_SIDE = 2048  # ... but a 3 x 500 strip is not blown up to 384 x 64,000
# Okabe-Ito vermillion and blue: told apart with every colour-vision deficiency; the word says it anyway.
VERDICT_BACKGROUND = {True: (213, 94, 0), False: (0, 114, 178)}
UNSURE_BACKGROUND = (96, 96, 96)  # neutral grey for "unsure" (white text on it: contrast about 6:1)
PAPER, INK = (255, 255, 255), (20, 20, 20)
MAX_CAPTION_LINES = 4
REQUIRED_FIELDS = ("fake_probability", "is_fake", "threshold", "caption", "objects")
REQUIRED_OBJECT_FIELDS = ("noun", "box", "similarity")


def scale_color(position: float) -> RGB:
    """Colour at `position` in [0, 1] of the alignment scale (0: least aligned, yellow; 1: best, purple)."""
    position = min(max(float(position), 0.0), 1.0) * (len(ALIGNMENT_SCALE) - 1)
    low = min(int(position), len(ALIGNMENT_SCALE) - 2)
    weight = position - low
    first, second = ALIGNMENT_SCALE[low], ALIGNMENT_SCALE[low + 1]
    return tuple(round(a + (b - a) * weight) for a, b in zip(first, second))


def similarity_positions(similarities) -> list[float]:
    """Min-max position of each similarity within its image: 0 = lowest, 1 = highest; 0.5 if all equal."""
    values = [float(value) for value in similarities]
    if not values:
        return []
    low, high = min(values), max(values)
    if high - low < 1e-12:
        return [0.5] * len(values)
    return [(value - low) / (high - low) for value in values]


def similarity_colors(similarities) -> list[RGB]:
    """One RGB colour per similarity, placed on the alignment scale relative to the others."""
    return [scale_color(position) for position in similarity_positions(similarities)]


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as the model saw it: upright (EXIF orientation applied; the pipeline's boxes are in the upright
    image's pixels) and in 8-bit RGB by the same rules as `images_item.load_image`."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"draw_explanation needs a PIL image, got {type(image).__name__}; open it with PIL.Image.open.")
    return model_rgb(upright(image))


def _font(size: int, bold: bool = False) -> ImageFont.ImageFont:
    """A scalable font of `size` pixels: DejaVu Sans where installed (wide Unicode coverage), else Pillow's
    built-in scalable font, else the fixed bitmap font when Pillow has no FreeType."""
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", size)
    except OSError:
        pass
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _text_width(font, text: str) -> float:
    return font.getlength(text) if hasattr(font, "getlength") else font.getbbox(text)[2]


def _wrap(text: str, font, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; over-long words are cut; past `max_lines` the last line ends in '…'."""
    lines, line = [], ""
    for word in text.split():
        while _text_width(font, word) > width and len(word) > 1:  # a word wider than the line: cut it
            cut = max(1, int(len(word) * width / _text_width(font, word)) - 1)
            lines, line, word = lines + ([line] if line else []) + [word[:cut]], "", word[cut:]
        candidate = f"{line} {word}".strip()
        if line and _text_width(font, candidate) > width:
            lines, line = lines + [line], word
        else:
            line = candidate
    lines += [line] if line else []
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [lines[max_lines - 1].rstrip() + " …"]
    return lines or [""]


def _check_result(result) -> list[dict]:
    """The result's objects, after checking every field the drawing reads; ValueError names a missing one."""
    if not isinstance(result, dict):
        raise TypeError(f"result must be the dict of pipe(image, explain=True), got {type(result).__name__}.")
    for field in REQUIRED_FIELDS:
        if result.get(field) is None:
            raise ValueError(f"result[{field!r}] is missing or None; pass the output of pipe(image, explain=True).")
    for index, item in enumerate(result["objects"]):
        for field in REQUIRED_OBJECT_FIELDS:
            if not isinstance(item, dict) or item.get(field) is None:
                raise ValueError(f"result['objects'][{index}][{field!r}] is missing or None; each object needs "
                                 f"{', '.join(REQUIRED_OBJECT_FIELDS)}.")
        if len(item["box"]) != 4 or not all(math.isfinite(float(v)) for v in item["box"]):
            raise ValueError(f"result['objects'][{index}]['box'] = {item['box']!r}; expected 4 finite numbers x0, y0, x1, y1.")
        if not math.isfinite(float(item["similarity"])):
            raise ValueError(f"result['objects'][{index}]['similarity'] = {item['similarity']!r} is not a finite number.")
    return list(result["objects"])


def _display_scale(width: int, height: int, max_size: int | None) -> float:
    """Factor from original to drawn pixels: shrink to `max_size`, or enlarge a narrow image for legibility."""
    if max_size is not None and max(width, height) > max_size:
        return max_size / max(width, height)
    if width < MIN_DISPLAY_WIDTH:  # a whole factor: every pixel becomes an equal square, no fake-looking jaggies
        return float(max(1, min(math.ceil(MIN_DISPLAY_WIDTH / width), MAX_ENLARGED_SIDE // max(width, height))))
    return 1.0


def _header(result: dict, objects: list[dict], width: int, text_px: int) -> Image.Image:
    """Banner above the image: the verdict line on a coloured strip, then caption, least aligned, not found."""
    font, pad = _font(text_px), max(4, text_px // 2)
    unsure = result.get("verdict") == "unsure"  # inside the checkpoint's abstention band
    verdict = (f"{'UNSURE' if unsure else 'FAKE' if result['is_fake'] else 'REAL'}"
               f"  p(fake)={float(result['fake_probability']):.2f}  threshold {float(result['threshold']):.2f}")
    if unsure and result.get("unsure_band"):
        verdict += f"  band {float(result['unsure_band'][0]):.2f}-{float(result['unsure_band'][1]):.2f}"
    verdict_px = round(text_px * 1.4)
    while verdict_px > 10 and _text_width(_font(verdict_px, bold=True), verdict) > width - 2 * pad:
        verdict_px -= 1  # the verdict stays on one line: shrink it on narrow pictures rather than wrap it
    verdict_font = _font(verdict_px, bold=True)
    lines = _wrap(f'Caption: "{result["caption"]}"', font, width - 2 * pad, MAX_CAPTION_LINES)
    if objects:
        worst = min(objects, key=lambda item: float(item["similarity"]))
        lines += _wrap(f"Least aligned object: {worst['noun']} (similarity {float(worst['similarity']):.2f})",
                       font, width - 2 * pad, 2)
    else:
        lines += ["No object of the caption was found in the image."]
    if result.get("unfound_nouns"):
        lines += _wrap("Not found in the image: " + ", ".join(map(str, result["unfound_nouns"])), font, width - 2 * pad, 2)
    for line in summary_lines(result.get("provenance"), hint=False)[:1]:  # beside the verdict, never in its place
        lines += _wrap(line[0].upper() + line[1:], font, width - 2 * pad, 2)
    line_px, verdict_px = round(text_px * 1.3), round(verdict_px * 1.3) + 2 * pad
    banner = Image.new("RGB", (width, verdict_px + pad + line_px * len(lines) + pad), PAPER)
    draw = ImageDraw.Draw(banner)
    draw.rectangle((0, 0, width - 1, verdict_px - 1),
                   fill=UNSURE_BACKGROUND if unsure else VERDICT_BACKGROUND[bool(result["is_fake"])])
    draw.text((pad, pad), verdict, font=verdict_font, fill=PAPER)
    for row, line in enumerate(lines):
        draw.text((pad, verdict_px + pad + row * line_px), line, font=font, fill=INK)
    return banner


def _footer(similarities: list[float], width: int, text_px: int) -> Image.Image:
    """Legend below the image: the colour scale from least to best aligned, with this image's extremes."""
    font, pad = _font(text_px), max(4, text_px // 2)
    line_px, bar_px = round(text_px * 1.3), max(6, text_px)
    bar_width = width - 2 * pad
    note = _wrap("Box colour: image-text similarity relative to this image's other objects, not the verdict.",
                 font, bar_width, 3)
    footer = Image.new("RGB", (width, pad + bar_px + pad + (1 + len(note)) * line_px + pad), PAPER)
    draw = ImageDraw.Draw(footer)
    for x in range(bar_width):  # one column per pixel: a continuous gradient at any size
        draw.line((pad + x, pad, pad + x, pad + bar_px), fill=scale_color(x / max(1, bar_width - 1)))
    y = pad + bar_px + pad // 2
    if similarities:
        left, right = f"least aligned {min(similarities):.2f}", f"best aligned {max(similarities):.2f}"
    else:
        left, right = "least aligned", "best aligned"
    draw.text((pad, y), left, font=font, fill=INK)
    draw.text((width - pad - _text_width(font, right), y), right, font=font, fill=INK)
    for row, line in enumerate(note, start=1):
        draw.text((pad, y + row * line_px), line, font=font, fill=INK)
    return footer


def _contrast(color: RGB) -> RGB:
    """Black or white, whichever reads better on `color`: the halo around a box and the text of its tag."""
    return INK if 0.2126 * color[0] + 0.7152 * color[1] + 0.0722 * color[2] > 128 else PAPER


def _draw_box(draw, rect, color: RGB, line_width: int) -> None:
    """A box outline of `line_width` pixels inside `rect`, with a contrasting halo on both sides of it."""
    halo = max(1, line_width // 2)
    x0, y0, x1, y1 = rect
    draw.rectangle((x0 - halo, y0 - halo, x1 + halo, y1 + halo), outline=_contrast(color), width=line_width + 2 * halo)
    draw.rectangle(rect, outline=color, width=line_width)


def _overlaps(first, second) -> bool:
    return first[0] <= second[2] and second[0] <= first[2] and first[1] <= second[3] and second[1] <= first[3]


def _draw_tag(draw, rect, color: RGB, label: str, font, line_width: int, bounds, taken: list) -> tuple:
    """The box's tag, at its left edge: above it, else inside its top, in the first place no tag of `taken`
    holds (detectors often give two nouns one box); returns and records its rectangle."""
    pad = max(1, line_width // 2) + 1
    left, top, right, bottom = font.getbbox(label)
    tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
    tag_x = min(max(rect[0] - pad, bounds[0]), max(bounds[0], bounds[2] - tag_w))
    above, step = rect[1] - pad - tag_h, tag_h + 1
    # Free places, nearest first: stacked upwards above the box, else downwards from just inside its top.
    candidates = [*range(above, bounds[1] - 1, -step), *range(rect[1] + line_width, bounds[3] - tag_h + 1, step)]
    free = (y for y in candidates if not any(_overlaps((tag_x, y, tag_x + tag_w, y + tag_h), other) for other in taken))
    tag_y = next(free, above if above >= bounds[1] else rect[1] + line_width)  # crowded: inside the box's top
    taken.append((tag_x, tag_y, tag_x + tag_w, tag_y + tag_h))
    draw.rectangle((tag_x, tag_y, tag_x + tag_w, tag_y + tag_h), fill=color, outline=_contrast(color))
    draw.text((tag_x + pad - left, tag_y + pad - top), label, font=font, fill=_contrast(color))
    return tag_x, tag_y, tag_x + tag_w, tag_y + tag_h


def _map_box(box, scale: float, offset: tuple[int, int], size: tuple[int, int]):
    """An original-pixel box clipped to the image and mapped to canvas pixels; None when nothing is left."""
    x0, x1 = sorted(float(v) for v in (box[0], box[2]))
    y0, y1 = sorted(float(v) for v in (box[1], box[3]))
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, size[0]), min(y1, size[1])
    if x1 <= x0 or y1 <= y0:
        return None
    return (offset[0] + math.floor(x0 * scale), offset[1] + math.floor(y0 * scale),
            offset[0] + max(math.floor(x0 * scale), math.ceil(x1 * scale) - 1),
            offset[1] + max(math.floor(y0 * scale), math.ceil(y1 * scale) - 1))


def draw_explanation(image: Image.Image, result: dict, max_size: int | None = None) -> Image.Image:
    """Return a new RGB picture: verdict banner, the image with each object's box and tag, colour legend.

    Args:
        image: the PIL image that was classified (any mode, any size); boxes are in its pixels.
        result: one image's output of `pipe(image, explain=True)`.
        max_size: if given, images whose longer side exceeds it are shrunk to it first (for web display).
    The returned image's `info["layout"]` holds `scale`, `offset` (x, y of the image's top-left corner in
    the picture), `image_size` (drawn size) and per object (input order) `box` (canvas pixels, or None when
    it lies outside the image), `color`, `line_width`, `emphasised` and `tag` (its rectangle, or None).
    """
    objects = _check_result(result)
    rgb = to_rgb(image)
    scale = _display_scale(*rgb.size, max_size)
    drawn = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                       Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR) if scale != 1 else rgb
    width = max(drawn.width, MIN_DISPLAY_WIDTH)
    text_px, line_width = max(13, round(width / 40)), max(2, round(width / 300))
    similarities = [float(item["similarity"]) for item in objects]
    header, footer = _header(result, objects, width, text_px), _footer(similarities, width, text_px)
    offset = ((width - drawn.width) // 2, header.height)
    canvas = Image.new("RGB", (width, header.height + drawn.height + footer.height), PAPER)
    canvas.paste(header, (0, 0))
    canvas.paste(drawn, offset)
    canvas.paste(footer, (0, offset[1] + drawn.height))
    draw, tag_font = ImageDraw.Draw(canvas), _font(max(12, round(text_px * 0.9)), bold=True)
    worst = min(range(len(objects)), key=similarities.__getitem__) if objects else None
    colors = similarity_colors(similarities)
    bounds = (offset[0], offset[1], offset[0] + drawn.width - 1, offset[1] + drawn.height - 1)
    layout_objects = [{"box": _map_box(item["box"], scale, offset, rgb.size), "color": color, "emphasised": i == worst,
                       "line_width": line_width * (2 if i == worst else 1), "tag": None}
                      for i, (item, color) in enumerate(zip(objects, colors))]
    # Best aligned first, least aligned last, so the emphasised box ends up on top; all tags over all boxes.
    order = [i for i in sorted(range(len(objects)), key=lambda j: -similarities[j]) if layout_objects[i]["box"]]
    for i in order:
        _draw_box(draw, layout_objects[i]["box"], layout_objects[i]["color"], layout_objects[i]["line_width"])
    taken = []  # the least aligned object's tag is placed first, so it keeps its place by its box
    for i in reversed(order):
        entry = layout_objects[i]
        label = f"{objects[i]['noun']} {similarities[i]:.2f}" + (" · least aligned" if entry["emphasised"] else "")
        entry["tag"] = _draw_tag(draw, entry["box"], entry["color"], label, tag_font, entry["line_width"], bounds, taken)
    canvas.info["layout"] = {"scale": scale, "offset": offset, "image_size": drawn.size, "objects": layout_objects}
    return canvas
