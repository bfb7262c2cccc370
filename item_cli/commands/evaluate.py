"""`item evaluate --model DIR --data ROOT_OR_CSV [--jpeg-quality 95 75 50 30] [--blur-sigma 1 2 3] [--downscale 0.5]`.

Per generator: accuracy on real, on fake, at the model's threshold, AP, ROC-AUC and oracle accuracy, with a
mean row, clean and under each test-time perturbation. Writes metrics.csv / .json / .md, scores.csv (one row
per image and condition) and PNG plots to --output.
"""

import sys

from ..cache import FEATURE_DTYPES
from ..data import LAYOUTS


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="ITEM checkpoint folder or Hub id")
    parser.add_argument("--data", required=True, help="test data: CNNDetection/GenImage-style folder or CSV manifest")
    parser.add_argument("--output", default="item-evaluation", help="folder for the result files")
    parser.add_argument("--jpeg-quality", type=int, nargs="*", default=[], metavar="Q", help="JPEG qualities, e.g. 95 75 50 30")
    parser.add_argument("--blur-sigma", type=float, nargs="*", default=[], metavar="S", help="Gaussian blur sigmas in pixels, e.g. 1 2 3")
    parser.add_argument("--downscale", type=float, nargs="*", default=[], metavar="F", help="down-scaling factors, e.g. 0.5")
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the checkpoint's)")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto")
    parser.add_argument("--split", default=None, help="GenImage: evaluate this split only (e.g. val)")
    parser.add_argument("--generator", default=None, help="one generator name for all images")
    parser.add_argument("--cache-dir", default=None, help="cache folder (default ~/.cache/item)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch for the frozen networks")
    parser.add_argument("--feature-dtype", choices=FEATURE_DTYPES, default="float16")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    parser.add_argument("--revision", default=None)


def run(args) -> int:
    from ..evaluation import evaluate
    from ..perturb import perturbations_from_args

    try:
        perturbations = perturbations_from_args(args.jpeg_quality, args.blur_sigma, args.downscale)
        results = evaluate(
            args.model, args.data, args.output, perturbations, threshold=args.threshold, cache_dir=args.cache_dir,
            batch_size=args.batch_size, layout=args.layout, split=args.split, generator=args.generator,
            feature_dtype=args.feature_dtype, plots=not args.no_plots, revision=args.revision,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if results is None:  # a non-main process under accelerate launch
        return 0
    from pathlib import Path

    print((Path(args.output) / "metrics.md").read_text())
    print(f"wrote {', '.join(results['files'])} to {args.output}", file=sys.stderr)
    return 0
