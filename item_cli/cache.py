"""Compute the frozen part of ITEM once per dataset and keep it on disk.

Stage 1, annotations: caption, nouns, boxes and box scores of every image (captioner, spaCy, detector).
Stage 2, features: the backbone's image and text embeddings of every (crop, word) slot, and the object mask,
so the head trains on features alone.

Each stage is a `Dataset.map(batched=True)` (with its progress bar) written as Arrow files under

    <cache_dir>/<data fingerprint>/annotations-<key>/    key: captioner, detector (weights hashes), spaCy
                                                          pipeline and version, processor settings, perturbation
    <cache_dir>/<data fingerprint>/features-<key>/       key: the annotations' key, backbone config and weights
                                                          hash, image processor, tokenizer, storage dtype

with the full fingerprint in `fingerprint.json`. The data fingerprint covers every file's path, size and
modification time. A cache whose fingerprint differs in anything is recomputed, never reused.

Sharding: run under `accelerate launch` and each process takes one contiguous shard
(`Dataset.shard(num_shards=num_processes, index=process_index, contiguous=True)`) and writes it as one Arrow
file; after `wait_for_everyone()` the main process seals the folder (fingerprint.json, atomic rename) and
every process loads the shards concatenated in order (memory-mapped, no copy). Without a launcher it is one
process and one shard. On several nodes the cache folder must be on a shared file system.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np

from item_detector.processing_item import BUNDLED_PREFIX, load_image

from .data import data_fingerprint, report_skipped

CACHE_VERSION = 1
FEATURE_DTYPES = ("float16", "float32")
ANNOTATION_COLUMNS = ("caption", "nouns", "boxes", "box_scores", "error")
FEATURE_COLUMNS = ("image_embeds", "text_embeds", "object_mask")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5")
_VOLATILE_KEYS = {"_name_or_path", "transformers_version", "_commit_hash", "architectures", "dtype", "torch_dtype"}


def default_cache_dir() -> Path:
    """`$ITEM_CACHE`, else `$XDG_CACHE_HOME/item` or `~/.cache/item`."""
    if os.environ.get("ITEM_CACHE"):
        return Path(os.environ["ITEM_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "item"


def _state(timeout_s: int = 6 * 3600):
    """accelerate's process state (one process without a launcher); CPU-only machines use gloo."""
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=timeout_s))
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if state.num_processes != launched:
        raise ValueError(
            f"Launched as {launched} processes, but accelerate's state has {state.num_processes}: every process would "
            "compute the whole cache. On a machine without GPUs pass --use_cpu to `item train` (TrainingArguments)."
        )
    return state


def code_version() -> str:
    """The installed item-detector version: a release that changes what the frozen stages compute bumps it
    (and `CACHE_VERSION` changes when the cache format does)."""
    from importlib import metadata

    try:
        return metadata.version("item-detector")
    except metadata.PackageNotFoundError:
        return "unknown"


def _key(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _clean(value):
    """A config dict without the entries that say where it was loaded from rather than what it is."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in _VOLATILE_KEYS and not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- fingerprints
class FileDigests:
    """sha256 of files, remembered by (path, size, mtime) in `<cache_dir>/file-digests.json`."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.path = Path(cache_dir) / "file-digests.json"
        try:
            self.known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}

    def __call__(self, file: str | os.PathLike) -> str:
        file = Path(file).resolve()
        stat = file.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = self.known.get(str(file))
        if entry and entry[:2] == stamp:
            return entry[2]
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
        self.known[str(file)] = [*stamp, digest.hexdigest()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(self.known))
            os.replace(temporary, self.path)
        except OSError:
            pass  # a read-only cache folder only costs re-hashing next time
        return digest.hexdigest()


def _local_folder(repo_or_path: str, subfolder: str = "", revision: str | None = None) -> Path | None:
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
        return Path(snapshot) / subfolder if subfolder else Path(snapshot)
    except Exception:  # noqa: BLE001 - not cached locally: identify by name only
        return None


def folder_fingerprint(folder: Path, digests: FileDigests) -> dict:
    """Hashes of a model folder's config files and weight files (what makes its outputs what they are)."""
    files = {}
    for file in sorted(folder.iterdir()):
        if file.is_file() and (file.suffix in WEIGHT_SUFFIXES or file.suffix == ".json" or file.name.endswith(".txt")):
            files[file.name] = digests(file)
    return files


