"""`item benchmark [--device cpu|cuda] [--batch-sizes 1 8] [--repeats N] [--quick] [--output JSON]`.

Times every stage of ITEM alone and the whole pipeline on real-size architectures with random weights
(CLIP ViT-L/14, BLIP-large, Grounding DINO tiny), against a UniversalFakeDetect-style baseline; prints a
Markdown table and writes the full report as JSON.
"""

from ..args import command_parser


def build_parser(prog):
    from ..benchmark import add_arguments

    parser = command_parser(prog, __doc__)
    add_arguments(parser)
    return parser


def run(args) -> int:
    from ..benchmark import main

    return main(args)
