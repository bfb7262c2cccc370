"""`item evaluate --model DIR --data ROOT_OR_CSV [--jpeg-quality 95 75 50 30] [--blur-sigma 1 2 3] [--downscale 0.5]`.

Per generator: accuracy on real, on fake, at the model's threshold, AP, ROC-AUC and oracle accuracy, with a
mean row, clean and under each test-time perturbation. Writes metrics.csv / .json / .md, scores.csv (one row
per image and condition), skipped.csv (every file that gave no score, with the reason) and PNG plots to
--output, and prints metrics.md.
"""

from pathlib import Path

from ..args import add_cache, add_data, add_model, cache_options, command_parser
from ..console import emit


def build_parser(prog):
    parser = command_parser(prog, __doc__)
    add_model(parser)
    add_data(parser, help="test data: CNNDetection/GenImage-style folder or CSV manifest")
    parser.add_argument("--output", default="item-evaluation", help="folder for the result files")
    parser.add_argument("--jpeg-quality", type=int, nargs="*", default=[], metavar="Q", help="JPEG qualities, e.g. 95 75 50 30")
    parser.add_argument("--blur-sigma", type=float, nargs="*", default=[], metavar="S", help="Gaussian blur sigmas in pixels, e.g. 1 2 3")
    parser.add_argument("--downscale", type=float, nargs="*", default=[], metavar="F", help="down-scaling factors, e.g. 0.5")
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the checkpoint's)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    add_cache(parser)
    return parser


def run(args) -> int:
    from ..data.perturb import perturbations_from_args
    from ..evaluation.evaluate import evaluate

    perturbations = perturbations_from_args(args.jpeg_quality, args.blur_sigma, args.downscale)
    cache = cache_options(args)
    results = evaluate(
        args.model, args.data, args.output, perturbations, threshold=args.threshold, cache_dir=cache["cache_dir"],
        batch_size=cache["batch_size"], layout=args.layout, split=args.split, generator=args.generator,
        storage_dtype=cache["storage_dtype"], plots=not args.no_plots, revision=args.revision,
        decode_workers=cache["decode_workers"], decode_timeout_s=cache["decode_timeout_s"],
    )
    if results is None:  # a non-main process under accelerate launch
        return 0
    for item in results["skipped"]:
        print(f"skipped {item['path']}: {item['reason']}")  # on stderr: stdout is redirected while commands run
    emit((Path(args.output) / "metrics.md").read_text())
    print(f"wrote {', '.join(results['files'])} to {args.output}")
    return 0
