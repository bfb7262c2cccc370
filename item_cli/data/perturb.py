"""Image perturbations: the field's test-time robustness conditions and train-time augmentation.

Test time (AIGCDetectBenchmark, CNNDetection, UniversalFakeDetect): JPEG re-compression at a quality,
Gaussian blur of a standard deviation, down-scaling by a factor; and what images meet on the way to a viewer:
WebP compression at a quality, additive Gaussian noise of a standard deviation (in 0-255 pixel units), a centre
crop keeping a fraction of each side, and a "social network" chain (down-scale so that the long side is at most
N pixels, then JPEG at a quality). Each is deterministic (the noise is drawn from a generator seeded by the
perturbation's seed and the image's pixels, so an image gets the same noise on every run) and applied to the
image before anything else sees it (captioner, detector and backbone alike). A perturbation's `name` holds
every setting (`noise_s5_seed0`, `social_l1080_q85`): it is what the cache keys hold.

Equalization (`--equalize jpeg:95`, train and test time): every image, real or fake, is re-encoded the same way
before anything sees it, so that a difference in file format or compression between the classes (PNG fakes
beside JPEG reals) cannot be what a detector learns. It composes with a test-time perturbation: equalize first,
then perturb (`compose`); the composed name is the cache key.

Train time (CNNDetection's "Blur+JPEG (p)"): with probability p a Gaussian blur of sigma ~ U[0, 3], and
independently with probability p a JPEG re-compression of quality ~ U{30, ..., 100}.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageFilter

PERTURBATION_KINDS = ("jpeg", "blur", "downscale", "webp", "noise", "crop", "social", "equalize")
EQUALIZE_FORMATS = ("jpeg",)


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """The bytes of `image` saved as a JPEG of `quality` (1-100, PIL's encoder, 4:2:0 subsampling), as RGB and
    without any metadata (EXIF, ICC, comments are not carried over)."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality {quality!r} is out of range; pass an integer from 1 to 100 (e.g. 95 75 50 30).")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Re-compress `image` as a JPEG of `quality` (see `encode_jpeg`) and decode it."""
    with Image.open(io.BytesIO(encode_jpeg(image, quality))) as decoded:
        return decoded.convert("RGB")


def gaussian_blur(image: Image.Image, sigma: float) -> Image.Image:
    """Blur `image` with a Gaussian of standard deviation `sigma` pixels (PIL's GaussianBlur, whose radius
    is the standard deviation); sigma 0 returns a copy."""
    if sigma < 0:
        raise ValueError(f"Blur sigma {sigma!r} is negative; pass a standard deviation in pixels >= 0 (e.g. 1 2 3).")
    if sigma == 0:
        return image.copy()
    return image.filter(ImageFilter.GaussianBlur(radius=float(sigma)))


def downscale(image: Image.Image, factor: float) -> Image.Image:
    """Resize `image` by `factor` (0 < factor <= 1) with bicubic resampling; each side at least 1 pixel."""
    if not 0 < factor <= 1:
        raise ValueError(f"Down-scaling factor {factor!r} is out of range; pass a factor in (0, 1], e.g. 0.5.")
    width, height = image.size
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return image.resize(size, Image.Resampling.BICUBIC)


def encode_webp(image: Image.Image, quality: int) -> bytes:
    """The bytes of `image` saved as a lossy WebP of `quality` (1-100, PIL's libwebp encoder), as RGB, no metadata."""
    if isinstance(quality, bool) or not 1 <= int(quality) <= 100 or int(quality) != quality:
        raise ValueError(f"WebP quality {quality!r} is out of range; pass an integer from 1 to 100 (e.g. 90 75 50).")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="WEBP", quality=int(quality), method=4)
    return buffer.getvalue()


def webp(image: Image.Image, quality: int) -> Image.Image:
    """Re-compress `image` as a lossy WebP of `quality` (see `encode_webp`) and decode it."""
    with Image.open(io.BytesIO(encode_webp(image, quality))) as decoded:
        return decoded.convert("RGB")


