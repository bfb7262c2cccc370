"""`item detect IMAGE_OR_FOLDER... --model DIR [--json]`: label, fake probability, caption and objects per image.

Objects are listed least aligned first (lowest image-text similarity): the named object that looks least
like its word is where the image disagrees most with its own caption.
"""

import json
import sys

from tqdm.auto import tqdm

from ..files import find_images, read_images


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("--model", required=True, help="ITEM checkpoint folder or Hub id")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image (JSON Lines)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: GPU when there is one)")
    parser.add_argument("--threshold", type=float, default=None, help="fake probability threshold (default: the checkpoint's)")
    parser.add_argument("--revision", default=None, help="Hub revision (commit) of the checkpoint to load")


def load_pipeline(model: str, device=None, revision=None):
    """The checkpoint's own image-classification pipeline (remote code)."""
    import torch
    from transformers import pipeline

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return pipeline("image-classification", model=model, trust_remote_code=True, device=device, revision=revision)


def detect(pipe, paths, batch_size=8, threshold=None, errors=None):
    """Yield `(path, explanation dict)` for every readable image in `paths`; unreadable ones are skipped."""
    threshold = pipe.model.config.decision_threshold if threshold is None else threshold
    batch = []
    def flush():
        results = pipe([image for _, image in batch], batch_size=batch_size, explain=True)
        for (path, _), result in zip(batch, results):
            result["is_fake"] = result["fake_probability"] >= threshold
            result["threshold"] = threshold
            yield path, result
    for path, image in read_images(paths, errors):
        batch.append((path, image))
        if len(batch) == batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def format_result(path, result) -> str:
    label = "FAKE" if result["is_fake"] else "real"
    lines = [f"{path}: {label}  p(fake)={result['fake_probability']:.3f} (threshold {result['threshold']:.3f})",
             f"  caption: {result['caption']!r}  (image-caption similarity {result['global_similarity']:+.3f})"]
    for item in result["objects"]:
        box = ", ".join(f"{v:.0f}" for v in item["box"])
        lines.append(f"  {item['noun']:<16} similarity {item['similarity']:+.3f}  box [{box}]  detector {item['box_score']:.2f}")
    if result["unfound_nouns"]:
        lines.append(f"  not found in the image: {', '.join(result['unfound_nouns'])}")
    return "\n".join(lines)


def run(args) -> int:
    try:
        paths = find_images(args.inputs)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not paths:
        print("error: no image files found in the given paths", file=sys.stderr)
        return 2
    pipe = load_pipeline(args.model, args.device, args.revision)
    errors = []
    done = 0
    for path, result in tqdm(detect(pipe, paths, args.batch_size, args.threshold, errors), total=len(paths),
                             unit="image", disable=None, file=sys.stderr):
        done += 1
        if args.json:
            print(json.dumps({"path": str(path), **result}), flush=True)
        else:
            tqdm.write(format_result(path, result))
    print(f"{done} images scored, {len(errors)} skipped", file=sys.stderr)
    return 0 if done else 1


def build_args(argv: list[str]):
    """Parse `item detect` arguments from a list (used by `item demo`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="item detect")
    add_arguments(parser)
    return parser.parse_args(argv)
