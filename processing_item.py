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

This file holds the processor's settings (what `save_pretrained` writes to processor_config.json) and its one call;
each of its jobs has a room of its own:

    annotation_item.py   annotate: caption, nouns, boxes (`AnnotateMixin`; the stages themselves, `ItemAnnotations`)
    encoding_item.py     encode: crops, preprocessing, tokens, the (B, 1 + K) slots (`EncodeMixin`)
    components_item.py   the captioner, detector and spaCy pipeline: where they are, loading them on first use, and
                         saving the bundled copies with the processor (`ComponentsMixin`: from_pretrained,
                         save_pretrained, to, set_networks)
    images_item.py       reading any image safely
"""

from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .annotation_item import (  # noqa: F401  (re-exported: the processor's public vocabulary)
    NOUN_MODES,
    SPACY_FALLBACKS,
    AnnotateMixin,
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
from .components_item import (  # noqa: F401  (re-exported: where the frozen networks live)
    BUNDLED_PREFIX,
    DEFAULT_CAPTIONER,
    DEFAULT_DETECTOR,
    DEFAULT_SPACY_MODEL,
    QUANTIZATIONS,
    ComponentsMixin,
    bundled_subfolder,
)
from .encoding_item import LOCAL_EMBEDDINGS, EncodeMixin
from .images_item import read_images


class ItemProcessor(AnnotateMixin, EncodeMixin, ComponentsMixin, ProcessorMixin):
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
        component_sources (`dict`, *optional*): where the backbone, captioner and detector came from, as `item build`
            records them: `{"id": ..., "revision": ...}` for the Hub, `{"name": ..., "sha256": {...}}` for a local
            folder (never its path); the model card is written from it.

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
        single, loaded = read_images(images)
        annotations = self.annotate(loaded if not single else loaded[0], captions, nouns, boxes)
        return self.encode(loaded, annotations, return_tensors=return_tensors)


ItemProcessor.register_for_auto_class()