def gaussian_noise(image: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    """Add Gaussian noise of standard deviation `sigma` (0-255 pixel units) to every channel, round and clip.

    The noise comes from a generator seeded by `seed` and the image's pixels: the same image and seed always
    get the same noise, different images different noise. sigma 0 returns an RGB copy.
    """
    import zlib

    import numpy as np

    if not sigma >= 0:
        raise ValueError(f"Noise sigma {sigma!r} is negative; pass a standard deviation in pixel units >= 0 (e.g. 3 5 10).")
    rgb = image.convert("RGB")
    if sigma == 0:
        return rgb.copy()
    pixels = np.asarray(rgb, dtype=np.float64)
    rng = np.random.default_rng([int(seed), zlib.crc32(rgb.tobytes()), rgb.width, rgb.height])
    noisy = np.clip(np.rint(pixels + rng.normal(0.0, float(sigma), pixels.shape)), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, mode="RGB")


def center_crop(image: Image.Image, fraction: float) -> Image.Image:
    """The centre of `image` keeping `fraction` (0 < fraction <= 1) of each side; each side at least 1 pixel."""
    if not 0 < fraction <= 1:
        raise ValueError(f"Centre-crop fraction {fraction!r} is out of range; pass a fraction of each side in (0, 1], "
                         "e.g. 0.9 0.7 0.5.")
    width, height = image.size
    new_width, new_height = max(1, round(width * fraction)), max(1, round(height * fraction))
    left, top = (width - new_width) // 2, (height - new_height) // 2
    return image.crop((left, top, left + new_width, top + new_height))


def social_chain(image: Image.Image, long_side: int, quality: int) -> Image.Image:
    """What a social network does to an upload: down-scale (bicubic) so that the longer side is at most
    `long_side` pixels (never up-scale), then re-compress as a JPEG of `quality`."""
    if isinstance(long_side, bool) or int(long_side) != long_side or long_side < 1:
        raise ValueError(f"Social-network long side {long_side!r}; pass a positive number of pixels, e.g. 1080.")
    width, height = image.size
    if max(width, height) > long_side:
        scale = long_side / max(width, height)
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BICUBIC)
    return jpeg(image, quality)


@dataclass(frozen=True)
class Perturbation:
    """One image transformation applied before anything sees the image, e.g. Perturbation("jpeg", 75).

    Kinds: "jpeg" (quality), "blur" (sigma in pixels), "downscale" (factor), "webp" (quality), "noise" (sigma in
    0-255 pixel units; `seed` seeds it), "crop" (centre-crop fraction of each side) and "social" (JPEG quality,
    after a down-scale to the long side `long_side`) are the test-time conditions; "equalize" (JPEG quality)
    re-encodes every image of both classes alike (see `parse_equalize`).
    """

    kind: str
    value: float
    seed: int = 0  # "noise" only
    long_side: int = 0  # "social" only: the longest side, in pixels, before the JPEG

    def __post_init__(self):
        if self.kind not in PERTURBATION_KINDS:
            raise ValueError(f"Unknown perturbation {self.kind!r}; choose one of {PERTURBATION_KINDS}.")
        # Validate the value once, on a 1x1 image.
        self(Image.new("RGB", (1, 1)))

    @property
    def name(self) -> str:
        """Stable name used in file names, tables and cache keys, holding every setting: jpeg_q75, blur_s2,
        downscale_x0.5, webp_q75, noise_s5_seed0, crop_x0.8, social_l1080_q85, equalize_jpeg95."""
        value = f"{self.value:g}"
        return {"jpeg": f"jpeg_q{value}", "blur": f"blur_s{value}", "downscale": f"downscale_x{value}",
                "webp": f"webp_q{value}", "noise": f"noise_s{value}_seed{self.seed}", "crop": f"crop_x{value}",
                "social": f"social_l{self.long_side}_q{value}", "equalize": f"equalize_jpeg{value}"}[self.kind]

    @property
    def settings(self) -> dict:
        """The settings as a dict (run.json's perturbations)."""
        out = {"kind": self.kind, "value": self.value}
        if self.kind == "noise":
            out["seed"] = self.seed
        if self.kind == "social":
            out["long_side"] = self.long_side
        return out

    def encode(self, image: Image.Image) -> bytes:
        """The file an "equalize" perturbation turns `image` into (what `item audit --equalize` inspects)."""
        if self.kind != "equalize":
            raise ValueError(f"Only 'equalize' perturbations define a file encoding; {self.name!r} is {self.kind!r}.")
        return encode_jpeg(image, int(self.value))

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.kind in ("jpeg", "equalize"):
            return jpeg(image, int(self.value))
        if self.kind == "blur":
            return gaussian_blur(image, float(self.value))
        if self.kind == "webp":
            return webp(image, int(self.value))
        if self.kind == "noise":
            return gaussian_noise(image, float(self.value), self.seed)
        if self.kind == "crop":
            return center_crop(image, float(self.value))
        if self.kind == "social":
            return social_chain(image, self.long_side, int(self.value))
        return downscale(image, float(self.value))


def parse_social(text: str) -> Perturbation:
    """`--social 1080:85` (long side 1080 pixels, then JPEG 85) -> Perturbation("social", 85, long_side=1080)."""
    side, separator, quality = str(text).strip().partition(":")
    try:
        long_side, value = int(side), int(quality)
    except ValueError:
        raise ValueError(f"--social {text!r}: write LONG_SIDE:JPEG_QUALITY with two integers, e.g. 1080:85.") from None
    if not separator or long_side < 1 or not 1 <= value <= 100:
        raise ValueError(f"--social {text!r}: write LONG_SIDE:JPEG_QUALITY, a positive long side in pixels and a JPEG "
                         "quality from 1 to 100, e.g. 1080:85.")
    return Perturbation("social", value, long_side=long_side)


