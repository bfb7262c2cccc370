"""ItemForImageClassification: features against a hand computation, fusion options, heads, save/load, freezing."""

import pytest
import torch
import torch.nn.functional as F

from helpers import noise_images

from item_detector.modeling_item import ItemForImageClassification, misalignment_features
from item_detector.processing_item import ItemProcessor
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoTokenizer

ATOL = 1e-5

# Three images: two objects found + one noun without a box + one zero-area box; one object; none at all.
CAPTIONS = ["a man riding a bike near a tree on the road", "a cat on a table", "it is."]
NOUNS = [["man", "bike", "tree", "road"], ["cat"], []]
BOXES = [[[4, 4, 36, 30], [10, 20, 50, 44], None, [5, 5, 5, 9]], [[8, 2, 40, 40]], []]
EXPECTED_MASK = [[True, True, False, False], [True, False, False, False], [False, False, False, False]]


def make_images(n=3, size=(64, 48), seed=0):
    return noise_images(n, size, seed)


# ---------------------------------------------------------------------------------------------- hand computation
def hand_embeddings(backbone, processor, image, caption, nouns, boxes):
    """(1 + K, D) image and text embeddings computed one crop / one text at a time with the backbone's own
    `get_image_features` / `get_text_features`, plus the (K,) object mask. Zeros in empty slots."""
    slots = 1 + processor.max_objects
    pairs = [(image, caption)]
    mask = []
    for j in range(processor.max_objects):
        box = boxes[j] if j < len(boxes) else None
        ok = box is not None and box[2] > box[0] and box[3] > box[1]
        mask.append(ok)
        pairs.append((image.crop(tuple(box)), nouns[j]) if ok else None)
    dim = None
    image_rows, text_rows = [], []
    with torch.no_grad():
        for pair in pairs:
            if pair is None:
                image_rows.append(None)
                text_rows.append(None)
                continue
            crop, text = pair
            pixels = processor.image_processor(images=[crop], return_tensors="pt")
            image_out = backbone.get_image_features(**pixels).pooler_output[0]
            tokens = processor.tokenizer(
                [text], padding="max_length", truncation=True, max_length=processor.text_max_length, return_tensors="pt"
            )
            text_out = backbone.get_text_features(**tokens).pooler_output[0]
            image_rows.append(image_out / image_out.norm())
            text_rows.append(text_out / text_out.norm())
            dim = image_out.shape[-1]
    zero = torch.zeros(dim)
    image_embeds = torch.stack([zero if row is None else row for row in image_rows])
    text_embeds = torch.stack([zero if row is None else row for row in text_rows])
    assert image_embeds.shape[0] == slots
    return image_embeds, text_embeds, torch.tensor(mask)


def hand_features(image_embeds, text_embeds, mask, distance_type, fusion):
    """Features (F,) and similarities (1 + K,) of one image, written out slot by slot."""
    pair_features, similarities = [], []
    for slot in range(image_embeds.shape[0]):
        used = slot == 0 or bool(mask[slot - 1])
        cosine = float(image_embeds[slot] @ text_embeds[slot])
        similarities.append(cosine if used else 0.0)
        difference = image_embeds[slot] - text_embeds[slot]
        pair = {
            "difference": difference,
            "cosine": torch.tensor([cosine]),
            "both": torch.cat([difference, torch.tensor([cosine])]),
        }[distance_type]
        pair_features.append((pair, used))
    global_part = pair_features[0][0]
    locals_used = [pair for pair, used in pair_features[1:] if used]
    local_part = torch.stack(locals_used).mean(0) if locals_used else torch.zeros_like(global_part)
    features = {
        "sum": global_part + local_part,
        "concat": torch.cat([global_part, local_part]),
        "global": global_part,
        "local": local_part,
    }[fusion]
    return features, torch.tensor(similarities)


