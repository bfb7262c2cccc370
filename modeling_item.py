"""ITEM model: frozen joint image-text backbone -> misalignment features -> trainable MLP head.

    forward_features: (pixel_values, input_ids, object_mask) -> ItemEmbeddings   frozen, run once per input
    forward_head:     (image_embeds, text_embeds, object_mask) -> logits         the only trained part
                      (pre_logits=True: the fused misalignment features the MLP sees)

`forward` chains the two and also accepts cached embeddings instead of pixels, so a head can be trained on
features computed once (see `item train`).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput, can_return_tuple, logging

from .configuration_item import ItemConfig, check_backbone_is_dual_encoder
# The model's own pipeline (config.custom_pipelines names it): importing it here makes save_pretrained copy its
# file, so that a folder written by Trainer.save_model works with pipeline() too.
from .pipeline_item import ItemImageClassificationPipeline  # noqa: F401

logger = logging.get_logger(__name__)


@dataclass
class ItemEmbeddings(ModelOutput):
    """Frozen-backbone output for B images with S = 1 + K slots (slot 0: whole image and caption).

    image_embeds (B, S, D): l2-normalised embeddings of the image and its object crops; zeros in empty slots.
    text_embeds (B, S, D): l2-normalised embeddings of the caption and the nouns; zeros in empty slots.
    """

    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


@dataclass
class ItemClassifierOutput(ModelOutput):
    """
    loss (scalar): cross-entropy, when `labels` are given.
    logits (B, 2): real / fake logits (`config.id2label`).
    similarities (B, 1 + K): cosine similarity of each matched pair: [:, 0] whole image vs caption,
        [:, j] crop j vs noun j; 0 in empty slots.
    object_mask (B, K): which object slots were used.
    features (B, F): the fused misalignment features the head saw.
    image_embeds, text_embeds (B, 1 + K, D): the backbone embeddings (to cache, or to inspect).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    similarities: torch.FloatTensor | None = None
    object_mask: torch.BoolTensor | None = None
    features: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


