"""`draw_explanation`: boxes land on the objects, colours follow similarity within the image, the least
aligned object stands out, the verdict comes from the head, and any image mode or size draws."""

import math
import time

import numpy as np
import pytest
from PIL import Image

from item_detector.visualization_item import (
    MIN_DISPLAY_WIDTH,
    VERDICT_BACKGROUND,
    draw_explanation,
    scale_color,
    similarity_colors,
)

GREY = (128, 128, 128)


def explain_result(objects, is_fake=True, fake_probability=0.93, threshold=0.5, caption="a dog on a sofa"):
    """A result shaped like `pipe(image, explain=True)`, least aligned object first as the pipeline sorts it."""
    objects = [{"noun": noun, "box": list(box), "box_score": 0.9, "similarity": similarity}
               for noun, box, similarity in objects]
    return {
        "labels": [{"label": "fake", "score": fake_probability}, {"label": "real", "score": 1 - fake_probability}],
        "fake_probability": fake_probability, "is_fake": is_fake, "threshold": threshold, "caption": caption,
        "global_similarity": 0.2, "objects": sorted(objects, key=lambda item: item["similarity"]),
        "unfound_nouns": ["rug"],
    }


def canvas_point(layout, x, y):
    """Original-image pixel (x, y) -> the picture's pixel, from the layout's scale and offset."""
    return layout["offset"][0] + math.floor(x * layout["scale"]), layout["offset"][1] + math.floor(y * layout["scale"])


def canvas_far_edge(layout, x, y):
    """The last picture pixel covered by original pixels up to the edge coordinate (x, y) of a box."""
    return (layout["offset"][0] + math.ceil(x * layout["scale"]) - 1,
            layout["offset"][1] + math.ceil(y * layout["scale"]) - 1)


def object_by_noun(result, layout, noun):
    index = next(i for i, item in enumerate(result["objects"]) if item["noun"] == noun)
    return result["objects"][index], layout["objects"][index]


@pytest.mark.parametrize("size", [(200, 150), (64, 48)], ids=["native", "enlarged-thumbnail"])
def test_boxes_are_drawn_on_the_objects_in_their_similarity_colour(size):
    width, height = size
    unit = width / 200  # the same two boxes, in the image's own pixels
    boxes = {"dog": [10 * unit, 20 * unit, 90 * unit, 130 * unit], "sofa": [110 * unit, 30 * unit, 190 * unit, 120 * unit]}
    result = explain_result([("dog", boxes["dog"], 0.31), ("sofa", boxes["sofa"], 0.12)])
    picture = draw_explanation(Image.new("RGB", size, GREY), result)
    layout = picture.info["layout"]
    if width < MIN_DISPLAY_WIDTH:
        assert picture.width >= MIN_DISPLAY_WIDTH and layout["scale"] > 1
    colors = dict(zip([item["noun"] for item in result["objects"]],
                      similarity_colors([item["similarity"] for item in result["objects"]])))
    for noun, (x0, y0, x1, y1) in boxes.items():
        _, drawn = object_by_noun(result, layout, noun)
        half_line = drawn["line_width"] // 2
        middle_y = (y0 + y1) / 2
        left = canvas_point(layout, x0, middle_y)
        right = canvas_far_edge(layout, x1, y1)[0]
        assert picture.getpixel((left[0] + half_line, left[1])) == colors[noun]
        assert picture.getpixel((right - half_line, left[1])) == colors[noun]
        top = canvas_point(layout, (x0 + x1) / 2, y0)
        assert picture.getpixel((top[0], top[1] + half_line)) == colors[noun]
        centre = canvas_point(layout, (x0 + x1) / 2, middle_y)
        assert picture.getpixel(centre) == GREY, "boxes are outlines: the object itself stays visible"


def test_colours_follow_similarity_along_one_scale_relative_to_the_image():
    similarities = [0.30, -0.10, 0.20, 0.05]
    colors = similarity_colors(similarities)
    grid = [scale_color(step / 1000) for step in range(1001)]

    def position(color):
        return min(range(len(grid)), key=lambda i: sum((a - b) ** 2 for a, b in zip(grid[i], color))) / 1000

    positions = [position(color) for color in colors]
    order = sorted(range(len(similarities)), key=similarities.__getitem__)
    assert [positions[i] for i in order] == sorted(positions), "least aligned at the start of the scale"
    assert colors[order[0]] == scale_color(0.0) and colors[order[-1]] == scale_color(1.0)
    # Viridis lightness is monotonic: the order survives colour-blindness and grey-scale printing.
    lightness = [0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in colors]
    assert [lightness[i] for i in order] == sorted(lightness, reverse=True)
    # Relative, not absolute: shifting every similarity changes no colour; no value is "fake" by itself.
    assert similarity_colors([value + 0.5 for value in similarities]) == colors
    assert similarity_colors([0.2, 0.2]) == [scale_color(0.5)] * 2
    assert similarity_colors([]) == []


