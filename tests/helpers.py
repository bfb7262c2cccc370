"""What the tests share: noise images, small generated data folders in the field's layouts, the two processor
steps in one call, and counting / forbidding the frozen networks."""

import contextlib
from pathlib import Path

import numpy as np
from PIL import Image


def noise_images(n: int = 2, size=(64, 48), seed: int = 0) -> list[Image.Image]:
    """`n` RGB PIL images of uniform noise, `size` = (width, height)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def noise_image(rng, size=(40, 32), brightness: int = 0) -> Image.Image:
    """Random RGB noise; `brightness` shifts it so that real and fake folders differ a little."""
    width, height = size
    pixels = rng.integers(0, 200, (height, width, 3)) + brightness
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_images(folder: Path, count: int, rng, brightness: int = 0, suffix: str = ".png", start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
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


def annotate_and_encode(processor, images, return_tensors="pt", **given):
    """The processor's two steps: (model inputs, one ItemAnnotations per image)."""
    annotations = processor.annotate(images, **given)
    loaded = images if isinstance(images, (list, tuple)) else [images]
    return processor.encode(loaded, annotations, return_tensors=return_tensors), annotations


class NetworkCalls:
    """Counts the images each frozen stage sees (`calls["caption"]` ...); with `forbid`, any call raises."""

    def __init__(self, monkeypatch, caption: str | None = None, forbid: bool = False):
        from item_detector.modeling_item import ItemForImageClassification
        from item_detector.processing_item import ItemProcessor

        self.calls = {"caption": 0, "nouns": 0, "ground": 0, "features": 0}
        originals = {"caption": ItemProcessor.caption, "nouns": ItemProcessor.extract_nouns,
                     "ground": ItemProcessor.ground, "features": ItemForImageClassification.forward_features}

        def wrap(name, count):
            def counted(self_, *args, **kwargs):
                n = count(*args, **kwargs)
                if forbid and n:
                    raise AssertionError(f"frozen network {name!r} called on {n} inputs where nothing may be computed")
                self.calls[name] += n
                if name == "caption" and caption is not None:
                    return [caption] * n
                return originals[name](self_, *args, **kwargs)
            return counted

        monkeypatch.setattr(ItemProcessor, "caption", wrap("caption", lambda images: len(images)))
        monkeypatch.setattr(ItemProcessor, "extract_nouns", wrap("nouns", lambda captions: len(captions)))
        monkeypatch.setattr(ItemProcessor, "ground", wrap("ground", lambda images, nouns: sum(1 for n in nouns if n)))
        monkeypatch.setattr(ItemForImageClassification, "forward_features",
                            wrap("features", lambda *args, **kwargs: int((kwargs.get("pixel_values") if "pixel_values" in kwargs else args[0]).shape[0])))

    def __getitem__(self, name):
        return self.calls[name]

    def reset(self):
        for name in self.calls:
            self.calls[name] = 0

    def total(self) -> int:
        return sum(self.calls.values())


@contextlib.contextmanager
def fixed_captions(caption: str = "a photo of a dog"):
    """Within the block, every image gets `caption` (the tiny captioner is slow and says nothing)."""
    import pytest

    from item_detector.processing_item import ItemProcessor

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ItemProcessor, "caption", lambda self, images: [caption] * len(images))
        yield
