"""`item detect IMAGE_OR_FOLDER... --model M [--json]`: label, fake probability, caption and objects per image.

Every input file is answered for, exactly once: a result, or a skipped-file record with the reason (with
--json, one JSON line per file; skipped files have an "error" field). Files are decoded in worker processes
(a file that hangs or crashes its decoder is skipped), results stream as they are computed, and the exit code
is 0 when at least one image was scored. Objects are listed least aligned first (lowest image-text similarity).
`--overlay DIR` also writes each image's explanation picture (boxes coloured by similarity, verdict, caption).
Beside each verdict: the file's provenance (Content Credentials, generator metadata, known invisible watermarks;
a `provenance` field in JSON), read by the decoding workers from the same bytes. `--provenance-policy
signed-ai-decides` lets a trusted, valid C2PA claim of AI generation set the verdict (default `report`: beside it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path

from item_detector.provenance_item import (
    POLICIES, TRUST_ANCHORS_ENV, apply_policy, load_trust_anchors, missing_extra, summary_lines,
)

from ..args import add_decoding, add_model, add_options, command_parser
from ..console import Progress, emit, plural, status
from ..data import FileFinder, Skipped, display_path
from ..data.decode import ImageReader
from ..model_source import check_model_source

logger = logging.getLogger(__name__)
OVERLAY_MAX_SIZE = 1600  # longer side of an explanation picture: legible, and a 6000-px photo is not redrawn at full size


def build_parser(prog):
    parser = command_parser(prog, __doc__)
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    add_model(parser)
    add_options(parser, "--json", "--batch-size", "--device", "--threshold")
    parser.add_argument("--overlay", default=None, metavar="DIR",
                        help="also write each image's explanation picture here (one PNG per image)")
    add_decoding(parser)
    parser.add_argument("--provenance-policy", choices=(*POLICIES, "off"), default="report",
                        help="report: provenance beside the verdict; signed-ai-decides: a C2PA manifest whose signature "
                             "holds, from a signer in --c2pa-trust-anchors, that claims AI generation sets FAKE; off: "
                             "do not read it (default: %(default)s)")
    parser.add_argument("--c2pa-trust-anchors", default=None, metavar="PEM",
                        help=f"C2PA trust anchors (PEM file of CA certificates; default ${TRUST_ANCHORS_ENV} or none: "
                             "every signer is reported untrusted). Nothing is downloaded.")
    return parser


def load_pipeline(model: str, device=None, revision=None):
    """The checkpoint's own image-classification pipeline (remote code)."""
    import torch
    from transformers import pipeline

    check_model_source(model, revision)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return pipeline("image-classification", model=model, trust_remote_code=True, device=device, revision=revision)


def detect(pipe, decoded_images, batch_size: int = 8, threshold: float | None = None, provenance_policy: str = "report"):
    """Yield `(path, explanation dict or Skipped, the decoded image or None)` for every `Decoded` of
    `decoded_images`, in order.

    Images are scored `batch_size` at a time in one pipeline call; if a batch fails, its images are scored one by
    one, so that one image the networks cannot take costs only itself.
    """
    batch = []
    for decoded in decoded_images:
        if decoded.error is not None:
            yield decoded.path, Skipped(decoded.path, decoded.error), None
            continue
        batch.append(decoded)
        if len(batch) == batch_size:
            yield from _score(pipe, batch, threshold, provenance_policy)
            batch = []
    if batch:
        yield from _score(pipe, batch, threshold, provenance_policy)


def _score(pipe, batch, threshold, provenance_policy="report"):
    """Scored batch; each result gets its file's provenance (read by the decoding worker) beside the verdict."""
    for decoded, result in _score_batch(pipe, batch, threshold):
        if isinstance(result, Skipped) or decoded.provenance is None:
            yield decoded.path, result, decoded.image if not isinstance(result, Skipped) else None
        else:
            yield decoded.path, apply_policy(result, decoded.provenance, provenance_policy), decoded.image