def misalignment_features(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, object_mask: torch.Tensor, distance_type: str, fusion: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse matched-pair distances into one feature vector per image.

    Args:
        image_embeds, text_embeds: (B, 1 + K, D), l2-normalised.
        object_mask: (B, K), True where object slot j is used.
        distance_type: "difference" (image - text, D values), "cosine" (1 value) or "both" (D + 1).
        fusion: "sum" (global + masked mean of locals), "concat", "global" or "local".

    Returns:
        features (B, F) and similarities (B, 1 + K), the per-pair cosine similarities (0 in empty slots).
    """
    similarities = (image_embeds * text_embeds).sum(dim=-1)  # (B, 1 + K)
    difference = image_embeds - text_embeds
    pair = {
        "difference": difference,
        "cosine": similarities.unsqueeze(-1),
        "both": torch.cat([difference, similarities.unsqueeze(-1)], dim=-1),
    }[distance_type]  # (B, 1 + K, P)
    global_distance = pair[:, 0]
    weights = object_mask.to(pair.dtype).unsqueeze(-1)  # (B, K, 1)
    # Masked mean; an image with no grounded object gets a zero local distance.
    local_distance = (pair[:, 1:] * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    features = {
        "sum": lambda: global_distance + local_distance,
        "concat": lambda: torch.cat([global_distance, local_distance], dim=-1),
        "global": lambda: global_distance,
        "local": lambda: local_distance,
    }[fusion]()
    slot_mask = torch.cat([torch.ones_like(object_mask[:, :1]), object_mask], dim=1)
    return features, similarities * slot_mask.to(similarities.dtype)


def quantize_dynamic_int8(module: nn.Module) -> nn.Module:
    """Replace `module`'s linear layers, in place, by int8 dynamically quantized ones (weights int8, activations
    quantized per batch). torch marks this eager-mode API deprecated in favour of torchao but still ships it; it
    needs no extra dependency and no pickled module (the float weights are what is saved)."""
    import warnings

    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as error:
        raise ValueError("This torch has no torch.ao.quantization.quantize_dynamic; use a profile without int8.") from error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return module


def _embed_slots(encode, slot_mask: torch.Tensor, inputs: dict) -> torch.Tensor:
    """Run `encode` once on the used slots of every image; (B, S, ...) inputs -> (B, S, D) l2-normalised
    embeddings with zeros in unused slots."""
    batch, slots = slot_mask.shape
    used = slot_mask.reshape(-1)
    selected = {name: value.flatten(0, 1)[used] for name, value in inputs.items() if value is not None}
    output = encode(**selected)
    embeds = F.normalize(getattr(output, "pooler_output", output).float(), dim=-1)
    full = embeds.new_zeros(batch * slots, embeds.shape[-1])
    full[used] = embeds
    return full.view(batch, slots, -1)


class ItemHead(nn.Module):
    """Two-layer MLP on the fused misalignment features: (B, F) -> (B, num_labels)."""

    def __init__(self, config: ItemConfig):
        super().__init__()
        self.dropout = nn.Dropout(config.head_dropout)
        self.dense = nn.Linear(config.head_input_dim, config.head_hidden_size)
        self.activation = nn.GELU()
        self.out_proj = nn.Linear(config.head_hidden_size, config.num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.dense(self.dropout(features)))
        return self.out_proj(self.dropout(hidden))

    def reset_parameters(self) -> None:
        """A fresh head: normal weights (std 0.02), zero biases."""
        for linear in (self.dense, self.out_proj):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)


class ItemPreTrainedModel(PreTrainedModel):
    config_class = ItemConfig
    base_model_prefix = "item"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        if isinstance(module, ItemHead):
            module.reset_parameters()


class ItemForImageClassification(ItemPreTrainedModel):
    """ITEM detector: a frozen dual encoder (CLIP, SigLIP, SigLIP 2, MetaCLIP 2) and a trainable MLP head."""

    # Trainer divides the loss by the accumulation steps itself only when forward takes no loss kwargs.
    accepts_loss_kwargs = False

    def __init__(self, config: ItemConfig):
        super().__init__(config)
        check_backbone_is_dual_encoder(config.backbone_config.model_type)
        self.backbone = AutoModel.from_config(config.backbone_config)
        self.head = ItemHead(config)
        self.backbone_quantized = False
        self.post_init()
        self.freeze_backbone()

    # ------------------------------------------------------------------ freezing
    def freeze_backbone(self) -> None:
        """Freeze the backbone; `from_pretrained` re-creates weights as trainable, so it calls this again."""
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model.freeze_backbone()
        return model

    def quantize_backbone(self) -> bool:
        """Apply `config.backbone_quantization` ("int8": the frozen backbone's linear layers become int8 dynamically
        quantized ones, several times cheaper on CPU). A setting saved with the checkpoint, applied on first use on
        the CPU, never pickled; on a GPU the backbone stays in floating point (with a warning). Returns whether the
        backbone is quantized now."""
        if not self.config.backbone_quantization or self.backbone_quantized:
            return self.backbone_quantized
        if any(parameter.device.type != "cpu" for parameter in self.backbone.parameters()):
            logger.warning_once("backbone_quantization='int8' is a CPU setting; the backbone runs unquantized on this device.")
            return False
        quantize_dynamic_int8(self.backbone)
        self.backbone_quantized = True
        return True

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: no dropout noise in the features, whatever the head does
        return self

    @classmethod
    def from_backbone(cls, backbone: PreTrainedModel, **config_kwargs) -> "ItemForImageClassification":
        """A new ITEM model around an already-loaded dual encoder (weights copied), with a fresh head."""
        config = ItemConfig(backbone_config=backbone.config.to_dict(), **config_kwargs)
        model = cls(config)
        missing, unexpected = model.backbone.load_state_dict(backbone.state_dict(), strict=False)
        if unexpected or any("position_ids" not in name for name in missing):
            raise ValueError(f"Backbone weights do not fit: missing {missing}, unexpected {unexpected}.")
        model.freeze_backbone()
        return model.eval()  # like from_pretrained: dropout off until the caller trains

    # ------------------------------------------------------------------ features
    def embed_images(
        self,
        pixel_values: torch.Tensor,
        slot_mask: torch.Tensor,
        pixel_attention_mask: torch.Tensor | None = None,
        spatial_shapes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The frozen image tower once over every used slot: (B, S, ...) pixels -> (B, S, D) l2-normalised, zeros
        in unused slots (S = 1 + K: the whole image, then the object crops)."""
        dtype = next(self.backbone.parameters()).dtype
        inputs = {"pixel_values": pixel_values.to(dtype), "pixel_attention_mask": pixel_attention_mask,
                  "spatial_shapes": spatial_shapes}
        return _embed_slots(self.backbone.get_image_features, slot_mask, inputs)

    def embed_texts(self, input_ids: torch.Tensor, slot_mask: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The frozen text tower once over every used slot: (B, S, L) tokens -> (B, S, D) l2-normalised."""
        if attention_mask is not None and self.config.backbone_config.model_type in ("clip", "metaclip_2"):
            # Texts come padded to the tokenizer's maximum (77); a noun is ~3 tokens. These text towers are causal
            # and pool at the EOS token, so the columns after the longest text change nothing: cut them.
            used_mask = attention_mask.flatten(0, 1)[slot_mask.reshape(-1)]
            filled = used_mask.any(dim=0).nonzero()
            length = int(filled[-1]) + 1 if len(filled) else attention_mask.shape[-1]
            input_ids, attention_mask = input_ids[..., :length], attention_mask[..., :length]
        return _embed_slots(self.backbone.get_text_features, slot_mask, {"input_ids": input_ids, "attention_mask": attention_mask})

    def embed_regions(self, pixel_values: torch.Tensor, region_masks: torch.Tensor) -> torch.Tensor:
        """The fast profile's local embeddings: ONE image-tower pass over the whole image, then for each object the
        mean of the patch tokens inside its box, through the tower's final norm and projection (no crop passes).

        Args:
            pixel_values: (B, 1, C, H, W), the whole image only.
            region_masks: (B, K, P) bool, which of the P patches each object's box covers.
        Returns:
            (B, 1 + K, D) l2-normalised: slot 0 the image's own embedding, slot j the region of object j (zeros
            where the object has no patch).
        """
        tower = getattr(self.backbone, "vision_model", None)
        projection = getattr(self.backbone, "visual_projection", None)
        if tower is None or projection is None or not hasattr(tower, "post_layernorm"):
            raise ValueError(
                f"Region embeddings need a CLIP-style image tower (class token, post_layernorm, visual_projection); "
                f"{self.config.backbone_config.model_type!r} has none. Use local_embeddings='crops'."
            )
        dtype = next(self.backbone.parameters()).dtype
        hidden = tower(pixel_values=pixel_values[:, 0].to(dtype)).last_hidden_state  # (B, 1 + P, H)
        patches = hidden[:, 1:]
        if patches.shape[1] != region_masks.shape[-1]:
            raise ValueError(f"region_masks cover {region_masks.shape[-1]} patches but the image tower has {patches.shape[1]}.")
        weights = region_masks.to(patches.dtype)
        pooled = torch.einsum("bkp,bph->bkh", weights, patches) / weights.sum(-1, keepdim=True).clamp(min=1.0)
        tokens = torch.cat([hidden[:, :1], pooled], dim=1)  # (B, 1 + K, H): the class token, then the regions
        embeds = F.normalize(projection(tower.post_layernorm(tokens)).float(), dim=-1)
        used = torch.cat([torch.ones_like(region_masks[:, :1, 0]), region_masks.any(-1)], dim=1)
        return embeds * used.unsqueeze(-1).to(embeds.dtype)

    def forward_features(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        object_mask: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_attention_mask: torch.Tensor | None = None,
        spatial_shapes: torch.Tensor | None = None,
        region_masks: torch.Tensor | None = None,
    ) -> ItemEmbeddings:
        """Embed the whole image, its objects, the caption and the nouns with the frozen backbone.

        Args:
            pixel_values: (B, 1 + K, ...) as `ItemProcessor` makes it for this backbone; (B, 1, ...) with
                `region_masks` (the fast profile: objects pooled from the one whole-image pass).
            input_ids: (B, 1 + K, L). attention_mask: (B, 1 + K, L) when the tokenizer makes one.
            object_mask: (B, K). pixel_attention_mask, spatial_shapes: SigLIP 2 only, (B, 1 + K, ...).
            region_masks: (B, K, P), see `embed_regions`.
        """
        if pixel_values is None or input_ids is None or object_mask is None:
            raise ValueError(
                "ITEM needs pixel_values, input_ids and object_mask from ItemProcessor (or image_embeds and "
                "text_embeds from a feature cache)."
            )
        image_slots = 1 if region_masks is not None else input_ids.shape[1]
        if (pixel_values.shape[:2] != (input_ids.shape[0], image_slots)
                or object_mask.shape != (input_ids.shape[0], input_ids.shape[1] - 1)):
            raise ValueError(
                f"Shapes do not match: pixel_values {tuple(pixel_values.shape)}, input_ids {tuple(input_ids.shape)}, "
                f"object_mask {tuple(object_mask.shape)}; expected (B, {'1' if region_masks is not None else '1 + K'}, ...), "
                "(B, 1 + K, L) and (B, K)."
            )
        if self.quantize_backbone() and input_ids.shape[0] > 1:
            # int8 dynamic quantization scales each call's activations together: one image at a time, so that an
            # image's embeddings never depend on the others in its batch (nor on the batch size).
            inputs = (pixel_values, input_ids, object_mask, attention_mask, pixel_attention_mask, spatial_shapes, region_masks)
            parts = [self.forward_features(*(None if t is None else t[i : i + 1] for t in inputs)) for i in range(len(input_ids))]
            return ItemEmbeddings(image_embeds=torch.cat([p.image_embeds for p in parts]),
                                  text_embeds=torch.cat([p.text_embeds for p in parts]))
        slot_mask = torch.cat([torch.ones_like(object_mask[:, :1]), object_mask], dim=1).bool()
        # inference_mode: the backbone is frozen. The embeddings are cloned out of it below, so that they can
        # still enter autograd (the head's training) when this runs with gradients enabled.
        with torch.inference_mode():
            if region_masks is not None:
                image_embeds = self.embed_regions(pixel_values, region_masks.bool() & object_mask.bool().unsqueeze(-1))
            else:
                image_embeds = self.embed_images(pixel_values, slot_mask, pixel_attention_mask, spatial_shapes)
            text_embeds = self.embed_texts(input_ids, slot_mask, attention_mask)
        if not torch.is_inference_mode_enabled():
            image_embeds, text_embeds = image_embeds.clone(), text_embeds.clone()
        return ItemEmbeddings(image_embeds=image_embeds, text_embeds=text_embeds)

    # ------------------------------------------------------------------ head
    def misalignment(
        self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, object_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(fused misalignment features (B, F), per-pair similarities (B, 1 + K)) from embeddings (B, 1 + K, D)."""
        dim = self.config.embedding_dim
        if image_embeds.ndim != 3 or image_embeds.shape != text_embeds.shape or image_embeds.shape[-1] != dim:
            raise ValueError(
                f"Embeddings must be (B, 1 + K, {dim}) for this backbone, one image and one text per slot; got "
                f"image_embeds {tuple(image_embeds.shape)} and text_embeds {tuple(text_embeds.shape)}."
            )
        if object_mask.shape != (image_embeds.shape[0], image_embeds.shape[1] - 1):
            raise ValueError(
                f"object_mask {tuple(object_mask.shape)} does not fit embeddings {tuple(image_embeds.shape)}; "
                "pass the (B, K) mask the embeddings were computed with."
            )
        return misalignment_features(
            image_embeds.float(), text_embeds.float(), object_mask.bool(), self.config.distance_type, self.config.fusion
        )

    def forward_head(
        self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, object_mask: torch.Tensor, pre_logits: bool = False
    ) -> torch.Tensor:
        """The trained part alone: embeddings (B, 1 + K, D) and object_mask (B, K) -> logits (B, 2), or with
        `pre_logits=True` the fused misalignment features (B, F) the MLP sees (as timm's `forward_head`)."""
        features, _ = self.misalignment(image_embeds, text_embeds, object_mask)
        if pre_logits:
            return features
        return self.head(features.to(self.head.dense.weight.dtype))

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        object_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_attention_mask: torch.Tensor | None = None,
        spatial_shapes: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        region_masks: torch.Tensor | None = None,
    ) -> ItemClassifierOutput:
        """Classify images as real (0) or fake (1).

        Pass either the processor's output (`pixel_values`, `input_ids`, `object_mask`, ...) or cached
        `image_embeds` and `text_embeds` (B, 1 + K, D) with `object_mask`. `labels` (B,) gives the loss.
        `return_dict=False` gives a tuple.
        """
        if image_embeds is None or text_embeds is None:
            embeddings = self.forward_features(
                pixel_values, input_ids, object_mask, attention_mask, pixel_attention_mask, spatial_shapes, region_masks
            )
            image_embeds, text_embeds = embeddings.image_embeds, embeddings.text_embeds
        elif object_mask is None:
            raise ValueError("Cached image_embeds/text_embeds need the object_mask they were computed with.")
        features, similarities = self.misalignment(image_embeds, text_embeds, object_mask)
        logits = self.head(features.to(self.head.dense.weight.dtype))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels.to(logits.device).long().view(-1))
        return ItemClassifierOutput(
            loss=loss,
            logits=logits,
            similarities=similarities,
            object_mask=object_mask.bool(),
            features=features,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
        )


ItemForImageClassification.register_for_auto_class("AutoModelForImageClassification")
