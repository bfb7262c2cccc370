"""Markdown rendering of an `AuditReport`: the verdict, then tables a researcher can paste into a paper."""

from __future__ import annotations

import math

from item_cli.audit.summary import byte_size, percent, spread

SKIPPED_SHOWN = 20
PROPERTY_NOTE = (
    "Cross-validated ROC-AUC of each property alone. Around 0.5 means no information; on a few hundred images"
    " or fewer, chance values scatter, below 0.5 too. JPEG quality, quantization tables and chroma subsampling"
    " are measured among the JPEG files only (\"-\" when a class has none)."
)


def _cell(text) -> str:
    """Table-safe text: pipes escaped, missing values as "-"."""
    return "-" if text is None or text == "" else str(text).replace("|", "\\|")


def _auc(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def _shares(values: dict, top: int = 3) -> str:
    if not values:
        return "-"
    shown = ", ".join(f"{name} {percent(share)}" for name, share in list(values.items())[:top])
    return shown + (f", +{len(values) - top} more" if len(values) > top else "")


def _size(summary: dict) -> str:
    if summary["distinct_sizes"] == 1:
        return summary["most_common_size"]["size"]
    width, height = summary["width"]["median"], summary["height"]["median"]
    common = summary["most_common_size"]
    most_common = f"most common {common['size']} ({percent(common['share'])})"
    return f"median {width:.0f}x{height:.0f}; {summary['distinct_sizes']} sizes, {most_common}"


def _optional_share(share: float | None) -> str:
    return "-" if share is None else percent(share)


# (row title, summary -> cell) for the per-class table.
CLASS_ROWS = (
    ("images", lambda s: s["images"]),
    ("formats", lambda s: _shares(s["formats"])),
    ("JPEG quality (IJG)", lambda s: spread(s["jpeg_quality"])),
    ("JPEG with custom tables", lambda s: _optional_share(s["jpeg_custom_tables_share"])),
    ("chroma subsampling", lambda s: _shares(s["subsampling"])),
    ("size (WxH)", _size),
    ("aspect ratio (W/H)", lambda s: spread(s["aspect_ratio"], 2)),
    ("file size (median)", lambda s: byte_size(s["file_bytes"]["median"])),
    ("bits per pixel (median)", lambda s: f"{s['bits_per_pixel']['median']:.2f}"),
    ("EXIF", lambda s: percent(s["exif_share"])),
    ("EXIF camera make/model", lambda s: percent(s["camera_share"])),
    ("ICC profile", lambda s: percent(s["icc_share"])),
    ("text metadata", lambda s: percent(s["text_share"])),
    ("provenance metadata (C2PA, source type, generation parameters)", lambda s: percent(s["provenance_share"])),
    ("colour modes", lambda s: _shares(s["modes"])),
)


def _verdict(report) -> list[str]:
    if report.warnings:
        return [f"> **Warning:** {_cell(w)}" for w in report.warnings] + [
            ">",
            "> A detector can reach this score without looking at the image content. Re-encode both classes the"
            " same way (format, quality, size) or report results per format before trusting its numbers.",
        ]
    if math.isnan(report.metadata_auc):
        return ["**No verdict:** the metadata AUC could not be computed (see the notes)."]
    return [
        f"**No shortcut found:** metadata alone reach ROC-AUC {report.metadata_auc:.2f} "
        f"(a warning is issued from {report.warn_auc:.2f})."
    ]


def _class_table(report) -> list[str]:
    summaries = {name: s for name, s in report.per_class.items() if s is not None}
    if not summaries:
        return ["No readable image."]
    lines = ["| | " + " | ".join(summaries) + " |", "|---|" + "---|" * len(summaries)]
    for title, cell in CLASS_ROWS:
        lines.append(f"| {title} | " + " | ".join(_cell(cell(s)) for s in summaries.values()) + " |")
    return lines


def _feature_table(report) -> list[str]:
    named = {s["feature"]: s["description"] for s in report.shortcuts}
    lines = ["| property | ROC-AUC alone | shortcut |", "|---|---|---|"]
    for name, auc in report.feature_aucs.items():
        lines.append(f"| {name} | {_auc(auc)} | {_cell(named.get(name))} |")
    return lines


def _generator_table(report) -> list[str]:
    lines = [
        "| generator | class | images | formats | JPEG quality | size (WxH) | file size (median) | EXIF"
        " | metadata AUC (vs) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for generator, result in report.per_generator.items():
        auc = f"{_auc(result['metadata_auc'])} ({result['compared_with']})"
        for name in ("real", "fake"):
            s = result[name]
            if s is None:
                continue
            cells = [generator, name, s["images"], _shares(s["formats"]), spread(s["jpeg_quality"]), _size(s),
                     byte_size(s["file_bytes"]["median"]), percent(s["exif_share"]), auc]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            auc = ""  # once per generator
    return lines


def _skipped_table(report) -> list[str]:
    lines = ["| file | reason |", "|---|---|"]
    lines += [f"| {_cell(s['path'])} | {_cell(s['reason'])} |" for s in report.skipped[:SKIPPED_SHOWN]]
    if len(report.skipped) > SKIPPED_SHOWN:
        lines.append(f"| ... and {len(report.skipped) - SKIPPED_SHOWN} more | |")
    return lines


def render(report) -> str:
    """The whole report as Markdown."""
    setting = (
        f"{len(report.files)} files read, {len(report.skipped)} skipped. Metadata classifier: L2 logistic regression"
        f" on {report.modelled_images} images, {report.folds}-fold stratified cross-validation (seed {report.seed});"
        " ROC-AUC 0.5 means the metadata carry no label information, 1.0 that they give every label away."
    )
    parts = ["# Shortcut audit: what the files alone reveal", "", *_verdict(report), "", setting]
    parts += [f"- {note}" for note in report.notes]
    parts += ["", f"Metadata ROC-AUC, all properties together: **{_auc(report.metadata_auc)}**", ""]
    parts += ["## Per class", "", *_class_table(report), ""]
    parts += ["## Per property", "", PROPERTY_NOTE, "", *_feature_table(report), ""]
    parts += ["## Per generator", "", *_generator_table(report), ""]
    if report.skipped:
        parts += ["## Skipped files", "", *_skipped_table(report), ""]
    return "\n".join(parts)
