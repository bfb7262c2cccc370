"""Finding the files a command was given: one rule for every command.

Every entry under a folder is answered for: a regular file is a candidate image (whether it really is one is
decided by opening it with the allowed formats, not by its extension), and anything else (a FIFO, a socket, a
broken link, a hidden file, a second path to a file already listed) comes back as a `Skipped` record with the
reason. Symbolic links are followed, but each real folder is searched once and each real file listed once, so
a link loop (`ln -s . again`) neither hangs nor duplicates data.
"""

from __future__ import annotations

import logging
import os
import stat
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """An input that gives no result, and why."""

    path: str
    reason: str


def display_path(path: str | os.PathLike) -> str:
    """A path as it can always be printed: undecodable bytes and control characters (a newline in a file
    name) are shown as backslash escapes."""
    text = os.fspath(path)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if any(_breaks_lines(char) for char in text):
        text = "".join(repr(char)[1:-1] if _breaks_lines(char) else char for char in text)
    return text


def _breaks_lines(char: str) -> bool:
    """A control character (C0, DEL, C1 such as NEL) or a Unicode line / paragraph separator: each can end a line
    of output (`str.splitlines` splits at all of them) or drive the terminal."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp")


class FileFinder:
    """Lists candidate image files under folders, each real file and folder once.

    `find(paths)` yields `(path, None)` for each candidate and `(path, Skipped)` for each entry that is not one
    (a given path that does not exist included).
    One finder remembers what it has seen, so several calls (or several roots) never list a file twice.
    """

    def __init__(self):
        self._seen_files: dict[tuple[int, int], str] = {}
        self._seen_folders: set[tuple[int, int]] = set()

    def find(self, paths: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, Skipped | None]]:
        for path in map(Path, paths):
            try:
                info = path.stat()
            except OSError as error:  # one missing path is one skipped entry, like any other bad input
                if path.is_symlink():
                    reason = "broken symbolic link"
                elif isinstance(error, FileNotFoundError):
                    reason = "no such file or folder"
                else:
                    reason = f"cannot be read ({error.strerror})"
                yield path, Skipped(str(path), reason)
                continue
            if stat.S_ISDIR(info.st_mode):
                yield from self._walk(path)
            else:
                yield path, self.check_file(path)

    def check_file(self, path: Path) -> Skipped | None:
        """None when `path` is a regular file not listed before, else why it is skipped."""
        try:
            info = path.stat()
        except OSError as error:
            reason = "broken symbolic link" if path.is_symlink() else f"cannot be read ({error.strerror})"
            return Skipped(str(path), reason)
        if not stat.S_ISREG(info.st_mode):
            return Skipped(str(path), "not a regular file (a FIFO, socket or device)")
        identity = (info.st_dev, info.st_ino)
        if identity in self._seen_files:
            return Skipped(str(path), f"the same file as {display_path(self._seen_files[identity])}, listed once")
        self._seen_files[identity] = str(path)
        return None

    def _walk(self, root: Path) -> Iterator[tuple[Path, Skipped | None]]:
        """Depth-first, names sorted, links followed, each real folder entered once."""
        pending = [root]
        while pending:
            folder = pending.pop()
            try:
                info = folder.stat()
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except OSError as error:
                yield folder, Skipped(str(folder), f"folder cannot be searched ({error.strerror})")
                continue
            identity = (info.st_dev, info.st_ino)
            if identity in self._seen_folders:
                logger.warning("not searching %s again: it links to a folder already searched", display_path(folder))
                continue
            self._seen_folders.add(identity)
            subfolders = []
            for entry in entries:
                path = Path(entry.path)
                if _is_folder(entry):
                    if entry.name.startswith("."):
                        logger.info("not searching hidden folder %s", display_path(path))
                    else:
                        subfolders.append(path)
                elif entry.name.startswith("."):
                    yield path, Skipped(str(path), "hidden file")
                else:
                    yield path, self.check_file(path)
            pending.extend(reversed(subfolders))  # visit in sorted order


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def find_files(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Skipped]]:
    """`FileFinder().find(paths)` collected: (candidate files in order, skipped entries)."""
    found, skipped = [], []
    for path, problem in FileFinder().find(paths):
        if problem is None:
            found.append(path)
        else:
            skipped.append(problem)
    return found, skipped
