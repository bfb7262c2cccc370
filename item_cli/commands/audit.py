"""`item audit --data [NAME=]PATH ... | --protocol NAME_OR_FILE --protocol-root DIR [--equalize jpeg:95] [--output DIR]`.

Can file metadata alone (format, JPEG quality and tables, chroma subsampling, size, EXIF, ICC, file size) tell
the real images from the fake ones? Reads every file's header (no pixels), measures with a cross-validated
classifier how well the metadata separate the classes, overall and per set, and names the property that gives
them away. Each named set is audited as its own generator (its records get the set's name). Prints the report
as Markdown; --output writes audit.md and audit.json. --equalize audits the images as `item evaluate
--equalize` / `item train --equalize` re-encode them (what survives equalization). --fail-on-shortcut exits
with status 1 when a shortcut is flagged (for CI).

    item audit --data /data/genimage_val --output audit-genimage
    item audit --protocol genimage --protocol-root ~/GenImage --equalize jpeg:95 --fail-on-shortcut
"""

import argparse
import json
import tempfile
from pathlib import Path

from ..args import add_options, command_parser, probability, source_options, whole_number
from ..console import emit, report_skipped, status


def build_parser(prog):
    from ..evaluation.sets import add_set_arguments

    parser = command_parser(prog, __doc__)
    add_set_arguments(parser)
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="write audit.md and audit.json here (default: print the report only)")
    add_options(parser, "--equalize")
    parser.add_argument("--fail-on-shortcut", action="store_true", help="exit with status 1 when a shortcut is flagged")
    parser.add_argument("--warn-auc", type=auc_threshold, default=0.8, metavar="AUC",
                        help="metadata ROC-AUC from which a shortcut is flagged")
    parser.add_argument("--folds", type=whole_number(2), default=5, metavar="K",
                        help="cross-validation folds of the metadata classifier")
    add_options(parser, "--seed")
    parser.add_argument("--max-model-images", type=whole_number(4), default=20000, metavar="N",
                        help="images the metadata classifier sees at most (the summaries cover every file)")
    add_options(parser, "--max-per-class")
    parser.add_argument("--include-files", action="store_true", help="list every file's metadata in audit.json")
    return parser


def auc_threshold(text: str) -> float:
    value = probability(text)
    if value <= 0.5:
        raise argparse.ArgumentTypeError(f"{text}: a shortcut needs an AUC above 0.5 (chance), e.g. 0.8")
    return value


def run(args) -> int:
    from ..audit import audit, audit_equalized
    from ..data import require_labels
    from ..data.perturb import parse_equalize
    from ..evaluation.sets import load_sets, sets_from_arguments

    equalize = parse_equalize(args.equalize)
    with tempfile.TemporaryDirectory(prefix="item-audit-manifests-") as scratch:
        manifests = Path(args.output) / "manifests" if args.output else Path(scratch)
        sets, protocol = sets_from_arguments(args.data, args.protocol, args.protocol_root, args.role, manifests,
                                             until=args.until)
        loaded = load_sets(sets, args.layout, args.split, args.generator, args.max_per_class, args.seed, protocol,
                           source_options(args))
    require_labels(loaded.records, "the audit")
    report_skipped(loaded.skipped)
    options = dict(folds=args.folds, seed=args.seed, warn_auc=args.warn_auc, max_model_images=args.max_model_images)
    if equalize is None:
        report = audit(loaded.records, **options)
    else:
        report = audit_equalized(loaded.records, equalize, **options)
    markdown = report.to_markdown()
    emit(markdown)
    if args.output:
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "audit.md").write_text(markdown + "\n")
        content = report.to_dict(include_files=args.include_files)
        content["sets"] = [{"set": item.name, **loaded.counts[item.name]} for item in loaded.sets]
        content["protocol"], content["equalize"] = protocol, None if equalize is None else equalize.name
        (output / "audit.json").write_text(json.dumps(content, indent=2) + "\n")
        status(f"wrote audit.md, audit.json to {args.output}")
    return 1 if args.fail_on_shortcut and report.flagged else 0
