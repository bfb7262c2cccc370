"""What a cached row was computed from, made into keys.

A row of the frozen-work cache is found by two keys:

- the image's **content key**: sha256 of the file's bytes (never its name, size or time stamps), so a renamed or
  copied file is found again, and a file changed in place is computed again even when `cp -p` kept its size
  and modification time;
- the **stage key**: sha256 of everything else the stage's output depends on: for the annotations, the
  captioner's and detector's files (hashed, not named), the spaCy pipeline and version, the processor settings,
  the perturbation, the compute dtype, the code that computes them and the versions of the libraries that run
  it; for the features, the annotation stage key, the backbone's config and weights (hashed in memory), the
  image processor, the tokenizer, the storage dtype, and again the code and library versions.

Labels, generators, categories and splits are part of neither: they are read from the data on every run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from tqdm.auto import tqdm

import item_detector.annotation_item
import item_detector.components_item
import item_detector.encoding_item
import item_detector.images_item
import item_detector.modeling_item
import item_detector.processing_item
from item_detector.processing_item import SPACY_FALLBACKS, bundled_subfolder

from ..hashing import file_sha256  # noqa: F401 - also imported from here
from ..public_names import component_text, public_name

logger = logging.getLogger(__name__)

STORE_VERSION = 2  # the on-disk layout of `item_cli.cache.store`
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5")
# Config entries that say where a config was loaded from or written by, not what the network is.
_VOLATILE_KEYS = {"_name_or_path", "transformers_version", "_commit_hash", "architectures", "dtype", "torch_dtype"}


def stage_key(fingerprint: dict) -> str:
    """The 16-hex-digit key of a stage's fingerprint. Its `made_by` entry only says which checkpoint first made the
    stage (for `item cache --info`): it is no part of the key, so that a trained checkpoint shares the stages of the
    one it came from and two copies of one checkpoint share theirs."""
    keyed = {name: value for name, value in fingerprint.items() if name != "made_by"}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]



def content_keys(paths: list, threads: int = 8, description: str = "Hashing images") -> list[str | OSError]:
    """sha256 of every file's bytes, in order (an `OSError` in place of a file that cannot be read).

    An item is a file path or a `Record`; a data-set row's key is the sha256 of its stored image bytes, exactly
    as a file's, so the same picture as a file and as a row shares its cache rows.
    Threads overlap the reads (hashlib releases the GIL), which matters on network file systems."""

    def one(item):
        try:
            row = getattr(item, "row", None)
            if row is not None:
                return hashlib.sha256(row.read_bytes()).hexdigest()
            return file_sha256(getattr(item, "path", item))
        except OSError as error:
            return error

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(tqdm(pool.map(one, paths), total=len(paths), desc=description, unit="file", disable=None, leave=False))


def clean_config(value):
    """A config dict without the entries that say where it was loaded from rather than what it is."""
    if isinstance(value, dict):
        return {k: clean_config(v) for k, v in value.items() if k not in _VOLATILE_KEYS and not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [clean_config(v) for v in value]
    return value


def code_fingerprint(*modules) -> dict:
    """sha256 of the source of the modules that compute a stage, and the versions of the libraries under them."""
    sources = {Path(module.__file__).name: file_sha256(module.__file__) for module in modules}
    versions = {}
    for package in ("pillow", "torch", "transformers", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"sources": sources, "libraries": versions}


def _local_folder(repo_or_path: str, subfolder: str | None = None, revision: str | None = None) -> Path | None:
    """The local folder holding a component: a path, or the Hub cache snapshot of a repository id."""
    path = Path(repo_or_path).expanduser()
    if path.is_dir():
        return path / subfolder if subfolder else path
    try:
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(
            repo_or_path, revision=revision, local_files_only=True,
            allow_patterns=[f"{subfolder}/*" if subfolder else "*"],
        )
    except Exception:  # noqa: BLE001 - not cached locally (any of several hub errors): identify by name only
        return None
    return Path(snapshot) / subfolder if subfolder else Path(snapshot)


def component_fingerprint(processor, name_or_path: str) -> dict:
    """Identity of the captioner or detector a processor uses: its name and the sha256 of its config and weight
    files (hashed on every run: a file replaced with its time stamp kept is still noticed)."""
    subfolder = bundled_subfolder(name_or_path)
    if subfolder is not None:
        if processor.source is None:
            raise ValueError(
                f"Cannot fingerprint {name_or_path!r}: the processor was not loaded from a checkpoint. Load it with "
                "ItemProcessor.from_pretrained(CHECKPOINT)."
            )
        folder = _local_folder(processor.source, subfolder, processor.revision)
    else:
        folder = _local_folder(name_or_path)
    if folder is None or not folder.is_dir():
        logger.warning("%r is not available locally, so the cache identifies it by name only.", name_or_path)
        return {"name": name_or_path}  # a Hub id: a local folder was found above
    files = {
        file.name: file_sha256(file)
        for file in sorted(folder.iterdir())
        if file.is_file() and (file.suffix in WEIGHT_SUFFIXES or file.suffix == ".json" or file.suffix == ".txt")
    }
    # The files' hashes identify the component; the name is shown by `item cache --info`: no path of this machine.
    return {"name": public_name(name_or_path), "files": files}


def spacy_fingerprint(name: str) -> dict:
    """The spaCy pipeline's package name and version, and spaCy's own version (no pipeline is loaded)."""
    found = {"name": name}
    try:
        found["spacy"] = metadata.version("spacy")
    except metadata.PackageNotFoundError:
        pass
    for candidate in (name, SPACY_FALLBACKS.get(name)):
        for distribution in filter(None, (candidate, candidate and candidate.replace("_", "-"))):
            try:
                found["package"], found["version"] = distribution, metadata.version(distribution)
                return found
            except metadata.PackageNotFoundError:
                continue
    return found


ANNOTATION_SETTINGS = ("max_objects", "box_threshold", "noun_mode", "caption_max_new_tokens", "caption_num_beams",
                       "caption_prompt", "detector_size", "quantization")
FEATURE_SETTINGS = ("max_objects", "text_max_length", "min_box_size", "local_embeddings", "region_grid")


def annotation_fingerprint(processor, perturbation=None) -> dict:
    """Everything stage 1's rows (caption, nouns, boxes) depend on, apart from the image itself."""
    return {
        "stage": "annotations",
        "store": STORE_VERSION,
        "code": code_fingerprint(item_detector.images_item, item_detector.annotation_item, item_detector.components_item,
                                 item_detector.processing_item),
        "captioner": component_fingerprint(processor, processor.captioner_name_or_path),
        "detector": component_fingerprint(processor, processor.detector_name_or_path),
        "spacy": spacy_fingerprint(processor.spacy_model),
        "settings": {name: getattr(processor, name) for name in ANNOTATION_SETTINGS},
        "compute_dtype": str(processor.dtype),
        "perturbation": getattr(perturbation, "name", None),
        "made_by": made_by(processor, ("captioner", "detector")),
    }


