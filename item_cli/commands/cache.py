"""`item cache --model DIR --data ROOT_OR_CSV [--features]`: fill the caches ahead of training or evaluation.

Captions, nouns and boxes (stage 1) and, with `--features`, the backbone's embeddings (stage 2), computed
once and stored under --cache-dir. On many GPUs or nodes:

    accelerate launch --num_processes 8 -m item_cli.commands.cache --model DIR --data ROOT --features

Each process takes one contiguous shard of the images; the main process merges the shards in order.
"""

import argparse
import sys

from ..cache import FEATURE_DTYPES
from ..data import LAYOUTS


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="ITEM checkpoint (its captioner, detector and backbone are used)")
    parser.add_argument("--data", required=True, help="folder or CSV manifest")
    parser.add_argument("--features", action="store_true", help="also cache the backbone features (stage 2)")
    parser.add_argument("--cache-dir", default=None, help="cache folder (default ~/.cache/item)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--feature-dtype", choices=FEATURE_DTYPES, default="float16")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto")
    parser.add_argument("--split", default=None)
    parser.add_argument("--generator", default=None)


def run(args) -> int:
    from ..cache import _state, cache_annotations, cache_features, drop_unreadable
    from ..data import load_dataset
    from ..training import _load

    try:
        state = _state()
        dataset = load_dataset(args.data, layout=args.layout, split=args.split, generator=args.generator)
        model, processor = _load(args.model)
        annotated = drop_unreadable(cache_annotations(dataset, processor, args.cache_dir, args.batch_size, state=state))
        done = annotated
        if args.features:
            done = cache_features(annotated, processor, model, args.cache_dir, args.batch_size, dtype=args.feature_dtype,
                                  state=state)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if state.is_main_process:
        print(f"cached {len(done)} images ({'annotations and features' if args.features else 'annotations'})",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="item cache", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
