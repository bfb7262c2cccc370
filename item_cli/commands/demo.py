"""`item demo`: the offline smoke run. Builds a tiny random-weight ITEM checkpoint and scores the sample photos.

Everything is built locally (no download), so it runs on a machine without network access. The tiny
networks have random weights: the scores, captions and boxes it prints mean nothing. It shows that the
whole path works: build -> load with trust_remote_code -> caption -> nouns -> grounding -> scores.
"""

import tempfile

from ..console import status
from ..args import add_options, command_parser
from ..checkpoint import build_checkpoint
from ..testing import sample_photos_folder
from ..testing.tiny import tiny_components


def build_parser(prog):
    parser = command_parser(prog, __doc__)
    parser.add_argument("--output", default="demo-checkpoint", metavar="DIR", help="where to write the tiny checkpoint")
    add_options(parser, "--spacy-model", "--json")
    parser.add_argument("images", nargs="*", help="images or folders (default: the bundled sample photos)")
    return parser


def run(args) -> int:
    from . import detect

    with tempfile.TemporaryDirectory() as parts_dir:
        parts = tiny_components(parts_dir)
        # Box threshold 0: random detectors score low, and the demo should show objects.
        build_checkpoint(
            args.output,
            backbone=parts["backbone"],
            captioner=parts["captioner"],
            detector=parts["detector"],
            spacy_model=args.spacy_model,
            processor_options={"box_threshold": 0.0},
        )
    status(f"Built a tiny RANDOM-WEIGHT checkpoint in {args.output}: its scores mean nothing.\n")
    images = args.images or [str(sample_photos_folder())]
    detect_args = detect.build_parser("item detect").parse_args([*images, "--model", args.output, *(["--json"] if args.json else [])])
    return detect.run(detect_args)