def made_by(processor, parts: tuple[str, ...]) -> dict:
    """Which checkpoint made a stage, for people (not keyed): its Hub id or folder name, and its components' ids."""
    sources = getattr(processor, "component_sources", {}) or {}
    return {
        "checkpoint": public_name(processor.source) if processor.source else None,
        "revision": processor.revision,
        "components": {part: component_text(sources[part]) for part in parts if sources.get(part)},
    }


def describe_origin(fingerprint: dict) -> str:
    """What `item cache --info` says made a stage: the checkpoint and its components, never a machine path."""
    origin = fingerprint.get("made_by") or {}
    components = dict(origin.get("components") or {})
    if fingerprint.get("stage") == "annotations":
        for part in ("captioner", "detector"):
            name = (fingerprint.get(part) or {}).get("name", "unknown")
            bundled = bundled_subfolder(name) if name.startswith("./") else None
            components.setdefault(part, f"the checkpoint's {bundled}/" if bundled else public_name(name))
    else:
        components.setdefault("backbone", f"weights sha256 {str(fingerprint.get('backbone'))[:12]}")
    parts = [f"{part} {text}" for part, text in components.items()]
    if fingerprint.get("stage") != "annotations":
        parts += [f"annotations {fingerprint.get('annotations')}", f"stored as {fingerprint.get('storage_dtype')}"]
    if fingerprint.get("perturbation"):
        parts.append(f"perturbation {fingerprint['perturbation']}")
    checkpoint = origin.get("checkpoint")
    if checkpoint:
        checkpoint += f"@{origin['revision']}" if origin.get("revision") else ""
    return f"checkpoint {checkpoint or 'unknown'}: " + ", ".join(parts)


def backbone_fingerprint(model) -> str:
    """sha256 of the backbone's cleaned config and of every backbone weight (name, dtype, shape, bytes).

    The head is left out, so a trained checkpoint shares the feature cache of the checkpoint it came from.
    """
    import torch

    digest = hashlib.sha256(json.dumps(clean_config(model.config.backbone_config.to_dict()), sort_keys=True, default=str).encode())
    for name, value in sorted(model.backbone.state_dict().items()):
        for tensor in _tensors(value):
            tensor = tensor.detach().to("cpu")
            if tensor.is_quantized:  # an int8 backbone: what its integer weights and scales stand for
                tensor = tensor.dequantize()
            tensor = tensor.contiguous()
            digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
            if tensor.numel():
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _tensors(value) -> list:
    """The tensors in a state-dict entry (a quantized layer stores a tuple of them, and a dtype)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in _tensors(item)]
    return []


def feature_fingerprint(annotation_key: str, processor, model, storage_dtype: str, perturbation=None) -> dict:
    """Everything stage 2's rows (the backbone's embeddings) depend on, apart from the image and its annotations."""
    tokenizer = processor.tokenizer
    vocabulary = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    return {
        "stage": "features",
        "store": STORE_VERSION,
        "code": code_fingerprint(item_detector.images_item, item_detector.annotation_item, item_detector.processing_item,
                                 item_detector.encoding_item, item_detector.modeling_item),
        "annotations": annotation_key,
        "backbone": backbone_fingerprint(model),
        "image_processor": clean_config(processor.image_processor.to_dict()),
        "tokenizer": {"class": type(tokenizer).__name__, "vocabulary": vocabulary},
        "settings": {name: getattr(processor, name) for name in FEATURE_SETTINGS},
        "compute_dtype": str(next(model.backbone.parameters()).dtype),
        "backbone_quantization": model.config.backbone_quantization,
        "storage_dtype": storage_dtype,
        "perturbation": getattr(perturbation, "name", None),
        "made_by": made_by(processor, ("backbone",)),
    }