def component_fingerprint(processor, name_or_path: str, digests: FileDigests) -> dict:
    """Identity of the captioner or detector a processor uses: its name and the hashes of its files."""
    if name_or_path.startswith(BUNDLED_PREFIX):
        source = getattr(processor, "_source", None)
        if source is None:
            raise ValueError(
                f"Cannot fingerprint {name_or_path!r}: the processor was not loaded from a checkpoint. Load it with "
                "ItemProcessor.from_pretrained(CHECKPOINT)."
            )
        folder = _local_folder(source, name_or_path[len(BUNDLED_PREFIX):], getattr(processor, "_revision", None))
    else:
        folder = _local_folder(name_or_path)
    if folder is None or not folder.is_dir():
        print(
            f"warning: {name_or_path!r} is not available locally, so the cache identifies it by name only.",
            file=sys.stderr,
        )
        return {"name": name_or_path}
    return {"name": name_or_path, "files": folder_fingerprint(folder, digests)}


def spacy_fingerprint(name: str) -> dict:
    """The spaCy pipeline's package name and version, and spaCy's own version (no pipeline is loaded)."""
    from importlib import metadata

    from item_detector.processing_item import SPACY_FALLBACKS

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


def annotation_fingerprint(dataset, processor, perturbation=None, digests: FileDigests | None = None) -> dict:
    """Everything stage 1's output depends on."""
    digests = digests or FileDigests(default_cache_dir())
    return {
        "stage": "annotations",
        "version": CACHE_VERSION,
        "code": code_version(),
        "data": data_fingerprint(dataset),
        "rows": len(dataset),
        "captioner": component_fingerprint(processor, processor.captioner_name_or_path, digests),
        "detector": component_fingerprint(processor, processor.detector_name_or_path, digests),
        "spacy": spacy_fingerprint(processor.spacy_model),
        "settings": {
            name: getattr(processor, name)
            for name in (
                "max_objects", "box_threshold", "noun_mode", "caption_max_new_tokens", "caption_num_beams", "caption_prompt",
            )
        },
        "perturbation": getattr(perturbation, "name", None),
    }


