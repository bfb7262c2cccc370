"""`item build --backbone ID_OR_DIR --captioner ID_OR_DIR --detector ID_OR_DIR --output DIR`.

Writes one self-contained checkpoint folder (untrained head): config.json, model.safetensors, the processor,
the captioner in captioner/, the detector in detector/, the remote code and a model card.

The checkpoint names no path of this machine: a Hub component is recorded by its id and revision, a local folder
by its name and the sha256 of its weights, or by the Hub id you give it (--backbone-id, --captioner-id,
--detector-id ORG/NAME; the card's base_model then names the backbone's id).
"""

from item_detector.processing_item import DEFAULT_DETECTOR, DEFAULT_SPACY_MODEL

from ..args import command_parser
from ..checkpoint import DEFAULT_BACKBONE, build_checkpoint
from ..console import emit
from ..profiles import PROFILES


def build_parser(prog):
    parser = command_parser(prog, __doc__)
    parser.add_argument("--backbone", "--clip", dest="backbone", default=DEFAULT_BACKBONE,
                        help="joint image-text model: CLIP, SigLIP, SigLIP 2 or MetaCLIP 2 (Hub id or folder)")
    parser.add_argument("--profile", choices=list(PROFILES), default="default",
                        help="default: the paper's method; fast: BLIP-base, detector at 400 px, int8 on CPU, objects "
                             "pooled from one whole-image pass (see the README's performance section)")
    parser.add_argument("--captioner", default=None, help="image-to-text model (Hub id or folder; default: the profile's)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="open-vocabulary detector: Grounding DINO, OWLv2 ...")
    for part in ("backbone", "captioner", "detector"):
        parser.add_argument(f"--{part}-id", default=None, metavar="ORG/NAME",
                            help=f"Hub id of a local --{part} folder, recorded in the checkpoint and its card (default: "
                                 "none; the folder is recorded by its name and the sha256 of its weights, never its path)")
    parser.add_argument("--spacy-model", default=DEFAULT_SPACY_MODEL, help="spaCy pipeline for noun extraction")
    parser.add_argument("--output", required=True, help="folder to write the checkpoint to (replaced only when complete)")
    parser.add_argument("--max-objects", type=int, default=8)
    parser.add_argument("--box-threshold", type=float, default=0.3)
    parser.add_argument("--noun-mode", choices=("root", "chunk"), default="root")
    parser.add_argument("--distance-type", choices=("difference", "cosine", "both"), default="difference")
    parser.add_argument("--fusion", choices=("sum", "concat", "global", "local"), default="sum")
    parser.add_argument("--head-hidden-size", type=int, default=512)
    parser.add_argument("--head-dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the head's initialisation")
    return parser


def run(args) -> int:
    output = build_checkpoint(
        args.output,
        backbone=args.backbone,
        captioner=args.captioner,
        detector=args.detector,
        spacy_model=args.spacy_model,
        config_options=dict(distance_type=args.distance_type, fusion=args.fusion,
                            head_hidden_size=args.head_hidden_size, head_dropout=args.head_dropout),
        processor_options=dict(max_objects=args.max_objects, box_threshold=args.box_threshold, noun_mode=args.noun_mode),
        seed=args.seed,
        profile=args.profile,
        hub_ids={"backbone": args.backbone_id, "captioner": args.captioner_id, "detector": args.detector_id},
    )
    emit(f"wrote {output}")
    return 0
