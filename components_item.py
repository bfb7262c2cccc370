"""The frozen networks an `ItemProcessor` runs, and the checkpoint that carries them.

Where the captioner and detector are (a Hub id, a folder, or a sub-folder bundled in the checkpoint: "./captioner"),
loading them (and the spaCy pipeline) on first use, on the device and in the dtype asked for, and saving bundled
copies with the processor, so that every saved folder is a complete checkpoint. `ComponentsMixin` gives
`ItemProcessor` these jobs: `from_pretrained`, `save_pretrained`, `to`, `set_networks`, `captioner`, `detector`,
`nlp`, `device`, `dtype`, `source`, `revision`.
"""

import os
import shutil
import weakref
from dataclasses import dataclass
from typing import Any

from transformers import AutoModelForImageTextToText, AutoModelForZeroShotObjectDetection, AutoProcessor
from transformers.utils import logging

from .annotation_item import load_spacy
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
_NETWORKS: "weakref.WeakKeyDictionary[Any, _Networks]" = weakref.WeakKeyDictionary()


class ComponentsMixin:
    """The processor's frozen networks and the checkpoint they come from (mixed into `ItemProcessor`, before
    `ProcessorMixin`). Uses the processor's `captioner_name_or_path`, `detector_name_or_path`, `spacy_model`,
    `quantization` and its unsaved `_source` / `_revision`."""

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

    def to(self, device=None, dtype=None):
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