def test_least_aligned_object_is_emphasised_whatever_the_input_order():
    result = explain_result([("dog", [10, 20, 90, 130], 0.31), ("sofa", [110, 30, 190, 120], 0.12)])
    result["objects"].reverse()  # the drawer must not rely on the pipeline's sort
    picture = draw_explanation(Image.new("RGB", (200, 150), GREY), result)
    layout = picture.info["layout"]
    sofa, sofa_drawn = object_by_noun(result, layout, "sofa")
    _, dog_drawn = object_by_noun(result, layout, "dog")
    assert sofa_drawn["emphasised"] and not dog_drawn["emphasised"]
    assert sofa_drawn["line_width"] == 2 * dog_drawn["line_width"]
    # Just inside a normal line's width, the emphasised outline is still drawn; the other box's is not.
    inset = dog_drawn["line_width"] + 1
    sofa_left = canvas_point(layout, 110, 75)
    dog_left = canvas_point(layout, 10, 75)
    assert picture.getpixel((sofa_left[0] + inset, sofa_left[1])) == sofa_drawn["color"]
    assert picture.getpixel((dog_left[0] + inset, dog_left[1])) == GREY
    assert sofa_drawn["tag"] is not None


@pytest.mark.parametrize("is_fake, fake_probability, threshold", [(True, 0.30, 0.20), (False, 0.60, 0.70)])
def test_verdict_banner_comes_from_the_head_not_from_similarity(is_fake, fake_probability, threshold):
    result = explain_result([("dog", [10, 20, 90, 130], 0.9)], is_fake=is_fake,
                            fake_probability=fake_probability, threshold=threshold)
    picture = draw_explanation(Image.new("RGB", (200, 150), GREY), result)
    assert picture.getpixel((1, 1)) == VERDICT_BACKGROUND[is_fake]
    assert picture.info["layout"]["offset"][1] > 0, "the banner is added above the image, not drawn over it"


def rgba_transparent():
    return Image.new("RGBA", (40, 30), (255, 0, 0, 0))


def palette_with_transparency():
    image = Image.new("P", (40, 30), 3)
    image.info["transparency"] = 3
    return image


IMAGES = {
    "1": lambda: Image.new("1", (40, 30), 1),
    "L": lambda: Image.new("L", (40, 30), 90),
    "LA": lambda: Image.new("LA", (40, 30), (90, 255)),
    "P": lambda: Image.new("RGB", (40, 30), (10, 200, 30)).convert("P"),
    "P-transparent": palette_with_transparency,
    "RGBA-transparent": rgba_transparent,
    "CMYK": lambda: Image.new("CMYK", (40, 30), (0, 255, 255, 0)),
    "I;16": lambda: Image.fromarray(np.linspace(0, 4000, 40 * 30).reshape(30, 40).astype(np.uint16)),
    "I": lambda: Image.fromarray(np.linspace(-5e5, 5e5, 40 * 30).reshape(30, 40).astype(np.int32)),
    "F": lambda: Image.fromarray(np.linspace(-1.0, 2.0, 40 * 30).reshape(30, 40).astype(np.float32)),
}


@pytest.mark.parametrize("name", list(IMAGES))
def test_every_image_mode_draws_in_rgb(name):
    image = IMAGES[name]()
    picture = draw_explanation(image, explain_result([("dog", [5, 5, 20, 20], 0.1), ("cat", [22, 8, 38, 28], 0.2)]))
    assert picture.mode == "RGB"
    layout = picture.info["layout"]
    corner = canvas_point(layout, 39, 29)  # bottom right: no box there
    pixel = picture.getpixel(corner)
    if name.endswith("transparent"):
        assert pixel == (255, 255, 255), "transparent pixels are shown over white"
    if name in ("I;16", "I", "F"):  # high bit depths are drawn as the model saw them (rescaled, not clipped)
        from item_detector.images_item import load_image

        seen = load_image(image)
        assert pixel == seen.getpixel((39, 29)) and picture.getpixel(canvas_point(layout, 0, 0)) == seen.getpixel((0, 0))
        assert pixel != picture.getpixel(canvas_point(layout, 0, 0))


@pytest.mark.parametrize("size", [(1, 1), (64, 48), (3, 500), (6000, 4000)])
def test_any_size_draws_legibly_and_fast(size):
    image = Image.new("RGB", size, GREY)
    box = [0, 0, size[0] / 2, size[1] / 2]
    started = time.perf_counter()
    picture = draw_explanation(image, explain_result([("dog", box, 0.1), ("cat", [0, 0, size[0], size[1]], 0.2)]))
    assert time.perf_counter() - started < 5
    layout = picture.info["layout"]
    assert picture.width >= MIN_DISPLAY_WIDTH
    assert layout["image_size"][0] >= size[0] and layout["image_size"][1] >= size[1]
    assert max(layout["image_size"]) <= max(2048, *size), "a thin strip is not blown up without bound"
    if size[0] >= 6000:  # lines grow with the picture so they stay visible when it is shown small
        assert layout["objects"][0]["line_width"] >= 15


def test_exif_orientation_is_applied_as_the_pipeline_does(tmp_path):
    sideways = Image.new("RGB", (800, 400), GREY)
    exif = sideways.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": a phone photo taken upright
    sideways.save(tmp_path / "phone.jpg", exif=exif)
    picture = draw_explanation(Image.open(tmp_path / "phone.jpg"), explain_result([("dog", [10, 10, 390, 790], 0.1)]))
    assert picture.info["layout"]["image_size"] == (400, 800)
    assert picture.info["layout"]["objects"][0]["box"] is not None