def check_against_hand(model, processor, images, captions=CAPTIONS, nouns=NOUNS, boxes=BOXES, expected_mask=EXPECTED_MASK):
    """Run the model on the processor's output and compare every intermediate with the hand computation."""
    model.eval()
    inputs = processor(images=images, captions=captions, nouns=nouns, boxes=boxes, return_tensors="pt")
    k = processor.max_objects
    mask = inputs["object_mask"]
    want_mask = torch.tensor([row + [False] * (k - len(row)) for row in expected_mask])[:, :k]
    assert torch.equal(mask, want_mask)

    hand = [hand_embeddings(model.backbone, processor, image, c, n, b) for image, c, n, b in zip(images, captions, nouns, boxes)]
    hand_image = torch.stack([h[0] for h in hand])
    hand_text = torch.stack([h[1] for h in hand])
    assert torch.equal(torch.stack([h[2] for h in hand]), mask)

    embeddings = model.forward_features(**inputs)
    torch.testing.assert_close(embeddings.image_embeds, hand_image, atol=ATOL, rtol=0)
    torch.testing.assert_close(embeddings.text_embeds, hand_text, atol=ATOL, rtol=0)

    config = model.config
    hand_out = [hand_features(hand_image[i], hand_text[i], mask[i], config.distance_type, config.fusion) for i in range(len(images))]
    want_features = torch.stack([h[0] for h in hand_out])
    want_similarities = torch.stack([h[1] for h in hand_out])
    assert want_features.shape == (len(images), config.head_input_dim)

    features, similarities = misalignment_features(hand_image, hand_text, mask, config.distance_type, config.fusion)
    torch.testing.assert_close(features, want_features, atol=ATOL, rtol=0)
    torch.testing.assert_close(similarities, want_similarities, atol=ATOL, rtol=0)

    seen = {}
    handle = model.head.register_forward_pre_hook(lambda module, args: seen.setdefault("features", args[0].detach().clone()))
    try:
        with torch.no_grad():
            output = model(**inputs)
    finally:
        handle.remove()
    torch.testing.assert_close(seen["features"], want_features, atol=ATOL, rtol=0)
    torch.testing.assert_close(output.features, want_features, atol=ATOL, rtol=0)
    torch.testing.assert_close(output.similarities, want_similarities, atol=ATOL, rtol=0)
    torch.testing.assert_close(output.image_embeds, hand_image, atol=ATOL, rtol=0)
    assert torch.equal(output.object_mask, mask)
    with torch.no_grad():
        torch.testing.assert_close(output.logits, model.head(want_features), atol=ATOL, rtol=0)
    assert output.logits.shape == (len(images), 2)
    assert torch.isfinite(output.logits).all()
    return inputs, output, want_features


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def clip_parts(tiny_parts):
    path = tiny_parts["backbones"]["clip"]
    backbone = AutoModel.from_pretrained(path).eval()
    processor = ItemProcessor(AutoImageProcessor.from_pretrained(path), AutoTokenizer.from_pretrained(path), max_objects=4)
    return backbone, processor




# ---------------------------------------------------------------------------------------------- tests
def test_checkpoint_features_match_hand_computation(loaded):
    model, processor = loaded
    assert processor.max_objects == 8  # the default checkpoint: K = 8, only the first slots are used
    inputs, output, features = check_against_hand(model, processor, make_images())
    # zero objects: the local part is 0, so with fusion "sum" the features are the global difference alone
    global_difference = output.image_embeds[2, 0] - output.text_embeds[2, 0]
    torch.testing.assert_close(output.features[2], global_difference, atol=ATOL, rtol=0)
    assert (output.similarities[2, 1:] == 0).all()
    assert (output.image_embeds[2, 1:] == 0).all() and (output.text_embeds[2, 1:] == 0).all()
    # similarities really are the cosine of l2-normalised embeddings (unit norms in used slots)
    norms = output.image_embeds.norm(dim=-1)
    used = torch.cat([torch.ones(3, 1, dtype=torch.bool), output.object_mask], dim=1)
    torch.testing.assert_close(norms[used], torch.ones(int(used.sum())), atol=ATOL, rtol=0)


@pytest.mark.parametrize("distance_type", ["difference", "cosine", "both"])
@pytest.mark.parametrize("fusion", ["sum", "concat", "global", "local"])
def test_every_option_matches_hand_computation(clip_parts, distance_type, fusion):
    backbone, processor = clip_parts
    torch.manual_seed(0)
    model = ItemForImageClassification.from_backbone(backbone, distance_type=distance_type, fusion=fusion, head_hidden_size=16)
    assert model.head.dense.in_features == model.config.head_input_dim
    inputs, output, features = check_against_hand(model, processor, make_images(seed=1))
    if fusion == "local":
        assert torch.equal(output.features[2], torch.zeros_like(output.features[2]))  # zero objects -> zero features
    if fusion == "concat":
        half = model.config.pair_feature_dim
        assert torch.equal(output.features[2, half:], torch.zeros(half))


@pytest.mark.parametrize("config_options", [{"distance_type": "cosine", "fusion": "concat"}, {"distance_type": "both", "fusion": "local"}])
def test_built_checkpoint_options_match_hand_computation(build_tiny_checkpoint, config_options):
    folder = build_tiny_checkpoint(config_options=config_options, max_objects=4)
    model = ItemForImageClassification.from_pretrained(folder)
    processor = ItemProcessor.from_pretrained(folder)
    assert (model.config.distance_type, model.config.fusion) == (config_options["distance_type"], config_options["fusion"])
    assert processor.max_objects == 4
    check_against_hand(model, processor, make_images(seed=2))


def test_backbone_embeddings_are_the_backbones_own(clip_parts):
    """forward_features copies the backbone weights from `from_backbone` exactly."""
    backbone, processor = clip_parts
    model = ItemForImageClassification.from_backbone(backbone)
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], tensor), name


