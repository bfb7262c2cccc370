"""`item build` folders: their files, loading them in a fresh Python where this project is not importable,
the image-classification pipeline (standard and explain output), and the save -> load round trip."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from item_detector.modeling_item import ItemForImageClassification
from item_detector.processing_item import ItemProcessor

REPO = Path(__file__).resolve().parent.parent
REMOTE_FILES = ("configuration_item.py", "processing_item.py", "modeling_item.py", "pipeline_item.py", "images_item.py",
                "annotation_item.py", "visualization_item.py", "provenance_item.py", "provenance_formats_item.py")
PROBE_CAPTION = "a man riding a bike on the road"

# Runs in a fresh interpreter: hides this project (the editable install included), then loads DIR only through
# transformers' remote code and prints one JSON line with what it saw.
FRESH_SCRIPT = textwrap.dedent(
    r'''
    import importlib.abc, json, os, sys

    class BlockProject(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("item_detector", "item_cli"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, BlockProject())
    repo = os.path.realpath(sys.argv[1])
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.realpath(p) != repo]
    for blocked in ("item_detector", "item_cli"):
        try:
            __import__(blocked)
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit(f"{blocked} is importable: the test would prove nothing")

    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoModelForImageClassification, AutoProcessor, pipeline

    folder, image_path, caption = sys.argv[2], sys.argv[3], sys.argv[4]
    image = Image.open(image_path).convert("RGB")
    report = {}

    base = AutoModel.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    report["classes"] = [type(base).__name__, type(model).__name__, type(processor).__name__]
    report["modules"] = [type(base).__module__, type(model).__module__, type(processor).__module__]
    report["backbone_frozen"] = all(not p.requires_grad for p in model.backbone.parameters())
    report["head_trainable"] = all(p.requires_grad for p in model.head.parameters())
    annotations = processor.annotate([image], captions=[caption])
    inputs = processor.encode([image], annotations)
    report["nouns"] = [a.nouns for a in annotations]
    report["boxes"] = [a.boxes for a in annotations]
    with torch.no_grad():
        report["logits"] = model(**inputs).logits.tolist()
        report["base_logits"] = base(**inputs).logits.tolist()

    pipe = pipeline("image-classification", model=folder, trust_remote_code=True)
    report["pipeline_class"] = type(pipe).__name__
    report["pil"] = pipe(image)
    report["path"] = pipe(image_path)
    report["batch"] = pipe([image, image_path, image], batch_size=2)
    report["top1"] = pipe(image, top_k=1)
    report["explain"] = pipe(image, explain=True, captions=caption)

    prefix = os.path.realpath(sys.prefix) + os.sep  # the virtual environment may live inside the repository
    files = {name: os.path.realpath(getattr(module, "__file__", None) or "/") for name, module in sys.modules.items()}
    report["project_modules"] = sorted(
        name for name, path in files.items()
        if name.split(".")[0] in ("item_detector", "item_cli")
        or (path.startswith(repo + os.sep) and not path.startswith(prefix))
    )
    print("REPORT " + json.dumps(report))
    '''
)


def probe_image(folder: Path) -> Path:
    path = folder / "probe.png"
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def run_fresh(checkpoint, workdir: Path, caption: str = PROBE_CAPTION) -> dict:
    """Load `checkpoint` in a fresh interpreter started in `workdir` with this project hidden; return its report."""
    image = probe_image(workdir)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", HF_MODULES_CACHE=str(workdir / "modules"))
    result = subprocess.run(
        [sys.executable, "-c", FRESH_SCRIPT, str(REPO), str(checkpoint), str(image), caption],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, f"fresh process failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    report = json.loads(lines[-1][len("REPORT "):])
    report["image"] = str(image)
    return report


def is_standard(result, k=2):
    return (
        isinstance(result, list)
        and len(result) == k
        and all(set(item) == {"label", "score"} for item in result)
        and {item["label"] for item in result} <= {"real", "fake"}
        and all(0.0 <= item["score"] <= 1.0 for item in result)
        and [item["score"] for item in result] == sorted((item["score"] for item in result), reverse=True)
    )


def check_fresh_report(report, checkpoint):
    """What every backbone family's fresh-process report must show; also compares logits with this process."""
    assert report["classes"] == ["ItemForImageClassification", "ItemForImageClassification", "ItemProcessor"]
    assert all(module.startswith("transformers_modules") for module in report["modules"]), report["modules"]
    assert report["project_modules"] == []
    assert report["backbone_frozen"] and report["head_trainable"]
    assert report["pipeline_class"] == "ItemImageClassificationPipeline"
    assert is_standard(report["pil"]) and is_standard(report["path"])
    assert abs(sum(item["score"] for item in report["pil"]) - 1.0) < 1e-5
    assert report["pil"] == report["path"]  # the same picture, given as a PIL image or as a path
    assert isinstance(report["batch"], list) and len(report["batch"]) == 3
    assert all(is_standard(item) for item in report["batch"])
    for got, want in zip(report["batch"], [report["pil"]] * 3):
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert all(abs(g["score"] - w["score"]) < 1e-5 for g, w in zip(got, want))
    assert is_standard(report["top1"], k=1) and report["top1"][0] == report["pil"][0]
    assert report["logits"] == report["base_logits"]

    # the same inputs, in this process, through the project's own classes
    model = ItemForImageClassification.from_pretrained(checkpoint)
    processor = ItemProcessor.from_pretrained(checkpoint)
    image = Image.open(report["image"])
    annotations = processor.annotate([image], captions=[PROBE_CAPTION])
    assert [a.nouns for a in annotations] == report["nouns"] and [a.boxes for a in annotations] == report["boxes"]
    inputs = processor.encode([image], annotations)
    with torch.no_grad():
        here = model(**inputs).logits
    torch.testing.assert_close(torch.tensor(report["logits"]), here, atol=1e-5, rtol=0)

    explain = report["explain"]
    assert is_standard(explain["labels"])
    assert explain["caption"] == PROBE_CAPTION
    assert explain["is_fake"] == (explain["fake_probability"] >= explain["threshold"])
    fake = next(item["score"] for item in explain["labels"] if item["label"] == "fake")
    assert abs(explain["fake_probability"] - fake) < 1e-6
    similarities = [item["similarity"] for item in explain["objects"]]
    assert similarities == sorted(similarities)  # least aligned object first
    named = [item["noun"] for item in explain["objects"]] + explain["unfound_nouns"]
    assert sorted(named) == sorted(report["nouns"][0])


