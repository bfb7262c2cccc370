"""The processor's second step: from annotated images to fixed-shape model inputs, with no network run.

`EncodeMixin` gives `ItemProcessor` its `encode`: the whole image and one crop per grounded object (or, for
`local_embeddings="regions"`, the patches each box covers) through the backbone's image processor in one call, the
caption and the nouns through its tokenizer in one call, each laid out in B x (1 + K) slots (see processing_item.py).
"""

import numpy as np

from transformers.feature_extraction_utils import BatchFeature

from .annotation_item import ItemAnnotations, clip_box
from .images_item import limit_aspect_ratio, read_images, region_patch_mask

LOCAL_EMBEDDINGS = ("crops", "regions")


class EncodeMixin:
    """Model inputs from images and their annotations (mixed into `ItemProcessor`). Uses its `image_processor`,
    `tokenizer`, `max_objects`, `text_max_length`, `min_box_size`, `local_embeddings` and `region_grid`."""

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
        single, images = read_images(images)
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
        data = self._slots(crops, crop_slots, texts, text_slots, count, 1 if regions else slots, slots)
        data["object_mask"] = object_mask
        if regions:
            data["region_masks"] = region_masks
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _slots(self, crops, crop_slots, texts, text_slots, count: int, crops_per_image: int, texts_per_image: int) -> dict:
        """One image-processor call for every crop of the batch, one tokenizer call for every text; each output
        laid out as (count, slots, ...) with zeros in the slots nothing filled."""
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
        for source, rows, per_image in ((pixels, crop_slots, crops_per_image), (tokens, text_slots, texts_per_image)):
            for key, value in source.items():
                value = np.asarray(value)
                full = np.zeros((count * per_image, *value.shape[1:]), dtype=value.dtype)
                full[rows] = value
                data[key] = full.reshape(count, per_image, *value.shape[1:])
        return data

    def region_patches(self, size: tuple[int, int], box) -> np.ndarray:
        """Which of the image tower's `region_grid` x `region_grid` patches a box covers, once the whole image of
        `size` went through this backbone's resize and centre crop: a (region_grid ** 2,) bool mask."""
        return region_patch_mask(self.image_processor, self.region_grid, size, box)

    @property
    def model_input_names(self):
        text_inputs = [name for name in self.tokenizer.model_input_names if name != "token_type_ids"]
        return list(dict.fromkeys(self.image_processor.model_input_names + text_inputs + ["object_mask"]))
