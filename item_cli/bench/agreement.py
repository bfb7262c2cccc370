"""What speed costs, as far as random weights can tell: how closely a faster variant reproduces the default one
on the same inputs. (Whether that costs accuracy can only be measured on real weights and real data.)

- embeddings: the cosine similarity between a variant's and the default's embedding of every used slot
  (int8 quantization; region pooling instead of crops);
- the head's output: the change in the fake probability, with the same head weights in both;
- boxes: the share of the default's boxes (each noun's best box) that the variant finds again with IoU >= 0.5
  (a smaller detector input).
"""

from __future__ import annotations

import numpy as np


def embedding_agreement(reference: dict, other: dict) -> dict:
    """Cosine similarity of the image and text embeddings of the slots used in both, and the probability change."""
    out = {}
    used = np.concatenate([np.ones((len(reference["object_mask"]), 1), bool),
                           _host(reference["object_mask"]).astype(bool) & _host(other["object_mask"]).astype(bool)], axis=1)
    for name in ("image_embeds", "text_embeds"):
        a, b = _host(reference[name])[used], _host(other[name])[used]
        cosine = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
        out[name] = {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()), "slots": int(used.sum())}
    change = np.abs(_host(reference["fake_probability"]) - _host(other["fake_probability"]))
    out["fake_probability_change"] = {"mean": float(change.mean()), "max": float(change.max())}
    return out


def _host(tensor) -> np.ndarray:
    """A tensor on any device (GPU runs compare GPU outputs) as a numpy array; float tensors as float32."""
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_recall(reference_annotations, other_annotations, threshold: float = 0.5) -> dict:
    """Share of the reference's boxes that the other variant finds again for the same noun (IoU >= threshold)."""
    found = total = 0
    for reference, other in zip(reference_annotations, other_annotations):
        for noun, box in zip(reference.nouns, reference.boxes):
            if box is None:
                continue
            total += 1
            match = other.boxes[other.nouns.index(noun)] if noun in other.nouns else None
            found += int(match is not None and iou(box, match) >= threshold)
    return {"boxes": total, "found_again": found, "recall": found / total if total else float("nan"), "iou_threshold": threshold}
