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
    item evaluate --model M --data wild=/data/wild --webp-quality 90 75 --noise-sigma 5 --social 1080:85 --columns all
    item evaluate --compare lab_a/run.json lab_b/run.json   # same images and labels? exit 0 if so, 1 if not

Every run writes run.json (the checkpoint's identity, each set's fingerprint, the perturbations, threshold,
seed and library versions) and run-sets.json (each set's content keys and labels), which --compare reads.
"""

from pathlib import Path

from ..args import add_cache, add_model, add_options, cache_options, command_parser, source_options
from ..console import emit, report_skipped, status
from ..data import Skipped


def build_parser(prog):
    from ..evaluation.sets import add_set_arguments
    from ..evaluation.tables import ALL_COLUMNS, DEFAULT_COLUMNS, TABLE_COLUMNS

    parser = command_parser(prog, __doc__)
    add_model(parser, required=False)  # required unless --compare (checked in run)
    add_set_arguments(parser)
    parser.add_argument("--output", default="item-evaluation", metavar="DIR", help="folder for the result files")
    parser.add_argument("--jpeg-quality", type=int, nargs="*", default=[], metavar="Q",
                        help="JPEG qualities to test, e.g. 95 75 50 30 (default: none)")
    parser.add_argument("--blur-sigma", type=float, nargs="*", default=[], metavar="S",
                        help="Gaussian blur sigmas in pixels to test, e.g. 1 2 3 (default: none)")
    parser.add_argument("--downscale", type=float, nargs="*", default=[], metavar="F",
                        help="down-scaling factors to test, e.g. 0.5 (default: none)")
    parser.add_argument("--webp-quality", type=int, nargs="*", default=[], metavar="Q",
                        help="WebP qualities to test, e.g. 90 75 50 (default: none)")
    parser.add_argument("--noise-sigma", type=float, nargs="*", default=[], metavar="S",
                        help="additive Gaussian noise sigmas in 0-255 pixel units, e.g. 3 5 10, seeded with --seed "
                             "(default: none)")
    parser.add_argument("--center-crop", type=float, nargs="*", default=[], metavar="F",
                        help="centre crops keeping this fraction of each side, e.g. 0.9 0.7 0.5 (default: none)")
    parser.add_argument("--social", nargs="*", default=[], metavar="SIDE:Q",
                        help="social-network chain: down-scale to this long side, then JPEG at Q, e.g. 1080:85 720:70 "
                             "(default: none)")
    parser.add_argument("--fake-only-jpeg", type=int, default=None, metavar="Q",
                        help="JPEG-compress the FAKE images only at quality Q (the disputed 'JPEG 96 on the fakes' "
                             "condition); it puts a format difference between the classes (a warning says so)")
    parser.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                        help="compare two runs' run.json files (or output folders): same images and labels? which sets "
                             "differ, by how many files; nothing is evaluated")
    add_options(parser, "--equalize", "--threshold", "--max-per-class", "--seed")
    parser.add_argument("--columns", nargs="+", choices=(*TABLE_COLUMNS, ALL_COLUMNS), default=list(DEFAULT_COLUMNS),
                        metavar="METRIC", help=f"metric columns of table.md/.tex/.csv, in order, of "
                                               f"{' '.join(TABLE_COLUMNS)}, or {ALL_COLUMNS}")
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

    if args.compare:
        return _compare(args.compare)
    if not args.model:
        raise ValueError("--model is required (the checkpoint to evaluate), unless you --compare two runs.")
    if args.gallery_size < 0:
        raise ValueError(f"--gallery-size {args.gallery_size}: pass 0 (no gallery) or a positive number, e.g. 6.")
    equalize = parse_equalize(args.equalize)
    perturbations = perturbations_from_args(args.jpeg_quality, args.blur_sigma, args.downscale, args.webp_quality,
                                            args.noise_sigma, args.center_crop, args.social, seed=args.seed)
    if args.fake_only_jpeg is not None and not 1 <= args.fake_only_jpeg <= 100:
        raise ValueError(f"--fake-only-jpeg {args.fake_only_jpeg}: pass a JPEG quality from 1 to 100, e.g. 96.")
    output = Path(args.output)
    sets, protocol = sets_from_arguments(args.data, args.protocol, args.protocol_root, args.role,
                                         manifest_dir=output / "manifests", until=args.until)
    plots = not args.no_plots
    if plots and not plotting_available():  # said before the work, and the numbers are all written
        status(f"matplotlib is not installed: no PNG plots this time ({PLOTS_HINT} adds them)")
        plots = False
    cache = cache_options(args)
    results = evaluate(
        args.model, sets, output, perturbations, threshold=args.threshold, cache_dir=cache["cache_dir"],
        batch_size=cache["batch_size"], layout=args.layout, split=args.split, generator=args.generator,
        storage_dtype=cache["storage_dtype"], plots=plots, revision=args.revision,
        decode_workers=cache["decode_workers"], decode_timeout_s=cache["decode_timeout_s"],
        max_image_pixels=cache["max_image_pixels"], equalize=equalize,
        max_per_class=args.max_per_class, seed=args.seed, columns=args.columns, report=not args.no_report,
        gallery_size=args.gallery_size, protocol=protocol, fake_only_jpeg=args.fake_only_jpeg,
        data_options=source_options(args),
    )
    if results is None:  # a non-main process under accelerate launch
        return 0
    report_skipped([Skipped(item["path"], item["reason"]) for item in results["skipped"]])
    emit((output / "table.md").read_text())
    status(f"wrote {', '.join(results['files'])} to {args.output}")
    return 0


def _compare(paths) -> int:
    """Print how two runs differ; exit 0 when they used the same images and labels, 1 when not."""
    from ..evaluation.compare import compare_runs, describe_comparison

    result = compare_runs(*paths)
    emit(describe_comparison(result))
    return 0 if result["same_data"] else 1
