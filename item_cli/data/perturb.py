"""Image perturbations: the field's test-time robustness conditions and train-time augmentation.

Test time (AIGCDetectBenchmark, CNNDetection, UniversalFakeDetect): JPEG re-compression at a quality,
Gaussian blur of a standard deviation, down-scaling by a factor. Each is deterministic and applied to the
image before anything else sees it (captioner, detector and backbone alike).

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

PERTURBATION_KINDS = ("jpeg", "blur", "downscale", "equalize")
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


@dataclass(frozen=True)
class Perturbation:
    """One image transformation applied before anything sees the image, e.g. Perturbation("jpeg", 75).

    Kinds: "jpeg" (quality), "blur" (sigma in pixels), "downscale" (factor) are the test-time conditions;
    "equalize" (JPEG quality) re-encodes every image of both classes alike (see `parse_equalize`).
    """

    kind: str
    value: float

    def __post_init__(self):
        if self.kind not in PERTURBATION_KINDS:
            raise ValueError(f"Unknown perturbation {self.kind!r}; choose one of {PERTURBATION_KINDS}.")
        # Validate the value once, on a 1x1 image.
        self(Image.new("RGB", (1, 1)))

    @property
    def name(self) -> str:
        """Stable name used in file names, tables and cache keys: jpeg_q75, blur_s2, downscale_x0.5, equalize_jpeg95."""
        value = f"{self.value:g}"
        return {"jpeg": f"jpeg_q{value}", "blur": f"blur_s{value}", "downscale": f"downscale_x{value}",
                "equalize": f"equalize_jpeg{value}"}[self.kind]

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
        return downscale(image, float(self.value))


def perturbations_from_args(jpeg_quality=(), blur_sigma=(), downscale_factor=()) -> list[Perturbation]:
    """The conditions named by `--jpeg-quality`, `--blur-sigma` and `--downscale`, in that order."""
    return (
        [Perturbation("jpeg", int(q)) for q in jpeg_quality or ()]
        + [Perturbation("blur", float(s)) for s in blur_sigma or ()]
        + [Perturbation("downscale", float(f)) for f in downscale_factor or ()]
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
