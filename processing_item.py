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

import os
import shutil
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from transformers import AutoModelForImageTextToText, AutoModelForZeroShotObjectDetection, AutoProcessor
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .annotation_item import (  # noqa: F401  (re-exported: the processor's public vocabulary)
    NOUN_MODES,
    SPACY_FALLBACKS,
    Box,
    ItemAnnotations,
    caption_images,
    check_box,
    clip_box,
    extract_nouns,
    ground_nouns,
    grounding_text,
    is_list_of_one,
    load_spacy,
    per_image_argument,
    token_scores_to_noun_scores,
)
from .images_item import limit_aspect_ratio, load_image, region_patch_mask
from .modeling_item import quantize_dynamic_int8

try:
    import torch
except ImportError:  # torch is required by the model; the processor can still be inspected without it
    torch = None

logger = logging.get_logger(__name__)

DEFAULT_CAPTIONER = "Salesforce/blip-image-captioning-large"
DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
DEFAULT_SPACY_MODEL = "en_core_web_sm"
# A component name starting with this prefix lives in a sub-folder of the checkpoint itself
# (`item build` writes "./captioner" and "./detector"), on the Hub and on disk alike.
BUNDLED_PREFIX = "./"

QUANTIZATIONS = (None, "int8")
LOCAL_EMBEDDINGS = ("crops", "regions")


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

        The fast profile's settings (`item build --profile fast`; each off by default, which is the paper's method):
        detector_size (`dict`, *optional*): the detector's input size, as its own image processor takes it (e.g.
            `{"shortest_edge": 400, "longest_edge": 667}` for Grounding DINO, whose default is 800 / 1333).
        quantization (`str`, *optional*): `"int8"` quantizes the captioner's and detector's linear layers
            (dynamic int8) when they are loaded on the CPU (on a GPU they stay in floating point).
        min_box_size (`int`): objects whose box is narrower or shorter than this many pixels are left out.
        local_embeddings (`str`): `"crops"` (each object's crop through the image tower: the paper's method) or
            `"regions"` (each object's patch tokens pooled from the one whole-image pass; CLIP-style towers only;
            `region_grid` patches per side).
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
        detector_size: dict | None = None,
        quantization: str | None = None,
        min_box_size: int = 0,
        local_embeddings: str = "crops",
        region_grid: int | None = None,
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
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization={quantization!r}; choose one of {QUANTIZATIONS}.")
        if local_embeddings not in LOCAL_EMBEDDINGS or (local_embeddings == "regions" and not region_grid):
            raise ValueError(
                f"local_embeddings={local_embeddings!r} (region_grid={region_grid!r}); choose 'crops', or 'regions' "
                "with region_grid = patches per side of the backbone's image tower (16 for ViT-L/14 at 224 px)."
            )
        if not isinstance(min_box_size, int) or min_box_size < 0:
            raise ValueError(f"min_box_size={min_box_size!r}; pass a number of pixels >= 0 (0: keep every box).")
        self.detector_size = dict(detector_size) if detector_size else None
        self.quantization = quantization
        self.min_box_size = min_box_size
        self.local_embeddings = local_embeddings
        self.region_grid = region_grid
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
        if self.quantization == "int8":
            if torch.device(self._networks.device).type == "cpu":
                quantize_dynamic_int8(model)
            else:  # int8 dynamic quantization is a CPU kernel; on a GPU, float16 is the fast setting
                logger.warning_once("quantization='int8' is a CPU setting; the captioner and detector run unquantized here.")
        return model, processor

    @property
    def captioner(self):
        """(model, processor) of the captioner, loaded on first use."""
        return self._network("captioner", AutoModelForImageTextToText, self.captioner_name_or_path)

    @property
    def detector(self):
        """(model, processor) of the detector, loaded on first use."""
        return self._network("detector", AutoModelForZeroShotObjectDetection, self.detector_name_or_path)

    def _network(self, name: str, auto_class, name_or_path: str):
        networks = self._networks
        if getattr(networks, name) is None:
            model, processor = self._load_pretrained(auto_class, name_or_path)
            setattr(networks, name, model)
            setattr(networks, f"{name}_processor", processor)
        return getattr(networks, name), getattr(networks, f"{name}_processor")

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
        return self.quantization == "int8" and torch.device(self._networks.device).type == "cpu"

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
        regions = self.local_embeddings == "regions"
        region_masks = np.zeros((count, self.max_objects, (self.region_grid or 0) ** 2), dtype=bool)
        crops, crop_slots, texts, text_slots = [], [], [], []
        for i, (image, annotation) in enumerate(zip(images, annotations)):
            whole, shrink = limit_aspect_ratio(image)
            crops.append(whole)
            crop_slots.append(i if regions else i * slots)
            texts.append(annotation.caption)
            text_slots.append(i * slots)
            for j, (noun, box) in enumerate(list(zip(annotation.nouns, annotation.boxes))[: self.max_objects]):
                region = None if box is None else clip_box(box, *image.size)
                if region is None or min(region[2] - region[0], region[3] - region[1]) < self.min_box_size:
                    continue
                if regions:
                    region_masks[i, j] = self.region_patches(whole.size, [v / shrink for v in region])
                    if not region_masks[i, j].any():
                        continue  # the box lies outside the part of the image the image tower sees
                else:
                    crops.append(limit_aspect_ratio(image.crop(region))[0])
                    crop_slots.append(i * slots + 1 + j)
                object_mask[i, j] = True
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
        for source, rows, per_image in ((pixels, crop_slots, 1 if regions else slots), (tokens, text_slots, slots)):
            for key, value in source.items():
                value = np.asarray(value)
                full = np.zeros((count * per_image, *value.shape[1:]), dtype=value.dtype)
                full[rows] = value
                data[key] = full.reshape(count, per_image, *value.shape[1:])
        data["object_mask"] = object_mask
        if regions:
            data["region_masks"] = region_masks
        return BatchFeature(data=data, tensor_type=return_tensors)

    def region_patches(self, size: tuple[int, int], box) -> np.ndarray:
        """Which of the image tower's `region_grid` x `region_grid` patches a box covers, once the whole image of
        `size` went through this backbone's resize and centre crop: a (region_grid ** 2,) bool mask."""
        return region_patch_mask(self.image_processor, self.region_grid, size, box)

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



ItemProcessor.register_for_auto_class()
