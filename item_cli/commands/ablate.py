"""`item ablate --model DIR --data TRAIN [--val-data VAL] [--distance-types ...] [--fusions ...] [--seeds 0 1 2]`.

Trains a fresh head for every distance type x fusion (x head hidden size, x seed) on cached features and
prints one table of validation ACC / AP / AUC, mean ± std over seeds, in the order of the paper's figure
(distance x fusion). The frozen networks run only to fill the cache the first time (the same cache as `item
train`); after that an ablation costs the heads' training alone, seconds on a CPU. Validation: --val-data,
else a stratified --val-fraction of --data. --output writes ablation.md / .csv / .json.

    item ablate --model item-base --data progan_train/ --val-data progan_val/ --seeds 0 1 2 --output ablation
"""

from ..args import DATA_HELP, add_cache, add_model, add_source_options, command_parser, positive_int, source_options
from ..console import emit, report_skipped, status
from ..data import Skipped


def build_parser(prog):
    from item_detector.configuration_item import DISTANCE_TYPES, FUSION_TYPES

    from ..data import LAYOUTS

    parser = command_parser(prog, __doc__)
    add_model(parser)
    parser.add_argument("--data", required=True, help="training " + DATA_HELP)
    parser.add_argument("--val-data", default=None, help="validation data (default: a stratified --val-fraction of --data)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of --data held out without --val-data")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="data layout (default: detected)")
    parser.add_argument("--split", default=None, help="GenImage: train on this split only (train / val)")
    parser.add_argument("--generator", default=None, help="one generator name for all images (e.g. progan)")
    add_source_options(parser)
    parser.add_argument("--distance-types", nargs="+", choices=DISTANCE_TYPES, default=list(DISTANCE_TYPES), metavar="D",
                        help=f"distance types to try (default all: {' '.join(DISTANCE_TYPES)})")
    parser.add_argument("--fusions", nargs="+", choices=FUSION_TYPES, default=list(FUSION_TYPES), metavar="F",
                        help=f"fusions to try (default all: {' '.join(FUSION_TYPES)})")
    parser.add_argument("--head-hidden-sizes", nargs="+", type=positive_int, default=[512], metavar="H",
                        help="hidden sizes of the head's MLP (default 512)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="seeds per variant (default 0)")
    parser.add_argument("--epochs", type=positive_int, default=10, help="epochs per head (default 10, as item train)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    parser.add_argument("--batch-size", type=positive_int, default=256, dest="head_batch_size",
                        help="head training batch size (default 256; --cache-batch-size is the frozen networks')")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    parser.add_argument("--threshold", type=float, default=0.5, help="threshold of the validation ACC (default 0.5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the heads on a CPU (default 1: faster for these small matrices, "
                             "much faster on a shared machine; 0: torch's default)")
    parser.add_argument("--equalize", default=None, metavar="jpeg:Q", help="re-encode every image alike first (e.g. jpeg:95)")
    parser.add_argument("--output", default=None, metavar="DIR", help="write ablation.md, ablation.csv, ablation.json here")
    add_cache(parser, batch_flag="--cache-batch-size")
    return parser


def run(args) -> int:
    from ..args import cache_options
    from ..data.perturb import parse_equalize
    from ..evaluation.ablation import HeadSchedule, ablate, variant_grid
    from ..evaluation.ablation_report import markdown_ablation

    grid = variant_grid(args.distance_types, args.fusions, args.head_hidden_sizes)
    schedule = HeadSchedule(epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.head_batch_size,
                            weight_decay=args.weight_decay, threshold=args.threshold)
    results = ablate(
        args.model, args.data, args.output, args.val_data, grid=grid, seeds=args.seeds, schedule=schedule,
        val_fraction=args.val_fraction, layout=args.layout, split=args.split, generator=args.generator,
        equalize=parse_equalize(args.equalize), revision=args.revision, threads=args.threads,
        data_options=source_options(args),
        **cache_options(args),
    )
    if results is None:  # a non-main process under accelerate launch
        return 0
    report_skipped([Skipped(item["path"], item["reason"]) for item in results["skipped"]])
    emit(markdown_ablation(results))
    if args.output:
        status(f"wrote {', '.join(results['files'])} to {args.output}")
    return 0
