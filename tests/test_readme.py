"""The README's snippets work as written: its Python blocks run against a tiny checkpoint standing in for the
Hub one, and every `item ...` command line in it parses with that command's own options."""

import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)
PYTHON = [code for language, code in BLOCKS if language == "python"]


@pytest.fixture(scope="module")
def workspace(checkpoint, sample_photos, tmp_path_factory):
    """A folder where the README's names exist: `item-clip-l14` is the tiny checkpoint, `photo.jpg`, `a.jpg` and
    `b.png` are sample photos, `broken.jpg` is not an image."""
    folder = tmp_path_factory.mktemp("readme")
    os.symlink(checkpoint, folder / "item-clip-l14")
    shutil.copy(sample_photos[0], folder / "photo.jpg")
    shutil.copy(sample_photos[1], folder / "a.jpg")
    from PIL import Image

    Image.open(sample_photos[2]).save(folder / "b.png")
    (folder / "broken.jpg").write_text("not an image")
    return folder


def _dataset():
    """What the Trainer snippet calls `dataset`: a few labelled images, as `datasets.load_dataset` gives them."""
    from datasets import Dataset
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)) for _ in range(4)]
    return Dataset.from_dict({"image": images, "label": [0, 1, 0, 1]})


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_python_snippets_run_as_written(index, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    code = PYTHON[index]
    namespace = {"dataset": _dataset()}
    # Earlier blocks define what later ones use (`processor`, `model`, `image1`), as a reader runs them in order.
    for earlier in PYTHON[:index]:
        exec(compile(earlier, f"README block {PYTHON.index(earlier)}", "exec"), namespace)  # noqa: S102
    exec(compile(code, f"README block {index}", "exec"), namespace)  # noqa: S102


def _command_lines() -> list[str]:
    lines = []
    for language, code in BLOCKS:
        if language not in ("bash", ""):
            continue
        joined = re.sub(r"\\\n\s*", " ", code)
        for line in joined.splitlines():
            line = line.split("#")[0].strip()
            line = re.sub(r"^accelerate launch .*? -m item_cli\.(cli|commands\.(\w+))", lambda m: "item " + (m.group(2) or ""), line)
            if line.startswith("item "):
                lines.append(line.split(">")[0].split("|")[0].strip())
    return lines


@pytest.mark.parametrize("line", _command_lines())
def test_command_lines_parse_with_the_commands_own_options(line):
    import importlib

    from item_cli.cli import COMMANDS

    words = shlex.split(line)[1:]
    name = words[0]
    assert name in COMMANDS, f"{line!r}: no command {name!r}"
    module = importlib.import_module(f"item_cli.commands.{name}")
    module.build_parser(f"item {name}").parse_args(words[1:])  # argparse exits on an unknown or malformed option
