"""Configuration of ITEM, the image-text misalignment detector of AI-generated images (arXiv:2511.00427).

`ItemConfig` holds what the *model* needs: the joint image-text backbone's own config as a sub-config,
how matched image/text embeddings become misalignment features, the MLP head, and the decision threshold.
What turns a picture into model inputs (captioner, detector, spaCy, `max_objects`, `box_threshold`)
belongs to `ItemProcessor` and is saved beside the weights in `processor_config.json`.
"""

import math

from transformers import AutoConfig, PreTrainedConfig

# Backbone families known to give image and text embeddings in one shared space through
# `get_image_features` / `get_text_features`. Other dual encoders with the same interface are accepted
# too (checked on the model class); single-tower models are refused with this list in the message.
SUPPORTED_BACKBONES = ("clip", "siglip", "siglip2", "metaclip_2")

DISTANCE_TYPES = ("difference", "cosine", "both")
FUSION_TYPES = ("sum", "concat", "global", "local")
QUANTIZATIONS = (None, "int8")

# A two-way sanity check and the one place the remote-code wiring lives.
_AUTO_MAP = {
    "AutoConfig": "configuration_item.ItemConfig",
    "AutoModel": "modeling_item.ItemForImageClassification",
    "AutoModelForImageClassification": "modeling_item.ItemForImageClassification",
    "AutoProcessor": "processing_item.ItemProcessor",
}
_CUSTOM_PIPELINES = {
    "image-classification": {
        "impl": "pipeline_item.ItemImageClassificationPipeline",
        "pt": ["AutoModelForImageClassification"],
        "tf": [],
        "type": "image",
    }
}


def backbone_model_class_name(model_type: str) -> str | None:
    """Name of the transformers class that `AutoModel` builds for a backbone `model_type`, or None."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    name = MODEL_MAPPING_NAMES.get(model_type)
    return name[0] if isinstance(name, (tuple, list)) else name


def check_backbone_is_dual_encoder(model_type: str) -> None:
    """Raise a `ValueError` unless `model_type` names a model with an image tower and a text tower
    that embed into one shared space (it has both `get_image_features` and `get_text_features`)."""
    import transformers

    class_name = backbone_model_class_name(model_type)
    model_class = getattr(transformers, class_name, None) if class_name else None
    has_both_towers = all(
        hasattr(model_class, method) for method in ("get_image_features", "get_text_features")
    )
    if not has_both_towers:
        raise ValueError(
            f"ITEM needs a joint image-text backbone (an image tower and a text tower with a shared "
            f"embedding space), but got model_type={model_type!r} ({class_name or 'no AutoModel class'}), "
            f"which has no text tower or no shared space. Use a checkpoint of one of these families: "
            f"{', '.join(SUPPORTED_BACKBONES)} (e.g. openai/clip-vit-large-patch14, "
            f"google/siglip2-so400m-patch14-384, facebook/metaclip-2-worldwide-huge-quickgelu)."
        )


def in_unsure_band(band, fake_probability: float) -> bool:
    """Whether `fake_probability` lies in the abstention band `[low, high]`: `low <= p < high` (the upper edge is
    fake, as the threshold's "at or above"), so the band `[t, t]` holds nothing."""
    return band[0] <= fake_probability < band[1]


def checked_unsure_band(band, threshold: float) -> list[float] | None:
    """`band` as `[low, high]` floats (None stays None); a `ValueError` naming it unless `0 <= low <= threshold <=
    high <= 1`: outside the band the verdict is the threshold's, so the band must hold the threshold."""
    if band is None:
        return None
    numbers = isinstance(band, (list, tuple)) and len(band) == 2 and all(
        isinstance(edge, (int, float)) and not isinstance(edge, bool) and math.isfinite(edge) for edge in band)
    if not numbers:
        raise ValueError(f"unsure_band={band!r}; pass [low, high], two fake probabilities, or None for no band.")
    low, high = float(band[0]), float(band[1])
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"unsure_band={band!r}; pass [low, high] with 0 <= low <= high <= 1.")
    if not low <= threshold <= high:
        raise ValueError(f"unsure_band={band!r} does not hold decision_threshold={threshold!r}; choose the band "
                         "around the threshold (item calibrate --unsure-error ...), or set unsure_band=None.")
    return [low, high]


