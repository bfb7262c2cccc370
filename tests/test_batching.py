"""Batching changes no result, the text-padding cut changes no embedding, and the benchmark runs end to end (tiny nets)."""


import numpy as np
import torch
from PIL import Image


# Eight images of different sizes with their own captions, nouns and boxes: no object, boxes that miss the
# image or cover less than a pixel, the full K = 8 objects, captions of very different lengths (the text
# padding cut to the longest text of the batch then differs between batch 1 and batch 8).
SIZES = [(64, 48), (48, 64), (80, 80), (33, 90), (100, 40), (64, 64), (50, 70), (90, 60)]
ANNOTATIONS = [
    ("a man riding a bike on the road", ["man", "bike", "road"], [[0, 0, 30, 40], [10, 5, 60, 45], None]),
    ("a cat", [], []),
    ("a dog sitting at a table with a cup of coffee and a cake in front of a tree",
     ["dog", "table", "cup", "coffee", "cake", "front", "tree", "picture"],
     [[0, 0, 40, 40], [5, 5, 75, 75], [10, 10, 20, 20], [0, 0, 80, 80], [60, 60, 79, 79], [1, 1, 2, 2],
      [30, 0, 80, 50], [0, 40, 40, 80]]),
    ("a rocket", ["rocket"], [[200, 200, 300, 300]]),  # outside the image: slot stays empty
    ("a woman and a red car", ["woman", "car"], [[0, 0, 50, 40], [50.4, 10.2, 99.7, 39.9]]),
    ("an astronaut with a flag", ["astronaut", "flag"], [None, [3, 3, 3, 3]]),  # no area: empty slot
    ("a person", ["person"], [[5, 5, 45, 65]]),
    ("a street with a car and a tree", ["street", "car", "tree"], [[0, 30, 90, 60], [20, 20, 50, 50], [60, 0, 90, 40]]),
]


def _images():
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]




def _run(model, processor, images, annotations):
    captions = [caption for caption, _, _ in annotations]
    nouns = [list(names) for _, names, _ in annotations]
    boxes = [list(image_boxes) for _, _, image_boxes in annotations]
    annotations = processor.annotate(images, captions=captions, nouns=nouns, boxes=boxes)
    inputs = processor.encode(images, annotations)
    found = {key: [getattr(a, key) for a in annotations] for key in ("caption", "nouns", "boxes", "box_scores")}
    with torch.no_grad():
        output = model(**inputs)
    return found, inputs, output


def test_batch_of_eight_equals_eight_batches_of_one(loaded):
    model, processor = loaded
    images = _images()
    together, inputs8, output8 = _run(model, processor, images, ANNOTATIONS)
    # The networks were never needed: every annotation was given.
    assert processor._networks.captioner is None and processor._networks.detector is None
    probabilities8 = output8.logits.softmax(-1)[:, 1]
    assert output8.object_mask.sum().item() == 2 + 0 + 8 + 0 + 2 + 0 + 1 + 3  # None / off-image / empty boxes dropped
    for i in range(len(images)):
        alone, inputs1, output1 = _run(model, processor, [images[i]], [ANNOTATIONS[i]])
        for key in ("caption", "nouns", "boxes", "box_scores"):
            assert alone[key][0] == together[key][i], (i, key)
        assert torch.equal(inputs1["object_mask"][0], inputs8["object_mask"][i])
        assert torch.equal(inputs1["pixel_values"][0], inputs8["pixel_values"][i])  # the same crops, bit for bit
        assert torch.equal(inputs1["input_ids"][0], inputs8["input_ids"][i])
        probability1 = output1.logits.softmax(-1)[0, 1]
        assert abs(float(probability1) - float(probabilities8[i])) < 1e-4, i
        assert torch.allclose(output1.similarities[0], output8.similarities[i], atol=1e-4), i
        assert torch.allclose(output1.image_embeds[0], output8.image_embeds[i], atol=1e-4), i


def test_cutting_text_padding_changes_no_embedding(loaded):
    model, processor = loaded
    images = _images()[:3]
    inputs = processor(images=images, captions=[a[0] for a in ANNOTATIONS[:3]], nouns=[a[1] for a in ANNOTATIONS[:3]],
                       boxes=[a[2] for a in ANNOTATIONS[:3]])
    assert inputs["input_ids"].shape[-1] == 77 and inputs["attention_mask"][..., 40:].sum() == 0
    slot_mask = torch.cat([torch.ones_like(inputs["object_mask"][:, :1]), inputs["object_mask"]], dim=1).bool()
    with torch.no_grad():
        features = model.forward_features(inputs["pixel_values"], inputs["input_ids"], inputs["object_mask"],
                                          attention_mask=inputs["attention_mask"])
        # The backbone's own text features of every used slot at the full 77 tokens, one text at a time.
        used = slot_mask.reshape(-1)
        ids, mask = inputs["input_ids"].flatten(0, 1)[used], inputs["attention_mask"].flatten(0, 1)[used]
        uncut = torch.cat([model.backbone.get_text_features(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1]).pooler_output
                           for i in range(len(ids))])
    assert features.text_embeds.abs().sum() > 0
    assert torch.allclose(features.text_embeds.flatten(0, 1)[used], torch.nn.functional.normalize(uncut, dim=-1), atol=1e-5)


def test_features_computed_without_grad_can_train_the_head(loaded):
    """forward_features runs the backbone in inference mode; its outputs must still be usable in autograd."""
    model, processor = loaded
    images = _images()[:2]
    inputs = processor(images=images, captions=[a[0] for a in ANNOTATIONS[:2]], nouns=[a[1] for a in ANNOTATIONS[:2]],
                       boxes=[a[2] for a in ANNOTATIONS[:2]])
    with torch.no_grad():
        features = model.forward_features(inputs["pixel_values"], inputs["input_ids"], inputs["object_mask"],
                                          attention_mask=inputs["attention_mask"])
    assert not torch.is_inference(features.image_embeds)
    model.head.zero_grad(set_to_none=True)
    output = model(image_embeds=features.image_embeds, text_embeds=features.text_embeds,
                   object_mask=inputs["object_mask"], labels=torch.tensor([0, 1]))
    output.loss.backward()
    assert model.head.dense.weight.grad is not None and model.head.dense.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())
