"""What the tests, the demo and the benchmarks share: tiny random networks of the real architectures
(`tiny`), the sample photos (`sample_photos/`, credits in SAMPLE_PHOTOS.md), and a generator of hostile files
(`hostile`)."""

from pathlib import Path


def sample_photos_folder() -> Path:
    """Five public-domain / CC0 photos shipped with the package, for the demo and the tests."""
    return Path(__file__).resolve().parent / "sample_photos"


def sample_photos() -> list[Path]:
    return sorted(sample_photos_folder().glob("*.jpg"))