def perturbations_from_args(jpeg_quality=(), blur_sigma=(), downscale_factor=(), webp_quality=(), noise_sigma=(),
                            center_crop_fraction=(), social=(), seed: int = 0) -> list[Perturbation]:
    """The conditions named by `--jpeg-quality`, `--blur-sigma`, `--downscale`, `--webp-quality`, `--noise-sigma`
    (seeded with `seed`), `--center-crop` and `--social LONG_SIDE:QUALITY`, in that order."""
    return (
        [Perturbation("jpeg", int(q)) for q in jpeg_quality or ()]
        + [Perturbation("blur", float(s)) for s in blur_sigma or ()]
        + [Perturbation("downscale", float(f)) for f in downscale_factor or ()]
        + [Perturbation("webp", int(q)) for q in webp_quality or ()]
        + [Perturbation("noise", float(s), seed=int(seed)) for s in noise_sigma or ()]
        + [Perturbation("crop", float(f)) for f in center_crop_fraction or ()]
        + [parse_social(text) for text in social or ()]
    )


def parse_equalize(text: str | None) -> Perturbation | None:
    """`--equalize jpeg:95` (or `jpeg`, quality 95) -> Perturbation("equalize", 95); None or "" -> None."""
    if text is None or str(text).strip() == "":
        return None
    kind, _, quality = str(text).strip().lower().partition(":")
    if kind not in EQUALIZE_FORMATS:
        raise ValueError(
            f"--equalize {text!r}: re-encoding as {kind!r} is not supported; pass jpeg:QUALITY (e.g. jpeg:95), which "
            "re-encodes real and fake images alike."
        )
    try:
        value = int(quality) if quality else 95
    except ValueError:
        raise ValueError(f"--equalize {text!r}: the quality {quality!r} is not an integer; pass e.g. jpeg:95.") from None
    if not 1 <= value <= 100:
        raise ValueError(f"--equalize {text!r}: JPEG quality {value} is out of range; pass 1 to 100, e.g. jpeg:95.")
    return Perturbation("equalize", value)


@dataclass(frozen=True)
class Composed:
    """Several perturbations applied in order (equalize, then a test-time condition). `name` joins the steps'
    names with "+" (the cache key: `equalize_jpeg95+jpeg_q75`); `kind` and `value` are the last step's, the
    condition a results table reports."""

    steps: tuple[Perturbation, ...]

    @property
    def name(self) -> str:
        return "+".join(step.name for step in self.steps)

    @property
    def kind(self) -> str:
        return self.steps[-1].kind

    @property
    def value(self) -> float:
        return self.steps[-1].value

    @property
    def settings(self) -> dict:
        return self.steps[-1].settings

    def __call__(self, image: Image.Image) -> Image.Image:
        for step in self.steps:
            image = step(image)
        return image


def compose(*steps: Perturbation | None) -> Perturbation | Composed | None:
    """The perturbation that applies `steps` in order, Nones left out: None, the one step, or a `Composed`."""
    kept = tuple(step for step in steps if step is not None)
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else Composed(kept)


@dataclass
class Augmentation:
    """Train-time Blur+JPEG augmentation as CNNDetection applies it; seeded, so a run can be repeated.

    Args:
        blur_prob: probability of a Gaussian blur, sigma drawn uniformly from `blur_sigma`.
        jpeg_prob: probability of a JPEG re-compression, quality drawn uniformly from `jpeg_quality`.
    """

    blur_prob: float = 0.0
    jpeg_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg_quality: tuple[int, int] = (30, 100)
    seed: int = 0

    def __post_init__(self):
        for name in ("blur_prob", "jpeg_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value!r} is not a probability; pass a value in [0, 1] (0.5 in CNNDetection).")
        self._rng = random.Random(self.seed)
        self._worker: int | None = None

    def for_worker(self) -> Augmentation:
        """This augmentation, drawing from the random stream of the current DataLoader worker: each worker draws
        its own sequence, and the same seed repeats a run."""
        import torch.utils.data

        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker is not None else -1
        if worker_id != self._worker:
            self._worker = worker_id
            self._rng = random.Random(self.seed + 1000 * (worker_id + 1))
        return self

    @property
    def active(self) -> bool:
        return self.blur_prob > 0 or self.jpeg_prob > 0

    def describe(self) -> str:
        return (
            f"blur p={self.blur_prob} sigma~U{list(self.blur_sigma)}, "
            f"jpeg p={self.jpeg_prob} quality~U{list(self.jpeg_quality)}"
        )

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.blur_prob and self._rng.random() < self.blur_prob:
            image = gaussian_blur(image, self._rng.uniform(*self.blur_sigma))
        if self.jpeg_prob and self._rng.random() < self.jpeg_prob:
            image = jpeg(image, self._rng.randint(*self.jpeg_quality))
        return image
