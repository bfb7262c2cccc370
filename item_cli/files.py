"""Finding images on disk and reading them without letting one bad file end a run."""

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from item_detector.processing_item import IMAGE_EXTENSIONS, load_image


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """The image files named by `paths`: files as given, folders searched recursively, in sorted order.

    Raises `ValueError` for a path that does not exist.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"{str(path)!r} is neither a file nor a folder; pass image files or folders of images.")
    return found


def read_images(paths: Iterable[Path], errors: list | None = None) -> Iterator[tuple[Path, object]]:
    """Yield `(path, RGB PIL image)` for each readable image; report each unreadable one on stderr and skip it.

    Skipped files are appended to `errors` as `(path, reason)` when a list is given.
    """
    for path in paths:
        try:
            yield path, load_image(path)
        except (ValueError, TypeError) as error:
            print(f"skipped {path}: {error}", file=sys.stderr)
            if errors is not None:
                errors.append((str(path), str(error)))