def backbone_fingerprint(model) -> str:
    """sha256 of the backbone's cleaned config and of every backbone weight (name, dtype, shape, bytes).

    The head is left out, so a trained checkpoint shares the feature cache of the checkpoint it came from.
    """
    import torch

    digest = hashlib.sha256(json.dumps(_clean(model.config.backbone_config.to_dict()), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.backbone.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def feature_fingerprint(annotation_key: str, processor, model, dtype: str, perturbation=None) -> dict:
    """Everything stage 2's output depends on."""
    tokenizer = processor.tokenizer
    vocabulary = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    return {
        "stage": "features",
        "version": CACHE_VERSION,
        "code": code_version(),
        "annotations": annotation_key,
        "backbone": backbone_fingerprint(model),
        "image_processor": _clean(processor.image_processor.to_dict()),
        "tokenizer": {"class": type(tokenizer).__name__, "vocabulary": vocabulary, "text_max_length": processor.text_max_length},
        "dtype": dtype,
        "perturbation": getattr(perturbation, "name", None),
    }


# ---------------------------------------------------------------------------------------------- storage
def _read_fingerprint(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "fingerprint.json").read_text())
    except (OSError, ValueError):
        return None


def load_cache(folder: str | os.PathLike):
    """A cache folder as one `Dataset`: its shard files (one per process that filled it), memory-mapped, in order."""
    from datasets import Dataset, concatenate_datasets

    shards = sorted(Path(folder).glob("shard-*.arrow"))
    if not shards:
        raise ValueError(f"{str(folder)!r} holds no cache shards (shard-*.arrow); delete it and run again.")
    parts = [Dataset.from_file(str(path)) for path in shards]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def _sharded_map(dataset, function, features, target: Path, fingerprint: dict, desc: str, batch_size: int, state):
    """`dataset.map(function, batched=True)` into `target`, one contiguous shard per process, merged in order.

    Each process writes its shard straight to an Arrow file in `<target>.partial/`; when all are done the main
    process adds `fingerprint.json` and renames the folder to `target` in one step, so a crashed run never
    leaves a cache that looks complete. Loading concatenates the shard files in order (no copy).
    """
    if _read_fingerprint(target) == fingerprint:
        return load_cache(target)
    work = target.with_name(target.name + ".partial")
    if state.is_main_process:
        if target.exists():
            print(f"cache {target} does not match its fingerprint; recomputing it", file=sys.stderr)
            shutil.rmtree(target)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    state.wait_for_everyone()
    count, index = state.num_processes, state.process_index
    shard = dataset.shard(num_shards=count, index=index, contiguous=True) if count > 1 else dataset
    if len(shard) or count == 1:
        mapped = shard.map(
            function,
            batched=True,
            batch_size=batch_size,
            features=features,
            desc=desc if count == 1 else f"{desc} [process {index + 1}/{count}]",
            new_fingerprint=f"{_key(fingerprint)}-{index}-{count}",
            cache_file_name=str(work / f"shard-{index:05d}-of-{count:05d}.arrow"),
            load_from_cache_file=False,
        )
        del mapped
    state.wait_for_everyone()
    if state.is_main_process:
        (work / "fingerprint.json").write_text(json.dumps(fingerprint, indent=2, sort_keys=True, default=str))
        os.replace(work, target)
    state.wait_for_everyone()
    return load_cache(target)


def _cache_root(cache_dir, fingerprint: dict) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / fingerprint["data"]


def annotation_features(dataset):
    """The `datasets.Features` of stage 1's output."""
    from datasets import Features, List, Value

    return Features(
        {
            **dataset.features,
            "caption": Value("string"),
            "nouns": List(Value("string")),
            "boxes": List(List(Value("float32"))),
            "box_scores": List(Value("float32")),
            "error": Value("string"),
        }
    )


def _read(path: str, perturbation):
    image = load_image(path)
    return perturbation(image) if perturbation is not None else image


def cache_annotations(
    dataset,
    processor,
    cache_dir=None,
    batch_size: int = 16,
    perturbation=None,
    state=None,
):
    """Stage 1: caption, nouns, boxes and box scores of every image, computed once and stored.

    Args:
        dataset: from `item_cli.data.load_dataset` (needs a `path` column).
        processor: the checkpoint's `ItemProcessor` (its captioner, detector and spaCy settings are used).
        cache_dir: cache root (default `default_cache_dir()`).
        perturbation: a test-time `Perturbation` applied to every image first (its own cache).

    Returns:
        the dataset with `caption`, `nouns`, `boxes`, `box_scores` and `error` columns added; `error` holds
        the reason an image could not be read (its annotations are empty), None otherwise.
    """
    state = state or _state()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    fingerprint = annotation_fingerprint(dataset, processor, perturbation, FileDigests(root))
    target = _cache_root(root, fingerprint) / f"annotations-{_key(fingerprint)}"
    if _read_fingerprint(target) != fingerprint:
        processor.to(state.device)

    def annotate(batch):
        count = len(batch["path"])
        images, readable, errors = [], [], [None] * count
        for i, path in enumerate(batch["path"]):
            try:
                images.append(_read(path, perturbation))
                readable.append(i)
            except (ValueError, TypeError, OSError) as error:
                errors[i] = str(error)
        captions = processor.caption(images)
        nouns = [list(names)[: processor.max_objects] for names in processor.extract_nouns(captions)]
        boxes, scores = processor.ground(images, nouns)
        out = {"caption": [""] * count, "nouns": [[] for _ in range(count)], "boxes": [[] for _ in range(count)],
               "box_scores": [[] for _ in range(count)], "error": errors}
        for j, i in enumerate(readable):
            out["caption"][i] = captions[j]
            out["nouns"][i] = nouns[j]
            out["boxes"][i] = [None if box is None else [float(v) for v in box] for box in boxes[j]]
            out["box_scores"][i] = [float(score) for score in scores[j]]
        return out

    return _sharded_map(
        dataset, annotate, annotation_features(dataset), target, fingerprint,
        f"Captioning and grounding{' (' + perturbation.name + ')' if perturbation else ''}", batch_size, state,
    )


def drop_unreadable(annotated, errors: list | None = None):
    """Report (path and reason) and remove the rows stage 1 could not read."""
    reasons = annotated["error"]
    bad = [i for i, reason in enumerate(reasons) if reason is not None]
    if not bad:
        return annotated
    paths = annotated.select(bad)["path"]
    for path, i in zip(paths, bad):
        report_skipped(path, reasons[i], errors)
    bad_set = set(bad)
    return annotated.select([i for i in range(len(reasons)) if i not in bad_set])


def feature_features(annotated, slots: int, dim: int, max_objects: int, dtype: str):
    """The `datasets.Features` of stage 2's output."""
    from datasets import Array2D, Features, List, Value

    return Features(
        {
            **annotated.features,
            "image_embeds": Array2D(shape=(slots, dim), dtype=dtype),
            "text_embeds": Array2D(shape=(slots, dim), dtype=dtype),
            "object_mask": List(Value("bool"), length=max_objects),
        }
    )


def encode_rows(processor, images, batch, return_tensors="pt") -> dict:
    """Model inputs for images with stored annotations: no captioner, spaCy or detector runs."""
    return dict(processor.encode(images, batch["caption"], batch["nouns"], batch["boxes"], return_tensors=return_tensors))


def cache_features(
    annotated,
    processor,
    model,
    cache_dir=None,
    batch_size: int = 16,
    perturbation=None,
    dtype: str = "float16",
    state=None,
):
    """Stage 2: the frozen backbone's embeddings of every slot, computed once and stored.

    Args:
        annotated: stage 1's output without unreadable rows (`drop_unreadable`).
        model: an `ItemForImageClassification` (only its backbone runs).
        dtype: storage dtype, "float16" (half the disk; read back as float32) or "float32".

    Returns:
        the dataset with `image_embeds` and `text_embeds` (1 + K, D) and `object_mask` (K) added.
    """
    import torch

    if dtype not in FEATURE_DTYPES:
        raise ValueError(f"dtype={dtype!r}; store features as one of {FEATURE_DTYPES}.")
    if any(reason is not None for reason in annotated["error"]):
        raise ValueError("The annotated dataset still has unreadable rows; pass it through drop_unreadable first.")
    state = state or _state()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    annotation_key = _key(annotation_fingerprint(annotated, processor, perturbation, FileDigests(root)))
    fingerprint = feature_fingerprint(annotation_key, processor, model, dtype, perturbation)
    fingerprint["data"] = data_fingerprint(annotated)
    target = root / fingerprint["data"] / f"features-{_key(fingerprint)}"
    if _read_fingerprint(target) != fingerprint:
        model.to(state.device)
    numpy_dtype = np.dtype(dtype)

    def embed(batch):
        images = [_read(path, perturbation) for path in batch["path"]]
        inputs = encode_rows(processor, images, batch)
        device = next(model.parameters()).device
        with torch.no_grad():
            embeddings = model.forward_features(**{key: value.to(device) for key, value in inputs.items()})
        return {
            "image_embeds": embeddings.image_embeds.float().cpu().numpy().astype(numpy_dtype),
            "text_embeds": embeddings.text_embeds.float().cpu().numpy().astype(numpy_dtype),
            "object_mask": inputs["object_mask"].cpu().numpy(),
        }

    slots, dim = 1 + processor.max_objects, model.config.embedding_dim
    return _sharded_map(
        annotated, embed, feature_features(annotated, slots, dim, processor.max_objects, dtype), target, fingerprint,
        f"Embedding with the backbone{' (' + perturbation.name + ')' if perturbation else ''}", batch_size, state,
    )


def cached_features(
    dataset,
    processor,
    model,
    cache_dir=None,
    batch_size: int = 16,
    perturbation=None,
    dtype: str = "float16",
    errors: list | None = None,
    state=None,
):
    """Both stages: the dataset with annotations and features, unreadable images reported and removed."""
    annotated = cache_annotations(dataset, processor, cache_dir, batch_size, perturbation, state)
    annotated = drop_unreadable(annotated, errors)
    if len(annotated) == 0:
        raise ValueError("None of the images could be read; see the skipped files above.")
    return cache_features(annotated, processor, model, cache_dir, batch_size, perturbation, dtype, state)
