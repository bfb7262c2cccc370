"""Small generated image folders in the field's layouts, for the data, cache, training and evaluation tests."""

from pathlib import Path

import numpy as np
from PIL import Image


def noise_image(rng, size=(40, 32), brightness: int = 0) -> Image.Image:
    """Random RGB noise; `brightness` shifts it so that real and fake folders differ a little."""
    width, height = size
    pixels = rng.integers(0, 200, (height, width, 3)) + brightness
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_images(folder: Path, count: int, rng, brightness: int = 0, suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:03d}{suffix}"
        noise_image(rng, (32 + 4 * (i % 3), 32), brightness).save(path)
        paths.append(path)
    return paths


def make_cnndetection(root: Path, generators=("progan", "stylegan"), per_class: int = 3, categories=None, seed: int = 0) -> Path:
    """root/<generator>/[<category>/]{0_real,1_fake}/NNN.png; fakes are brighter."""
    rng = np.random.default_rng(seed)
    for generator in generators:
        for category in categories or [None]:
            base = root / generator / category if category else root / generator
            write_images(base / "0_real", per_class, rng, 0)
            write_images(base / "1_fake", per_class, rng, 50, suffix=".jpg" if generator == generators[-1] else ".png")
    return root


def make_genimage(root: Path, generators=("midjourney", "adm"), per_class: int = 2, seed: int = 0) -> Path:
    """root/<generator>/<subset>/{train,val}/{ai,nature}/NNN.png (GenImage's real nesting)."""
    rng = np.random.default_rng(seed)
    for generator in generators:
        for split in ("train", "val"):
            base = root / generator / f"imagenet_{generator}" / split
            write_images(base / "nature", per_class, rng, 0)
            write_images(base / "ai", per_class, rng, 50)
    return root
