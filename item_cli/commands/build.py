"""`item build --backbone ID_OR_DIR --captioner ID_OR_DIR --detector ID_OR_DIR --output DIR`.

Writes one self-contained checkpoint folder (untrained head): config.json, model.safetensors, the processor,
the captioner in captioner/, the detector in detector/, the remote code and a model card.

The checkpoint names no path of this machine: a Hub component is recorded by its id and revision, a local folder
by its name and the sha256 of its weights, or by the Hub id you give it (--backbone-id, --captioner-id,
--detector-id ORG/NAME; the card's base_model then names the backbone's id).
"""

from item_detector.processing_item import DEFAULT_DETECTOR

from ..args import add_options, command_parser, positive_int, probability
from ..checkpoint import DEFAULT_BACKBONE, build_checkpoint
from ..console import emit
from ..profiles import PROFILES


def build_parser(prog):
    parser = command_parser(prog, __doc__)
    parser.add_argument("--backbone", "--clip", dest="backbone", default=DEFAULT_BACKBONE, metavar="ID_OR_DIR",
                        help="joint image-text model: CLIP, SigLIP, SigLIP 2 or MetaCLIP 2 (Hub id or folder)")
    parser.add_argument("--profile", choices=list(PROFILES), default="default",
                        help="default: the paper's method; fast: BLIP-base, detector at 400 px, int8 on CPU, objects "
                             "pooled from one whole-image pass (see the README's performance section)")
    parser.add_argument("--captioner", default=None, metavar="ID_OR_DIR",
                        help="image-to-text model, Hub id or folder (default: the profile's)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, metavar="ID_OR_DIR",
                        help="open-vocabulary detector (Grounding DINO, OWLv2 ...), Hub id or folder")
    for part in ("backbone", "captioner", "detector"):
        parser.add_argument(f"--{part}-id", default=None, metavar="ORG/NAME",
                            help=f"Hub id of a local --{part} folder, recorded in the checkpoint and its card (without "
                                 "it the folder is recorded by its name and the sha256 of its weights, never its path)")
    add_options(parser, "--spacy-model")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder to write the checkpoint to (replaced only when complete)")
    parser.add_argument("--max-objects", type=positive_int, default=8, metavar="N", help="objects per image at most")
    parser.add_argument("--box-threshold", type=probability, default=0.3, metavar="P",
                        help="detector score from which a box is kept")
    parser.add_argument("--noun-mode", choices=("root", "chunk"), default="root",
                        help="what the detector looks for: a noun chunk's root noun or the whole chunk")
    parser.add_argument("--distance-type", choices=("difference", "cosine", "both"), default="difference",
                        help="how an object's image and text embeddings are compared")
    parser.add_argument("--fusion", choices=("sum", "concat", "global", "local"), default="sum",
                        help="how the global and the object-level distances are combined")
    parser.add_argument("--head-hidden-size", type=positive_int, default=512, metavar="H",
                        help="hidden size of the head's MLP")
    parser.add_argument("--head-dropout", type=probability, default=0.1, metavar="P", help="dropout of the head")
    add_options(parser, "--seed")
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