# ---------------------------------------------------------------------------------------------- the folder
def test_checkpoint_folder_contents(checkpoint):
    folder = Path(checkpoint)
    for name in ("config.json", "model.safetensors", "processor_config.json", "README.md", *REMOTE_FILES):
        assert (folder / name).is_file(), name
    for sub in ("captioner", "detector"):
        assert (folder / sub / "config.json").is_file() and (folder / sub / "model.safetensors").is_file()
    pickles = [p for pattern in ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle") for p in folder.rglob(pattern)]
    assert pickles == []
    for name in REMOTE_FILES:  # the copies are today's source
        assert (folder / name).read_text() == (REPO / name).read_text()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "item_detector"
    assert config["auto_map"]["AutoModelForImageClassification"] == "modeling_item.ItemForImageClassification"
    assert config["custom_pipelines"]["image-classification"]["impl"] == "pipeline_item.ItemImageClassificationPipeline"
    processor_config = json.loads((folder / "processor_config.json").read_text())
    assert processor_config["captioner_name_or_path"] == "./captioner"
    assert processor_config["detector_name_or_path"] == "./detector"
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_item.ItemProcessor"
    card = (folder / "README.md").read_text()
    assert card.startswith("---") and "pipeline_tag: image-classification" in card


def test_build_copies_the_backbone_weights(checkpoint, tiny_parts):
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(tiny_parts["backbones"]["clip"])
    model = ItemForImageClassification.from_pretrained(checkpoint)
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], tensor), name


def test_build_is_reproducible_with_a_seed(build_tiny_checkpoint, tiny_parts, tmp_path):
    from item_cli.checkpoint import build_checkpoint
    from safetensors.torch import load_file

    kwargs = dict(
        backbone=tiny_parts["backbones"]["clip"], captioner=tiny_parts["captioner"], detector=tiny_parts["detectors"]["owlv2"]
    )
    a = load_file(build_checkpoint(tmp_path / "a", seed=1, **kwargs) / "model.safetensors")
    b = load_file(build_checkpoint(tmp_path / "b", seed=1, **kwargs) / "model.safetensors")
    c = load_file(build_checkpoint(tmp_path / "c", seed=2, **kwargs) / "model.safetensors")
    head = [key for key in a if key.startswith("head.")]
    assert head and all(torch.equal(a[key], b[key]) for key in a)
    assert not all(torch.equal(a[key], c[key]) for key in head)


def test_fresh_process_loads_without_the_project(checkpoint, tmp_path):
    report = run_fresh(checkpoint, tmp_path)
    check_fresh_report(report, checkpoint)


# ---------------------------------------------------------------------------------------------- in-process pipeline
@pytest.fixture(scope="module")
def pipe(checkpoint):
    from transformers import pipeline

    return pipeline("image-classification", model=str(checkpoint), trust_remote_code=True)


def test_pipeline_batches_whole_images(pipe, monkeypatch):
    """The captioner / detector / backbone see whole batches of `batch_size` images, not one at a time."""
    sizes = []
    original = pipe.processor.__class__.annotate

    def spy(self, images, **kwargs):
        sizes.append(len(images))
        return original(self, images, **kwargs)

    monkeypatch.setattr(pipe.processor.__class__, "annotate", spy)
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for _ in range(5)]
    results = pipe(imgs, batch_size=2)
    assert sizes == [2, 2, 1]
    assert len(results) == 5 and all(is_standard(r) for r in results)
    singles = [pipe(img) for img in imgs]
    for got, want in zip(results, singles):
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert all(abs(g["score"] - w["score"]) < 1e-5 for g, w in zip(got, want))


def test_pipeline_captions_per_image(pipe):
    rng = np.random.default_rng(1)
    imgs = [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for _ in range(3)]
    captions = ["a man on a bike", "a cat on a table", "a red car"]
    results = pipe(imgs, batch_size=2, explain=True, captions=captions)
    assert [r["caption"] for r in results] == captions
    assert sorted(n for r in results[1:2] for n in [o["noun"] for o in r["objects"]] + r["unfound_nouns"]) == ["cat", "table"]


def test_trainer_style_save_gives_a_complete_folder(checkpoint, tmp_path):
    """model.save_pretrained + processor.save_pretrained elsewhere: a folder the pipeline can use on its own."""
    from transformers import pipeline

    model = ItemForImageClassification.from_pretrained(checkpoint)
    processor = ItemProcessor.from_pretrained(checkpoint)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    for name in REMOTE_FILES:
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "captioner" / "config.json").is_file()
    assert (tmp_path / "detector" / "config.json").is_file()
    result = pipeline("image-classification", model=str(tmp_path), trust_remote_code=True)(Image.new("RGB", (20, 16), "white"))
    assert is_standard(result)