def test_misalignment_features_by_numbers():
    image = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])  # (1, 3, 2)
    text = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]])
    mask = torch.tensor([[True, True]])
    features, similarities = misalignment_features(image, text, mask, "difference", "sum")
    # global (1, -1) + mean((0, 0), (-0.4, 0.8)) = (0.8, -0.6)
    torch.testing.assert_close(features, torch.tensor([[0.8, -0.6]]))
    torch.testing.assert_close(similarities, torch.tensor([[0.0, 1.0, 0.6]]))
    features, _ = misalignment_features(image, text, torch.tensor([[False, True]]), "cosine", "concat")
    torch.testing.assert_close(features, torch.tensor([[0.0, 0.6]]))
    features, similarities = misalignment_features(image, text, torch.tensor([[False, False]]), "both", "local")
    torch.testing.assert_close(features, torch.zeros(1, 3))
    torch.testing.assert_close(similarities, torch.tensor([[0.0, 0.0, 0.0]]))


def test_cached_embeddings_give_the_same_logits(loaded):
    model, processor = loaded
    inputs = processor(images=make_images(), captions=CAPTIONS, nouns=NOUNS, boxes=BOXES)
    with torch.no_grad():
        full = model(**inputs)
        cached = model(image_embeds=full.image_embeds, text_embeds=full.text_embeds, object_mask=inputs["object_mask"])
    torch.testing.assert_close(cached.logits, full.logits, atol=0, rtol=0)
    with pytest.raises(ValueError, match="object_mask"):
        model(image_embeds=full.image_embeds, text_embeds=full.text_embeds)


def test_forward_features_and_forward_head_each_stand_alone(loaded):
    """timm's split: features first (frozen), head last (trained); pre_logits gives what the MLP sees."""
    model, processor = loaded
    inputs = processor(images=make_images(), captions=CAPTIONS, nouns=NOUNS, boxes=BOXES)
    with torch.no_grad():
        full = model(**inputs)
        embeddings = model.forward_features(**inputs)
        logits = model.forward_head(embeddings.image_embeds, embeddings.text_embeds, inputs["object_mask"])
        features = model.forward_head(embeddings.image_embeds, embeddings.text_embeds, inputs["object_mask"], pre_logits=True)
    torch.testing.assert_close(logits, full.logits, atol=0, rtol=0)
    torch.testing.assert_close(features, full.features, atol=0, rtol=0)
    assert features.shape == (3, model.config.head_input_dim)


def test_labels_give_cross_entropy_and_only_head_gradients(loaded):
    model, processor = loaded
    inputs = processor(images=make_images(), captions=CAPTIONS, nouns=NOUNS, boxes=BOXES)
    labels = torch.tensor([0, 1, 1])
    output = model(**inputs, labels=labels)
    torch.testing.assert_close(output.loss, F.cross_entropy(output.logits, labels))
    output.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.head.parameters())
    assert all(p.grad is None for p in model.backbone.parameters())
    model.zero_grad(set_to_none=True)


def test_return_dict_false_gives_a_tuple(loaded):
    model, processor = loaded
    inputs = processor(images=make_images(1), captions=["a man"], nouns=[["man"]], boxes=[[[1, 1, 20, 20]]])
    with torch.no_grad():
        as_tuple = model(**inputs, return_dict=False)
        as_dict = model(**inputs)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], as_dict.logits)


def test_missing_or_mismatched_inputs_raise(loaded):
    model, processor = loaded
    inputs = processor(images=make_images(2), captions=["a man", "a cat"], nouns=[[], []], boxes=[[], []])
    with pytest.raises(ValueError, match="input_ids"):
        model(pixel_values=inputs["pixel_values"], object_mask=inputs["object_mask"])
    with pytest.raises(ValueError, match="Shapes do not match"):
        model(pixel_values=inputs["pixel_values"][:1], input_ids=inputs["input_ids"], object_mask=inputs["object_mask"])
    with pytest.raises(ValueError, match="Shapes do not match"):
        model(
            pixel_values=inputs["pixel_values"],
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            object_mask=inputs["object_mask"][:, :3],
        )


def test_backbone_frozen_and_stays_in_eval_mode(loaded):
    model, _ = loaded
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    try:
        assert model.head.training
        assert not model.backbone.training
        assert not any(module.training for module in model.backbone.modules())
    finally:
        model.eval()


def test_save_load_round_trip(checkpoint, tmp_path):
    model, processor = ItemForImageClassification.from_pretrained(checkpoint), ItemProcessor.from_pretrained(checkpoint)
    torch.manual_seed(3)
    with torch.no_grad():  # make the head distinct from any fresh initialisation
        for p in model.head.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    inputs = processor(images=make_images(), captions=CAPTIONS, nouns=NOUNS, boxes=BOXES)
    with torch.no_grad():
        reference = model(**inputs).logits
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "modeling_item.py").is_file() and (tmp_path / "configuration_item.py").is_file()

    for loaded_model in (
        ItemForImageClassification.from_pretrained(tmp_path),
        AutoModelForImageClassification.from_pretrained(tmp_path, trust_remote_code=True),
    ):
        assert type(loaded_model).__name__ == "ItemForImageClassification"
        assert all(not p.requires_grad for p in loaded_model.backbone.parameters())
        assert all(p.requires_grad for p in loaded_model.head.parameters())
        assert not loaded_model.training
        with torch.no_grad():
            logits = loaded_model(**inputs).logits
        assert torch.equal(logits, reference)  # bit-identical
