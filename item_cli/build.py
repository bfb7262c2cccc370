"""`item build`: assemble one self-contained ITEM checkpoint folder from a backbone, a captioner and a detector.

The folder holds config.json, model.safetensors (backbone + head), the processor's files, the captioner and
the detector in sub-folders, the remote-code .py files and a model card. Loading it needs transformers,
torch, spacy and pillow only, with `trust_remote_code=True`.
"""

import shutil
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForZeroShotObjectDetection,
    AutoProcessor,
    AutoTokenizer,
)

from item_detector.configuration_item import check_backbone_is_dual_encoder
from item_detector.modeling_item import ItemForImageClassification
from item_detector.processing_item import BUNDLED_PREFIX, DEFAULT_CAPTIONER, DEFAULT_DETECTOR, DEFAULT_SPACY_MODEL, ItemProcessor

from .model_card import write_model_card

REMOTE_CODE_FILES = ("configuration_item.py", "processing_item.py", "modeling_item.py", "pipeline_item.py")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BACKBONE = "openai/clip-vit-large-patch14"


def _load_component(auto_class, name_or_path: str):
    """A frozen network and its processor, by Hub id or path."""
    return auto_class.from_pretrained(name_or_path), AutoProcessor.from_pretrained(name_or_path)


def build_checkpoint(
    output: str | Path,
    backbone: str = DEFAULT_BACKBONE,
    captioner: str = DEFAULT_CAPTIONER,
    detector: str = DEFAULT_DETECTOR,
    spacy_model: str = DEFAULT_SPACY_MODEL,
    config_options: dict | None = None,
    processor_options: dict | None = None,
    seed: int = 0,
) -> Path:
    """Write an ITEM checkpoint with an untrained head to `output` and return its path.

    Args:
        backbone, captioner, detector: Hub ids or local folders.
        config_options: `ItemConfig` fields (distance_type, fusion, head_hidden_size, ...).
        processor_options: `ItemProcessor` settings (max_objects, box_threshold, noun_mode, ...).
    """
    import torch

    output = Path(output)
    check_backbone_is_dual_encoder(AutoConfig.from_pretrained(backbone).model_type)
    torch.manual_seed(seed)  # the head's initialisation
    model = ItemForImageClassification.from_backbone(AutoModel.from_pretrained(backbone), **(config_options or {}))
    processor = ItemProcessor(
        AutoImageProcessor.from_pretrained(backbone),
        AutoTokenizer.from_pretrained(backbone),
        captioner_name_or_path=BUNDLED_PREFIX + "captioner",
        detector_name_or_path=BUNDLED_PREFIX + "detector",
        spacy_model=spacy_model,
        **(processor_options or {}),
    )
    captioner_model, captioner_processor = _load_component(AutoModelForImageTextToText, captioner)
    detector_model, detector_processor = _load_component(AutoModelForZeroShotObjectDetection, detector)
    processor.set_networks(captioner_model, captioner_processor, detector_model, detector_processor)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    processor.save_pretrained(output)  # writes the bundled captioner/ and detector/ too
    for name in REMOTE_CODE_FILES:  # save_pretrained copies most; make sure all four are there
        shutil.copyfile(ROOT / name, output / name)
    write_model_card(output, backbone=backbone, captioner=captioner, detector=detector, spacy_model=spacy_model)
    return output
