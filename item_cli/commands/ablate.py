"""`item ablate --model M --data TRAIN [--val-data VAL] [--distance-types ...] [--fusions ...] [--seeds 0 1 2]`.

Trains a fresh head for every distance type x fusion (x head hidden size, x seed) on cached features and
prints one table of validation ACC / AP / AUC, mean ± std over seeds, in the order of the paper's figure
(distance x fusion). The frozen networks run only to fill the cache the first time (the same cache as `item
train`); after that an ablation costs the heads' training alone, seconds on a CPU. Validation: --val-data,
else a stratified --val-fraction of --data. --output writes ablation.md / .csv / .json.

    item ablate --model item-base --data progan_train/ --val-data progan_val/ --seeds 0 1 2 --output ablation
"""

from ..args import (add_cache, add_data, add_model, add_options, command_parser, positive_int, probability, source_options,
                    whole_number)
from ..console import emit, report_skipped, status
from ..model_source import check_model_source
from ..data import Skipped


def build_parser(prog):
    from item_detector.configuration_item import DISTANCE_TYPES, FUSION_TYPES

    parser = command_parser(prog, __doc__)
    add_model(parser)
    add_data(parser)
    add_options(parser, "--val-data", "--val-fraction")
    parser.add_argument("--distance-types", nargs="+", choices=DISTANCE_TYPES, default=list(DISTANCE_TYPES), metavar="D",
                        help=f"distance types to try, of {' '.join(DISTANCE_TYPES)}")
    parser.add_argument("--fusions", nargs="+", choices=FUSION_TYPES, default=list(FUSION_TYPES), metavar="F",
                        help=f"fusions to try, of {' '.join(FUSION_TYPES)}")
    parser.add_argument("--head-hidden-sizes", nargs="+", type=positive_int, default=[512], metavar="H",
                        help="hidden sizes of the head's MLP to try")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="seeds per variant")
    add_options(parser, "--epochs", "--learning-rate", "--head-batch-size", "--weight-decay")
    parser.add_argument("--threshold", type=probability, default=0.5, metavar="P",
                        help="fake-probability threshold of the validation accuracy (the heads are new: no "
                             "checkpoint threshold applies)")
    parser.add_argument("--threads", type=whole_number(0), default=1, metavar="N",
                        help="torch threads for the heads on a CPU; 1 is faster for these small matrices (much "
                             "faster on a shared machine), 0 leaves the number to torch")
    add_options(parser, "--equalize")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="write ablation.md, ablation.csv, ablation.json here (default: print the table only)")
    add_cache(parser)
    return parser


def run(args) -> int:
    from ..args import cache_options
    from ..data.perturb import parse_equalize
    from ..evaluation.ablation import HeadSchedule, ablate, variant_grid
    from ..evaluation.ablation_report import markdown_ablation

    check_model_source(args.model, args.revision)  # before any work
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
