"""The model card (README.md) written into every checkpoint folder by `item build` and `item train`."""

import json
from pathlib import Path

CARD = """---
library_name: transformers
pipeline_tag: image-classification
license: apache-2.0
tags:
- custom_code
- ai-generated-image-detection
- fake-image-detection
- item
base_model:
- {backbone}
metrics:
- accuracy
- average_precision
- roc_auc
---

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
| noun extraction | spaCy `{spacy_model}` (install it: `pip install spacy` and `python -m spacy download {spacy_model}`) |
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
{training}
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


def write_model_card(
    folder: str | Path,
    backbone: str,
    captioner: str,
    detector: str,
    spacy_model: str,
    training: dict | None = None,
    results: dict | None = None,
) -> Path:
    """Write `folder/README.md`. `training` describes the data and arguments, `results` the validation metrics."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    threshold = config.get("decision_threshold", 0.5)
    training_text = ""
    if training or results:
        training_text = "\n## Training\n\n"
        if training:
            training_text += "".join(f"- {key}: `{value}`\n" for key, value in training.items())
        if results:
            training_text += "\n| validation metric | value |\n|---|---|\n"
            training_text += "".join(
                f"| {key} | {value:.4f} |\n" if isinstance(value, float) else f"| {key} | {value} |\n"
                for key, value in results.items()
            )
    card = CARD.format(
        backbone=backbone,
        captioner=captioner,
        detector=detector,
        spacy_model=spacy_model,
        head_state="yes" if training else "not yet: this checkpoint's head is untrained, its scores mean nothing",
        threshold=threshold,
        calibrated=", calibrated on validation data" if config.get("threshold_calibration") else "",
        training=training_text,
    )
    path = folder / "README.md"
    path.write_text(card)
    return path
