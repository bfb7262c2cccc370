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

import json
import tempfile
from pathlib import Path

from ..args import command_parser, positive_int, source_options
from ..console import emit, report_skipped, status


def build_parser(prog):
    from ..evaluation.sets import add_set_arguments

    parser = command_parser(prog, __doc__)
    add_set_arguments(parser, what="data to audit")
    parser.add_argument("--output", default=None, metavar="DIR", help="write audit.md and audit.json here")
    parser.add_argument("--equalize", default=None, metavar="jpeg:Q",
                        help="audit the images as this equalization re-encodes them (e.g. jpeg:95)")
    parser.add_argument("--fail-on-shortcut", action="store_true", help="exit with status 1 when a shortcut is flagged")
    parser.add_argument("--warn-auc", type=float, default=0.8, help="metadata ROC-AUC from which a shortcut is flagged")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of the metadata classifier")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and of --max-per-class")
    parser.add_argument("--max-model-images", type=positive_int, default=20000,
                        help="images the metadata classifier sees at most (the summaries cover every file)")
    parser.add_argument("--max-per-class", type=positive_int, default=None, metavar="N",
                        help="audit a seeded, balanced sample of up to N real and N fake images per set")
    parser.add_argument("--include-files", action="store_true", help="list every file's metadata in audit.json")
    return parser


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
