"""`item evaluate --model M --data [NAME=]PATH ... | --protocol NAME_OR_FILE --protocol-root DIR [options]`.

Per set (or, for one unnamed folder, per generator): accuracy on real, on fake, at the model's threshold, AP,
ROC-AUC and oracle accuracy, with a mean row, clean and under each test-time perturbation. Writes to --output:
the results table as a paper prints it (table.md, table.tex, table.csv: sets in the given order, a mean row,
numbers in %), metrics.csv / .json / .md, scores.csv (one row per image and condition, with its set),
skipped.csv, PNG plots, and report.html with a gallery of the most confident mistakes per set drawn as
explanation pictures (gallery/); prints table.md.

    item evaluate --model M --data progan=/data/progan --data sd15=/data/sd15.csv --max-per-class 1000
    item evaluate --model M --protocol universalfakedetect --protocol-root ~/UniversalFakeDetect --jpeg-quality 75
    item evaluate --model M --data /data/genimage_val --equalize jpeg:95 --columns acc_real acc_fake acc ap
"""

from pathlib import Path

from ..args import add_cache, add_model, add_options, cache_options, command_parser
from ..console import emit, report_skipped, status
from ..data import Skipped


def build_parser(prog):
    from ..evaluation.sets import add_set_arguments
    from ..evaluation.tables import DEFAULT_COLUMNS, TABLE_COLUMNS

    parser = command_parser(prog, __doc__)
    add_model(parser)
    add_set_arguments(parser)
    parser.add_argument("--output", default="item-evaluation", metavar="DIR", help="folder for the result files")
    parser.add_argument("--jpeg-quality", type=int, nargs="*", default=[], metavar="Q",
                        help="JPEG qualities to test, e.g. 95 75 50 30 (default: none)")
    parser.add_argument("--blur-sigma", type=float, nargs="*", default=[], metavar="S",
                        help="Gaussian blur sigmas in pixels to test, e.g. 1 2 3 (default: none)")
    parser.add_argument("--downscale", type=float, nargs="*", default=[], metavar="F",
                        help="down-scaling factors to test, e.g. 0.5 (default: none)")
    add_options(parser, "--equalize", "--threshold", "--max-per-class", "--seed")
    parser.add_argument("--columns", nargs="+", choices=TABLE_COLUMNS, default=list(DEFAULT_COLUMNS), metavar="METRIC",
                        help=f"metric columns of table.md/.tex/.csv, in order, of {' '.join(TABLE_COLUMNS)}")
    parser.add_argument("--gallery-size", type=int, default=6, metavar="K",
                        help="most confident false positives and false negatives shown per set in report.html (0: none)")
    parser.add_argument("--no-report", action="store_true", help="skip report.html and its gallery of explanation pictures")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    add_cache(parser)
    return parser


def run(args) -> int:
    from ..data.perturb import parse_equalize, perturbations_from_args
    from ..evaluation.evaluate import evaluate
    from ..evaluation.report import PLOTS_HINT, plotting_available
    from ..evaluation.sets import sets_from_arguments

    if args.gallery_size < 0:
        raise ValueError(f"--gallery-size {args.gallery_size}: pass 0 (no gallery) or a positive number, e.g. 6.")
    equalize = parse_equalize(args.equalize)
    perturbations = perturbations_from_args(args.jpeg_quality, args.blur_sigma, args.downscale)
    output = Path(args.output)
    sets, protocol = sets_from_arguments(args.data, args.protocol, args.protocol_root, args.role,
                                         manifest_dir=output / "manifests")
    plots = not args.no_plots
    if plots and not plotting_available():  # said before the work, and the numbers are all written
        status(f"matplotlib is not installed: no PNG plots this time ({PLOTS_HINT} adds them)")
        plots = False
    cache = cache_options(args)
    results = evaluate(
        args.model, sets, output, perturbations, threshold=args.threshold, cache_dir=cache["cache_dir"],
        batch_size=cache["batch_size"], layout=args.layout, split=args.split, generator=args.generator,
        storage_dtype=cache["storage_dtype"], plots=plots, revision=args.revision,
        decode_workers=cache["decode_workers"], decode_timeout_s=cache["decode_timeout_s"], equalize=equalize,
        max_per_class=args.max_per_class, seed=args.seed, columns=args.columns, report=not args.no_report,
        gallery_size=args.gallery_size, protocol=protocol,
    )
    if results is None:  # a non-main process under accelerate launch
        return 0
    report_skipped([Skipped(item["path"], item["reason"]) for item in results["skipped"]])
    emit((output / "table.md").read_text())
    status(f"wrote {', '.join(results['files'])} to {args.output}")
    return 0