def _score_batch(pipe, batch, threshold):
    # The pipeline gets decoded pixels: the workers already read each file's provenance from its bytes. A checkpoint
    # whose remote code predates provenance (no `read_provenance`) knows no `provenance` option.
    options = {"explain": True, "provenance": False} if hasattr(pipe, "read_provenance") else {"explain": True}
    if threshold is not None:
        options["threshold"] = threshold
    try:
        results = pipe([decoded.image for decoded in batch], batch_size=len(batch), **options)
    except Exception:  # noqa: BLE001 - isolate the image that failed: score one by one
        results = None
    for i, decoded in enumerate(batch):
        if results is not None:
            yield decoded, results[i]
            continue
        try:
            yield decoded, pipe(decoded.image, **options)
        except Exception as error:  # noqa: BLE001 - one image must not end the run
            yield decoded, Skipped(decoded.path, f"scoring failed ({type(error).__name__}: {error})")


def overlay_name(path) -> str:
    """The explanation picture's file name: the image's name and a short hash of its whole path, so that two
    folders' `a.jpg` never overwrite each other."""
    digest = hashlib.sha256(os.fsencode(os.fspath(path))).hexdigest()[:10]
    stem = "".join(char if char.isalnum() or char in "-_." else "_" for char in Path(os.fsdecode(path)).stem)[:60]
    return f"{stem}-{digest}.png"


def write_overlay(pipe, image, result, folder: Path, path) -> str:
    """Draw the explanation picture of one result into `folder`; returns its path."""
    target = folder / overlay_name(path)
    pipe.draw_explanation(image, result, max_size=OVERLAY_MAX_SIZE).save(target)
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


def run(args) -> int:
    check_model_source(args.model, args.revision)  # before any work: a mistyped folder is one clear line
    if load_trust_anchors(args.c2pa_trust_anchors) is None and args.provenance_policy == "signed-ai-decides":
        status(f"--provenance-policy signed-ai-decides without --c2pa-trust-anchors (or ${TRUST_ANCHORS_ENV}): no signer "
               "is trusted, so no manifest can decide a verdict")
    candidates, counts = [], Counter()
    for path, problem in FileFinder().find(args.inputs):
        if problem is None:
            candidates.append(path)
        else:
            counts["skipped"] += 1
            report(path, problem, args.json)
    if not candidates:
        logger.error("no image files found in the given paths (%s skipped)", plural(counts["skipped"], "entry", "entries"))
        return 1
    pipe = load_pipeline(args.model, args.device, args.revision)
    overlay = Path(args.overlay) if args.overlay else None
    if overlay is not None:
        overlay.mkdir(parents=True, exist_ok=True)
    if args.provenance_policy != "off" and missing_extra():
        status(missing_extra())
    with Progress(len(candidates), "Scoring") as progress, \
            ImageReader(workers=args.decode_workers, timeout_s=args.decode_timeout, max_pixels=args.max_image_pixels,
                        provenance=args.provenance_policy != "off", trust_anchors=args.c2pa_trust_anchors) as reader:
        for path, outcome, image in detect(pipe, reader.read(candidates), args.batch_size, args.threshold,
                                           args.provenance_policy):
            counts["skipped" if isinstance(outcome, Skipped) else "scored"] += 1
            if overlay is not None and image is not None:
                outcome = {**outcome, "overlay": write_overlay(pipe, image, outcome, overlay, path)}
            with progress.aside():  # a terminal's bar steps aside for the line
                report(path, outcome, args.json)
            progress.update(1)
    status(f"{plural(counts['scored'], 'image')} scored, {plural(counts['skipped'], 'file')} skipped")
    if overlay is not None and counts["scored"]:
        status(f"explanation pictures of the scored images in {display_path(overlay)}/")
    return 0 if counts["scored"] else 1
