"""One result row per input: what `item detect --output` writes, in Parquet or JSON Lines.

    path              the input's identity: its path as given, or (a data set's row) `SOURCE#ROW`
    content_sha256    sha256 of the bytes that were scored (None when the input could not be read at all)
    status            "scored"; "unreadable" (not an image this reader takes: the same bytes will never be);
                      "failed" (the networks failed on it, e.g. out of memory: tried again on the next run)
    error             the skipped reason (None when scored)
    label, fake_probability, is_fake, threshold, caption, global_similarity, objects, unfound_nouns, verdict,
    unsure_band, decided_by
                      the pipeline's `explain=True` result (None / empty when skipped); `verdict` is "unsure"
                      inside the checkpoint's abstention band, `decided_by` names a provenance policy that decided
    provenance        the file's provenance record (`provenance_item`) as JSON text, beside the verdict
    checkpoint        the checkpoint's identity (`identity.checkpoint_identity`: content, never a machine path)
    written_at        nanoseconds since the epoch when the row was written: the newer row of a path wins

A row is "done" for a later run when its checkpoint and content_sha256 match and its status is not "failed".
"""

from __future__ import annotations

import json
import time

import pyarrow as pa

from item_detector.configuration_item import in_unsure_band

SCORED, UNREADABLE, FAILED = "scored", "unreadable", "failed"
OBJECT = pa.struct([("noun", pa.string()), ("box", pa.list_(pa.float64())), ("box_score", pa.float64()),
                    ("similarity", pa.float64())])
SCHEMA = pa.schema([
    ("path", pa.string()), ("content_sha256", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("label", pa.string()), ("fake_probability", pa.float64()), ("is_fake", pa.bool_()), ("threshold", pa.float64()),
    ("caption", pa.string()), ("global_similarity", pa.float64()), ("objects", pa.list_(OBJECT)),
    ("unfound_nouns", pa.list_(pa.string())), ("verdict", pa.string()), ("unsure_band", pa.list_(pa.float64())),
    ("decided_by", pa.string()), ("provenance", pa.string()), ("checkpoint", pa.string()), ("written_at", pa.int64()),
])
INDEX_COLUMNS = ("path", "content_sha256", "status", "error", "threshold", "checkpoint", "written_at")


def scored_row(path: str, key: str | None, result: dict, checkpoint: str) -> dict:
    """The row of an `explain=True` pipeline result."""
    return {
        "path": path, "content_sha256": key, "status": SCORED, "error": None,
        "label": "fake" if result["is_fake"] else "real", "fake_probability": float(result["fake_probability"]),
        "is_fake": bool(result["is_fake"]), "threshold": float(result["threshold"]), "caption": result["caption"],
        "global_similarity": float(result["global_similarity"]),
        "objects": [{"noun": o["noun"], "box": [float(v) for v in o["box"]],
                     "box_score": None if o["box_score"] is None else float(o["box_score"]),
                     "similarity": float(o["similarity"])} for o in result["objects"]],
        "unfound_nouns": list(result["unfound_nouns"]),
        "verdict": result.get("verdict") or ("fake" if result["is_fake"] else "real"),
        "unsure_band": None if result.get("unsure_band") is None else [float(v) for v in result["unsure_band"]],
        "decided_by": result.get("decided_by"),
        "provenance": None if result.get("provenance") is None else json.dumps(result["provenance"], sort_keys=True),
        "checkpoint": checkpoint, "written_at": time.time_ns(),
    }


def skipped_row(path: str, key: str | None, reason: str, status: str, checkpoint: str) -> dict:
    """The row of an input that gives no result, and why."""
    return {
        "path": path, "content_sha256": key, "status": status, "error": reason, "label": None,
        "fake_probability": None, "is_fake": None, "threshold": None, "caption": None, "global_similarity": None,
        "objects": [], "unfound_nouns": [], "verdict": None, "unsure_band": None, "decided_by": None, "provenance": None,
        "checkpoint": checkpoint, "written_at": time.time_ns(),
    }


def relabelled(row: dict, threshold: float) -> dict:
    """A scored row decided again at `threshold` from its stored fake probability (no network runs); inside its
    unsure band the verdict stays "unsure", and a verdict a provenance policy decided stays as it was."""
    if row.get("decided_by"):
        return {**row, "written_at": time.time_ns()}
    probability, band = row["fake_probability"], row.get("unsure_band")
    is_fake = probability >= threshold
    label = "fake" if is_fake else "real"
    verdict = "unsure" if band and in_unsure_band(band, probability) else label
    return {**row, "threshold": float(threshold), "is_fake": is_fake, "label": label, "verdict": verdict,
            "written_at": time.time_ns()}


def as_result(row: dict) -> dict:
    """The `explain=True`-style result of a scored row (for `--json` and the text report)."""
    return {
        "labels": sorted([{"label": "fake", "score": row["fake_probability"]}, {"label": "real", "score": 1 - row["fake_probability"]}],
                         key=lambda item: -item["score"]),
        "fake_probability": row["fake_probability"], "is_fake": row["is_fake"], "threshold": row["threshold"],
        "caption": row["caption"], "global_similarity": row["global_similarity"],
        "objects": row["objects"], "unfound_nouns": row["unfound_nouns"], "verdict": row.get("verdict"),
        "unsure_band": row.get("unsure_band"), "decided_by": row.get("decided_by"),
        "provenance": None if row.get("provenance") is None else json.loads(row["provenance"]),
    }


def is_done(status: str, key: str | None, wanted_key: str | None) -> bool:
    """Whether a stored row answers an input whose bytes hash to `wanted_key` (None: could not be read now)."""
    return wanted_key is not None and key == wanted_key and status != FAILED
