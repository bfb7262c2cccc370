"""Run the ITEM speed benchmark: the same code and options as `item benchmark`.

    python benchmarks/run_benchmark.py --batch-sizes 1 8 --repeats 1 --output benchmarks/results/cpu.json
    python benchmarks/run_benchmark.py --device cuda --dtype float16 --output benchmarks/results/gpu.json
"""

import argparse
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from item_cli.benchmark import add_arguments, main  # noqa: E402


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse()))
