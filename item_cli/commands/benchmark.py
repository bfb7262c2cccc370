"""`item benchmark [--profiles default fast] [--batch-sizes 1 8] [--levers] [--quick] [--device D] [--output JSON]`.

Times ITEM on the real architectures with random weights (CLIP ViT-L/14, BLIP-large or -base, Grounding DINO
tiny): each stage alone, the whole pipeline and a UniversalFakeDetect-style one-pass baseline, per profile and
batch size, in one process. `--batch-memory 1 2 4 8` the peak memory per batch size. `--levers` adds each speed lever alone and how closely each faster variant
reproduces the default. `--backbones` times each backbone family instead; `--head-training` one epoch of head
training on 10,000 cached images; `--ablation` item ablate's 12-variant grid on 1,000 cached images. Prints
Markdown and writes the full report as JSON.
"""

from ..args import add_options, command_parser, positive_int
from ..console import emit, status


def build_parser(prog):
    from ..bench.backbones import FAMILIES
    from ..profiles import PROFILES

    parser = command_parser(prog, __doc__)
    add_options(parser, "--device")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="weights of the frozen networks (float16/bfloat16 for a GPU)")
    parser.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=None, help="profiles to time (default: default fast)")
    parser.add_argument("--batch-sizes", type=positive_int, nargs="+", default=None, help="batch sizes to time (default: 1 8)")
    parser.add_argument("--repeats", type=positive_int, default=None, help="runs per timing; the minimum is reported (default 2)")
    parser.add_argument("--objects", type=positive_int, default=None, help="nouns in the fixed caption (default 4)")
    parser.add_argument("--caption-tokens", type=positive_int, default=None, help="tokens generated per caption (default 20)")
    parser.add_argument("--levers", action="store_true", help="also time each speed lever alone at batch 1")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up pass")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 2 objects, 12 caption tokens")
    parser.add_argument("--tiny", action="store_true", help="the test suite's tiny networks instead of the real sizes")
    parser.add_argument("--backbones", nargs="*", default=None, metavar="FAMILY", choices=list(FAMILIES),
                        help="instead: time forward_features per image for each backbone family (all when none is named)")
    parser.add_argument("--head-training", action="store_true", help="instead: one epoch of head training on cached features")
    parser.add_argument("--ablation", action="store_true", help="instead: item ablate's 12-variant grid on 1,000 cached images")
    parser.add_argument("--streaming", type=positive_int, nargs="+", default=None, metavar="N",
                        help="instead: peak memory and time of item detect on folders of N images (tiny networks)")
    parser.add_argument("--data-sources", type=positive_int, default=None, metavar="N",
                        help="instead: peak memory of streaming N rows of Parquet and WebDataset shards through the "
                             "decoding workers")
    parser.add_argument("--cache-reuse", type=positive_int, default=None, metavar="N",
                        help="instead: frozen-network calls when a cached folder of N images grows, is relabelled, "
                             "copied or changed in place (tiny networks), and the content-key hashing speed")
    parser.add_argument("--batch-memory", type=positive_int, nargs="+", default=None, metavar="N",
                        help="instead: peak memory of one scoring process per batch size N (real sizes, CPU, "
                             "first of --profiles; each in a fresh process)")
    parser.add_argument("--decode-ahead", type=positive_int, default=None, metavar="N",
                        help="instead: images/s of item detect's loop on N large JPEGs with and without decoding "
                             "ahead (tiny networks)")
    parser.add_argument("--output", default="benchmark.json", metavar="FILE", help="where to write the JSON report")
    return parser


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args) -> int:
    from ..bench.run import BenchmarkSettings, format_report, run_benchmark, write_report

    log = status  # progress lines on stderr
    if args.backbones is not None:
        from ..bench.backbones import FAMILIES, format_backbone_table, measure_backbones

        report = measure_backbones(tuple(args.backbones) or tuple(FAMILIES), n_objects=args.objects or 4,
                                   repeats=args.repeats or 2, log=log)
        text = format_backbone_table(report)
    elif args.head_training:
        from ..bench.training import head_training_epoch

        report = head_training_epoch(repeats=args.repeats or 3)
        text = f"one epoch of head training over {report['images']:,} cached images: {report['seconds_per_epoch']:.2f} s"
    elif args.streaming:
        from ..bench.streaming import format_streaming, streaming_memory

        report = streaming_memory(tuple(args.streaming), log=log)
        text = format_streaming(report)
    elif args.data_sources:
        from ..bench.sources import data_source_memory, format_data_sources

        report = data_source_memory(args.data_sources, log=log)
        text = format_data_sources(report)
    elif args.cache_reuse:
        from ..bench.cache_reuse import cache_reuse, hashing_throughput

        report = {**cache_reuse(args.cache_reuse, log=log), "hashing": hashing_throughput()}
        text = _cache_reuse_table(report)
    elif args.batch_memory:
        from ..bench.batch_memory import batch_memory, format_batch_memory

        report = batch_memory(tuple(args.batch_memory), (args.profiles or ["default"])[0], log=log)
        text = format_batch_memory(report)
    elif args.decode_ahead:
        from ..bench.decode_ahead import decode_ahead

        report = decode_ahead(args.decode_ahead, log=log)
        text = "\n".join(f"{kind}: " + ", ".join(f"{name} {value} images/s" for name, value in found["images_per_second"].items())
                         for kind, found in report.items() if isinstance(found, dict))
    elif args.ablation:
        from ..bench.training import ablation_grid

        report = ablation_grid(repeats=args.repeats or 3)
        text = f"{report['variants']} head variants on {report['images']:,} cached images: {report['seconds']:.2f} s"
    else:
        overrides = {"device": args.device or default_device(), "dtype": args.dtype, "warmup": not args.no_warmup,
                     "levers": args.levers, "size": "tiny" if args.tiny else "real"}
        for name, value in (("profiles", args.profiles), ("batch_sizes", args.batch_sizes), ("repeats", args.repeats),
                            ("n_objects", args.objects), ("caption_tokens", args.caption_tokens)):
            if value is not None:
                overrides[name] = tuple(value) if isinstance(value, list) else value
        settings = BenchmarkSettings.quick(**overrides) if args.quick else BenchmarkSettings(**overrides)
        report = run_benchmark(settings, log=log)
        text = format_report(report)
    write_report(report, args.output)
    emit(text)
    status(f"wrote {args.output}")
    return 0


def _cache_reuse_table(report: dict) -> str:
    rows = [f"| {name} | {s['rows']} | {s['images_seen']['captioner']} / {s['images_seen']['detector']} / "
            f"{s['images_seen']['backbone']} |" for name, s in report["scenarios"].items()]
    return "\n".join(["| scenario | rows | images seen by captioner / detector / backbone |", "|---|---|---|", *rows,
                      f"\ncontent keys (sha256): {report['hashing']['mb_per_second']:.0f} MB/s"])