def test_zero_objects_leave_the_image_untouched():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    result = explain_result([])
    result["unfound_nouns"] = ["dog", "sofa"]
    picture = draw_explanation(image, result)
    x, y = picture.info["layout"]["offset"]
    assert picture.info["layout"]["scale"] == 1
    assert np.array_equal(np.asarray(picture.crop((x, y, x + 400, y + 300))), np.asarray(image))


def test_long_caption_wraps_and_non_ascii_nouns_draw():
    caption = " ".join(["a very long caption about a café in München with a 猫 on a chair"] * 40)
    objects = [("café", [10, 10, 80, 80], 0.1), ("Straße", [90, 10, 190, 80], 0.2), ("猫", [10, 90, 80, 140], 0.3)]
    short = draw_explanation(Image.new("RGB", (200, 150), GREY), explain_result(objects, caption="a café"))
    long = draw_explanation(Image.new("RGB", (200, 150), GREY), explain_result(objects, caption=caption))
    assert long.width == short.width, "the caption wraps instead of widening the picture"
    assert short.height < long.height < short.height + 200, "a very long caption is cut after a few lines"


def test_boxes_partly_or_wholly_outside_the_image_are_clipped_or_skipped():
    result = explain_result([("dog", [-50, -40, 60, 50], 0.1), ("sofa", [500, 400, 600, 500], 0.2),
                             ("cat", [150, 100, 120, 90], 0.3)])  # corners given in the wrong order
    picture = draw_explanation(Image.new("RGB", (400, 300), GREY), result)
    layout = picture.info["layout"]
    x, y = layout["offset"]
    _, dog = object_by_noun(result, layout, "dog")
    _, sofa = object_by_noun(result, layout, "sofa")
    _, cat = object_by_noun(result, layout, "cat")
    assert picture.info["layout"]["scale"] == 1
    assert dog["box"] == (x, y, x + 59, y + 49)
    assert sofa["box"] is None
    assert cat["box"] == (x + 120, y + 90, x + 149, y + 99)


@pytest.mark.parametrize("field", ["fake_probability", "is_fake", "threshold", "caption", "objects"])
def test_missing_or_none_field_is_named(field):
    result = explain_result([("dog", [10, 20, 90, 130], 0.3)])
    result[field] = None
    with pytest.raises(ValueError, match=field):
        draw_explanation(Image.new("RGB", (200, 150)), result)
    del result[field]
    with pytest.raises(ValueError, match=field):
        draw_explanation(Image.new("RGB", (200, 150)), result)


@pytest.mark.parametrize("field, value", [("noun", None), ("box", None), ("similarity", None),
                                          ("box", [1, 2, 3]), ("similarity", float("nan"))])
def test_bad_object_field_is_named(field, value):
    result = explain_result([("dog", [10, 20, 90, 130], 0.3)])
    result["objects"][0][field] = value
    with pytest.raises(ValueError, match=rf"\['objects'\]\[0\]\['{field}'\]"):
        draw_explanation(Image.new("RGB", (200, 150)), result)


def test_not_an_image_is_a_type_error():
    with pytest.raises(TypeError, match="PIL"):
        draw_explanation(np.zeros((10, 10, 3), dtype=np.uint8), explain_result([]))


def test_result_of_the_real_pipeline_draws(checkpoint, sample_photos):
    from transformers import pipeline

    pipe = pipeline("image-classification", model=str(checkpoint), trust_remote_code=True)
    photo = sample_photos[0]
    result = pipe(str(photo), explain=True)
    image = Image.open(photo)
    picture = draw_explanation(image, result)
    layout = picture.info["layout"]
    assert layout["image_size"] == tuple(round(side * layout["scale"]) for side in image.size)
    assert len(layout["objects"]) == len(result["objects"])
    if result["objects"]:
        similarities = [item["similarity"] for item in result["objects"]]
        worst = similarities.index(min(similarities))
        assert [entry["emphasised"] for entry in layout["objects"]] == [i == worst for i in range(len(similarities))]


def test_detect_writes_one_explanation_picture_per_image_without_collisions(checkpoint, tmp_path, capsys):
    """`item detect --overlay DIR`: two folders both holding `a.jpg` give two pictures, named in the JSON."""
    import json

    from item_cli.cli import main

    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.random.default_rng(len(folder)).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / folder / "a.jpg")
    code = main(["detect", str(tmp_path / "one"), str(tmp_path / "two"), "--model", str(checkpoint), "--json",
                 "--overlay", str(tmp_path / "pictures"), "--device", "cpu"])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pictures = sorted((tmp_path / "pictures").glob("*.png"))
    assert len(records) == 2 and len(pictures) == 2 and {r["overlay"] for r in records} == {str(p) for p in pictures}
    for record in records:
        with Image.open(record["overlay"]) as picture:
            assert picture.width >= 384  # enlarged to a legible width, drawn with the verdict banner
