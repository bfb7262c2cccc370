"""The perturbations people meet (WebP, noise, centre crop, the social-network chain) do what they say, are
deterministic, and each setting gives its own name (the cache keys hold the name)."""

import io

import numpy as np
import pytest
from PIL import Image

from item_cli.data.perturb import (
    Perturbation,
    center_crop,
    compose,
    encode_webp,
    gaussian_noise,
    jpeg,
    parse_social,
    perturbations_from_args,
    social_chain,
    webp,
)


@pytest.fixture
def photo():
    """A smooth image with some texture (noise alone compresses to nothing useful)."""
    y, x = np.mgrid[0:96, 0:128]
    rng = np.random.default_rng(0)
    pixels = np.stack([x * 2, y * 2, (x + y)], axis=-1) + rng.integers(0, 30, (96, 128, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def test_webp_re_encodes_at_its_quality(photo):
    high, low = encode_webp(photo, 90), encode_webp(photo, 20)
    assert high[:4] == b"RIFF" and high[8:12] == b"WEBP" and len(low) < len(high)
    with Image.open(io.BytesIO(low)) as decoded:
        assert decoded.format == "WEBP"
        expected = np.asarray(decoded.convert("RGB"))
    out = webp(photo, 20)
    assert out.size == photo.size and np.array_equal(np.asarray(out), expected)  # what the decoder gives back
    assert not np.array_equal(np.asarray(out), np.asarray(photo))  # lossy: the pixels changed
    assert np.array_equal(np.asarray(webp(photo, 20)), expected)  # deterministic
    with pytest.raises(ValueError, match="WebP quality"):
        Perturbation("webp", 0)


def test_noise_has_its_sigma_and_repeats_under_its_seed():
    gray = Image.new("RGB", (200, 150), (128, 128, 128))
    noisy = gaussian_noise(gray, 5.0, seed=3)
    difference = np.asarray(noisy, dtype=float) - 128
    assert noisy.size == gray.size and 4.7 < difference.std() < 5.3 and abs(difference.mean()) < 0.2
    assert np.array_equal(np.asarray(gaussian_noise(gray, 5.0, seed=3)), np.asarray(noisy))  # same seed, same noise
    assert not np.array_equal(np.asarray(gaussian_noise(gray, 5.0, seed=4)), np.asarray(noisy))
    other = Image.new("RGB", (200, 150), (100, 100, 100))  # another image gets other noise under the same seed
    assert not np.array_equal(np.asarray(gaussian_noise(other, 5.0, seed=3)) - 100.0, difference)
    assert np.array_equal(np.asarray(gaussian_noise(gray, 0, seed=3)), np.asarray(gray))
    black = np.asarray(gaussian_noise(Image.new("RGB", (50, 50)), 20, seed=0))
    assert black.min() == 0 and black.dtype == np.uint8  # clipped, not wrapped around
    with pytest.raises(ValueError, match="negative"):
        Perturbation("noise", -1)


def test_center_crop_keeps_the_middle(photo):
    out = center_crop(photo, 0.5)
    assert out.size == (64, 48)
    assert np.array_equal(np.asarray(out), np.asarray(photo)[24:72, 32:96])
    assert center_crop(photo, 1.0).size == photo.size and center_crop(Image.new("RGB", (3, 3)), 0.01).size == (1, 1)
    with pytest.raises(ValueError, match="fraction"):
        Perturbation("crop", 1.5)


def test_social_chain_downscales_the_long_side_then_compresses(photo):
    big = photo.resize((400, 200))
    out = social_chain(big, 100, 70)
    assert out.size == (100, 50)
    expected = jpeg(big.resize((100, 50), Image.Resampling.BICUBIC), 70)
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    small = social_chain(photo, 1080, 70)  # never up-scaled, still compressed
    assert small.size == photo.size and np.array_equal(np.asarray(small), np.asarray(jpeg(photo, 70)))
    assert parse_social("1080:85") == Perturbation("social", 85, long_side=1080)
    for bad in ("1080", "x:85", "1080:0", "0:85"):
        with pytest.raises(ValueError, match="LONG_SIDE:JPEG_QUALITY"):
            parse_social(bad)


def test_every_setting_gets_its_own_name_and_cache_key(photo):
    conditions = perturbations_from_args([75], [1], [0.5], [90, 50], [5], [0.8], ["1080:85", "720:85"], seed=2)
    names = [p.name for p in conditions]
    assert names == ["jpeg_q75", "blur_s1", "downscale_x0.5", "webp_q90", "webp_q50", "noise_s5_seed2", "crop_x0.8",
                     "social_l1080_q85", "social_l720_q85"]
    assert Perturbation("noise", 5, seed=0).name != Perturbation("noise", 5, seed=1).name
    assert compose(Perturbation("equalize", 95), conditions[-1]).name == "equalize_jpeg95+social_l720_q85"
    assert conditions[5].settings == {"kind": "noise", "value": 5.0, "seed": 2}
    assert conditions[7].settings == {"kind": "social", "value": 85, "long_side": 1080}
    for condition in conditions:  # every condition runs on a real image and keeps an RGB image
        assert condition(photo).mode == "RGB"


def test_the_cache_keys_change_with_each_setting(loaded):
    from item_cli.cache.keys import annotation_fingerprint

    _, processor = loaded
    keys = {annotation_fingerprint(processor, p)["perturbation"] for p in
            perturbations_from_args(webp_quality=[90, 50], noise_sigma=[5], center_crop_fraction=[0.8, 0.9],
                                    social=["1080:85", "1080:70"])}
    keys |= {annotation_fingerprint(processor, Perturbation("noise", 5, seed=9))["perturbation"]}
    assert len(keys) == 8 and None not in keys