class ItemConfig(PreTrainedConfig):
    r"""
    Configuration of [`ItemForImageClassification`].

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the frozen joint image-text backbone (CLIP, SigLIP, SigLIP 2, MetaCLIP 2). Defaults to
            transformers' default `CLIPConfig`; `item build` fills in the real checkpoint's config.
        distance_type (`str`, defaults to `"difference"`):
            Per matched (image, text) pair: `"difference"`, the l2-normalised image embedding minus the
            l2-normalised text embedding (a vector of the embedding size); `"cosine"`, their cosine
            similarity (one number); `"both"`, the two concatenated.
        fusion (`str`, defaults to `"sum"`):
            How the global pair (whole image, caption) and the local pairs (object crop, noun) are combined:
            `"sum"`, global + masked mean of the locals (the Σ of the paper's figure); `"concat"`, the two
            side by side; `"global"` or `"local"` alone (ablations).
        head_hidden_size (`int`, defaults to 512): width of the MLP head's hidden layer.
        head_dropout (`float`, defaults to 0.1): dropout before each of the head's linear layers.
        decision_threshold (`float`, defaults to 0.5):
            Fake probability at or above which an image is called fake by `item detect` and the convenience
            API. The pipeline itself returns plain probabilities. Calibrate it on validation data.
        backbone_quantization (`str`, *optional*):
            `"int8"`: the frozen backbone's linear layers are quantized to int8 (dynamic) when the model is loaded,
            on CPU (the fast profile). The saved weights stay float.
        threshold_calibration (`dict`, *optional*):
            How `decision_threshold` was chosen (`item calibrate`): method, target, data, and the rates reached there.
        unsure_band (`list[float]`, *optional*):
            `[low, high]`, an abstention band around the decision threshold (`low <= decision_threshold <= high`):
            an image whose fake probability `p` has `low <= p < high` gets the verdict `"unsure"` in the
            pipeline's `explain=True` output; outside it the verdict is the threshold's. `[t, t]` is empty (every
            image decided). None (the default): no band. Chosen by `item calibrate --unsure-error` /
            `--unsure-coverage` on validation data.
        unsure_calibration (`dict`, *optional*):
            How `unsure_band` was chosen: the target, the data, and the coverage and covered error reached there.
    """

    model_type = "item_detector"
    # Trainer.predict / evaluate return only the logits (the other outputs are for inspection and caching).
    keys_to_ignore_at_inference = ["similarities", "object_mask", "features", "image_embeds", "text_embeds"]
    sub_configs = {"backbone_config": AutoConfig}

    backbone_config: dict | PreTrainedConfig | None = None
    distance_type: str = "difference"
    fusion: str = "sum"
    head_hidden_size: int = 512
    head_dropout: float = 0.1
    decision_threshold: float = 0.5
    threshold_calibration: dict | None = None
    backbone_quantization: str | None = None
    unsure_band: list | None = None
    unsure_calibration: dict | None = None

    def __post_init__(self, **kwargs):
        if self.backbone_config is None:
            self.backbone_config = AutoConfig.for_model("clip")
        elif isinstance(self.backbone_config, dict):
            settings = dict(self.backbone_config)
            model_type = settings.pop("model_type", "clip")
            try:
                self.backbone_config = AutoConfig.for_model(model_type, **settings)
            except ValueError:
                raise ValueError(
                    f"Unknown backbone model_type={model_type!r}; ITEM supports {', '.join(SUPPORTED_BACKBONES)}."
                ) from None
        self.check_item_settings()

        if self.id2label is None:
            self.id2label = {0: "real", 1: "fake"}
        if not self.label2id:
            self.label2id = {label: int(index) for index, label in self.id2label.items()}
        if kwargs.get("auto_map") is None and getattr(self, "auto_map", None) is None:
            self.auto_map = dict(_AUTO_MAP)
        if kwargs.get("custom_pipelines") is None and getattr(self, "custom_pipelines", None) is None:
            self.custom_pipelines = {task: dict(spec) for task, spec in _CUSTOM_PIPELINES.items()}
        super().__post_init__(**kwargs)

    def check_item_settings(self) -> None:
        """Raise a `ValueError` naming any ITEM setting that is out of range (run on creation and on save, so a
        threshold set after loading is checked before it reaches disk)."""
        check_backbone_is_dual_encoder(self.backbone_config.model_type)
        if self.distance_type not in DISTANCE_TYPES:
            raise ValueError(f"distance_type={self.distance_type!r}; choose one of {DISTANCE_TYPES}.")
        if self.fusion not in FUSION_TYPES:
            raise ValueError(f"fusion={self.fusion!r}; choose one of {FUSION_TYPES}.")
        threshold = self.decision_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"decision_threshold={threshold!r} is not a probability; pass a value in [0, 1].")
        if not isinstance(self.head_hidden_size, int) or self.head_hidden_size < 1:
            raise ValueError(f"head_hidden_size={self.head_hidden_size!r}; pass a positive integer (512 by default).")
        if self.backbone_quantization not in QUANTIZATIONS:
            raise ValueError(f"backbone_quantization={self.backbone_quantization!r}; choose one of {QUANTIZATIONS}.")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout={self.head_dropout!r}; pass a probability in [0, 1).")
        self.unsure_band = checked_unsure_band(self.unsure_band, threshold)

    def verdict(self, fake_probability: float, is_fake: bool) -> str:
        """"unsure" inside `unsure_band`, else "fake" or "real" as `is_fake` (the threshold's decision) says."""
        if self.unsure_band is not None and in_unsure_band(self.unsure_band, fake_probability):
            return "unsure"
        return "fake" if is_fake else "real"

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        self.check_item_settings()
        return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    @property
    def embedding_dim(self) -> int:
        """Size of the shared image-text embedding space of the backbone."""
        config = self.backbone_config
        # CLIP-style backbones project both towers to `projection_dim`; SigLIP-style ones project the text
        # tower to the vision tower's hidden size.
        return getattr(config, "projection_dim", None) or config.vision_config.hidden_size

    @property
    def pair_feature_dim(self) -> int:
        """Size of the misalignment feature of one (image, text) pair."""
        return {"difference": self.embedding_dim, "cosine": 1, "both": self.embedding_dim + 1}[self.distance_type]

    @property
    def head_input_dim(self) -> int:
        """Size of the head's input after fusing the global and local pair features."""
        return self.pair_feature_dim * (2 if self.fusion == "concat" else 1)


ItemConfig.register_for_auto_class()
