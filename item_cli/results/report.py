"""How `item detect` shows one answer: a text block or a JSON line on stdout, a warning line for a skipped input,
and the explanation picture (`--overlay DIR`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from item_detector.provenance_item import summary_lines

from ..console import emit
from ..data import Skipped, display_path

logger = logging.getLogger("item_cli.commands.detect")
OVERLAY_MAX_SIZE = 1600  # longer side of an explanation picture: legible, and a 6000-px photo is not redrawn at full size


def overlay_name(path) -> str:
    """The explanation picture's file name: the image's name and a short hash of its whole path, so that two
    folders' `a.jpg` never overwrite each other."""
    digest = hashlib.sha256(os.fsencode(os.fspath(path))).hexdigest()[:10]
    stem = "".join(char if char.isalnum() or char in "-_." else "_" for char in Path(os.fsdecode(path)).stem)[:60]
    return f"{stem}-{digest}.png"


def write_overlay(image, result: dict, folder: Path, path) -> str:
    """Draw the explanation picture of one result into `folder` (no pipeline needed: the scoring may have run
    elsewhere, or from the cache); returns its path."""
    from item_detector.visualization_item import draw_explanation

    target = folder / overlay_name(path)
    draw_explanation(image, result, max_size=OVERLAY_MAX_SIZE).save(target)
    return str(target)


def format_result(path, result) -> str:
    label = "FAKE" if result["is_fake"] else "real"
    band = result.get("unsure_band")
    band = f", unsure band [{band[0]:.3f}, {band[1]:.3f})" if band else ""
    if result.get("verdict") == "unsure":  # in the checkpoint's abstention band: the threshold's side is shown too
        label = f"UNSURE (leans {label})"
    lines = [f"{display_path(path)}: {label}  p(fake)={result['fake_probability']:.3f} (threshold {result['threshold']:.3f}{band})",
             f"  caption: {result['caption']!r}  (image-caption similarity {result['global_similarity']:+.3f})"]
    for item in result["objects"]:
        box = ", ".join(f"{v:.0f}" for v in item["box"])
        score = "given" if item["box_score"] is None else f"{item['box_score']:.2f}"
        lines.append(f"  {item['noun']:<16} similarity {item['similarity']:+.3f}  box [{box}]  detector {score}")
    if result["unfound_nouns"]:
        lines.append(f"  not found in the image: {', '.join(result['unfound_nouns'])}")
    lines += provenance_lines(result)
    return "\n".join(lines)


def provenance_lines(result: dict) -> list[str]:
    """A line or two on the file's provenance (what it found, or that absence proves nothing), and the verdict's
    source when a provenance policy decided it."""
    lines = [f"  {line}" for line in summary_lines(result.get("provenance"), hint=False)]
    if result.get("decided_by"):
        lines.append(f"  verdict decided by {result['decided_by']}")
    return lines


def report(path, outcome, as_json: bool) -> None:
    """One answer on stdout (text, or a JSON line); a skipped input as a warning line (with --json: a JSON line
    with an "error" field, so that a consumer can count them)."""
    if isinstance(outcome, Skipped):
        if as_json:
            emit(json.dumps({"path": str(path), "error": outcome.reason}))
        else:
            logger.warning("skipped %s: %s", display_path(path), outcome.reason)
    elif as_json:
        emit(json.dumps({"path": str(path), **outcome}))  # ASCII: names that are not UTF-8 travel as \udcXX escapes
    else:
        emit(_writable(format_result(path, outcome)))


def _writable(text: str) -> str:
    """`text` with what standard output's encoding cannot write as backslash escapes: a Japanese file name or
    caption in a Latin-1 or ASCII locale must not end the run with a UnicodeEncodeError."""
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)
