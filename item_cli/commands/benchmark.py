"""`item benchmark [--device cpu|cuda] [--batch-sizes 1 8] [--repeats N] [--quick] [--output JSON]`.

Times every stage of ITEM alone and the whole pipeline on real-size architectures with random weights
(CLIP ViT-L/14, BLIP-large, Grounding DINO tiny), against a UniversalFakeDetect-style baseline; prints a
Markdown table and writes the full report as JSON. See `item_cli/benchmark.py` for what is fixed.
"""

from ..benchmark import add_arguments as _add_arguments
from ..benchmark import main


def add_arguments(parser):
    _add_arguments(parser)


def run(args) -> int:
    return main(args)
