"""Decoding untrusted image files in worker processes, in order, with bounded time and memory.

A folder from the wild holds files made to hurt decoders. Each file is read and decoded by a worker process
(`python -m item_cli.data.decode`, talking over its stdin / stdout: paths in, pixels out, no pickles): a decoder
that hangs is killed after `timeout_s` and the file skipped, one that crashes (a segfault in a C decoder) costs
only its worker, and a worker's address space is capped so that no file can take the machine's memory. Results
come back in input order and stream: at most `2 * workers` images are in flight, so memory stays flat whatever
the folder's size.

Each result also carries the sha256 of the exact bytes that were decoded: the content key of the cache, and,
with `provenance=True`, the file's provenance record (`provenance_item.read_provenance`, from the same bytes, inside
the worker's time and memory limits).

A row of a data set (a `Record` with `row`, see `sources`) has no file: its stored bytes are fetched here, one
row at a time as a worker frees up, and sent to the worker as the request's payload; the worker reads them by
the same rules (size limit, formats, pixel limit) as a file's bytes, under the same timeout and memory cap.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from PIL import Image

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_LIMIT = 4 << 30  # bytes of address space per worker: a 90-megapixel image decodes well within it
# A file is read whole before it is decoded; larger files are refused unread. The largest image PIL decodes within
# the pixel limit (90 Mpx of uncompressed 16-bit RGBA) is about 720 MB.
MAX_FILE_BYTES = 1 << 30
_LENGTH = struct.Struct("<Q")


@dataclass
class Decoded:
    """One input's outcome: `image` (RGB) and `key` (sha256 of its bytes), or `error`."""

    index: int
    path: str
    image: Image.Image | None = None
    key: str | None = None
    error: str | None = None
    provenance: dict | None = None


def content_key(data: bytes) -> str:
    """The cache key of an image file: sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- framing
def _send(stream, header: dict, payload: bytes = b"") -> None:
    encoded = json.dumps(header).encode()
    stream.write(_LENGTH.pack(len(encoded)) + encoded + _LENGTH.pack(len(payload)) + payload)
    stream.flush()


def _read_exactly(stream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise EOFError("the worker closed its output")
        data += chunk
    return bytes(data)


def _receive(stream) -> tuple[dict, bytes]:
    header = json.loads(_read_exactly(stream, _LENGTH.unpack(_read_exactly(stream, _LENGTH.size))[0]))
    return header, _read_exactly(stream, _LENGTH.unpack(_read_exactly(stream, _LENGTH.size))[0])


def _decode_one(path: str, max_pixels: int | None, data: bytes | None = None,
                provenance: str | None = None) -> tuple[dict, bytes]:
    """What a worker answers for one path, or for one data-set row's bytes (`data`); with `provenance` ("" or a
    trust-anchor PEM file), the provenance record read from the same bytes."""
    from item_detector.images_item import load_image

    what = "the file" if data is None else "the row's bytes"
    if data is None:
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > MAX_FILE_BYTES:
                    return {"error": f"the file is {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} for an image file"}, b""
                data = handle.read()
        except OSError as error:
            return {"error": f"cannot read the file ({error.strerror or error})"}, b""
    elif len(data) > MAX_FILE_BYTES:
        return {"error": f"the image is {len(data):,} bytes, over the limit of {MAX_FILE_BYTES:,} for an image file"}, b""
    key = content_key(data)
    try:
        image = load_image(data, max_pixels=max_pixels)
    except (ValueError, TypeError, MemoryError) as error:
        return {"key": key, "error": str(error).replace(f"<{len(data)} bytes>", what)}, b""
    header = {"key": key, "mode": image.mode, "size": list(image.size)}
    if provenance is not None:  # "" (no trust anchors) or a PEM file
        header["provenance"] = _provenance(data, image, provenance)
    return header, image.tobytes()


def _provenance(data: bytes, image, trust_anchors: str) -> dict:
    from item_detector.provenance_item import Provenance, read_provenance

    try:
        return read_provenance(data, pixels=image, trust_anchors=trust_anchors or None).to_dict()
    except Exception as error:  # noqa: BLE001 - provenance must never cost the image its verdict
        return Provenance.not_read(f"not read ({type(error).__name__}: {error})").to_dict()


def worker_main(memory_limit: int, max_pixels: int | None, provenance: str | None = None) -> None:
    """The worker process: one request (a path, or image bytes as its payload) at a time on stdin, one answer on
    stdout."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    except (ImportError, ValueError, OSError):
        pass  # not on this platform: the pixel limit still bounds the work
    # Decoders warn about damaged files ("Corrupt EXIF data") on stderr with no file name; the answer names the file.
    warnings.simplefilter("ignore")
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            request, data = _receive(requests)
        except EOFError:
            return
        try:
            header, payload = _decode_one(request["path"], max_pixels, data if request.get("bytes") else None,
                                          provenance)
        except MemoryError:  # outside the decoder (reading the file, copying the pixels), under the memory cap
            header, payload = {"error": "decoding it needs more memory than a decoding worker may use"}, b""
        except Exception as error:  # noqa: BLE001 - answer for the file, do not die with a traceback
            header, payload = {"error": f"decoding failed ({type(error).__name__}: {error})"}, b""
        _send(answers, {"task": request["task"], **header}, payload)


# ---------------------------------------------------------------------------------------------- the pool
class _Worker:
    def __init__(self, memory_limit: int, max_pixels: int | None, provenance: str | None = None):
        command = [sys.executable, "-m", "item_cli.data.decode", str(memory_limit), str(max_pixels or 0)]
        command += [] if provenance is None else ["--provenance", provenance]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.task: int | None = None
        self.path = ""
        self.started = 0.0

    def submit(self, task: int, path: str, data: bytes | None = None) -> None:
        # Paths travel as text; undecodable bytes in a file name survive as surrogate escapes. A data-set row's
        # bytes travel as the payload (its `path` is then only its name).
        _send(self.process.stdin, {"task": task, "path": path, "bytes": data is not None}, data or b"")
        self.task, self.path, self.started = task, path, time.monotonic()

    def stop(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                kill = True
        if kill:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class ImageReader:
    """`with ImageReader(workers=2) as reader: for decoded in reader.read(paths): ...` (see the module docstring).

    `max_pixels`: the largest image decoded (width x height; None: `images_item.MAX_IMAGE_PIXELS`). A larger file is
    skipped with `load_image`'s one message, whatever its size (the command line's `--max-image-pixels N`)."""

    def __init__(self, workers: int = 2, timeout_s: float = DEFAULT_TIMEOUT_S, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                 max_pixels: int | None = None, provenance: bool = False, trust_anchors: str | None = None):
        if workers < 1:
            raise ValueError(f"workers={workers}; pass at least 1 decoding process.")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s={timeout_s}; pass a positive number of seconds.")
        if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1):
            raise ValueError(f"max_pixels={max_pixels!r}; pass a positive number of pixels (None: the default limit).")
        self.workers, self.timeout_s, self.memory_limit, self.max_pixels = workers, timeout_s, memory_limit, max_pixels
        # Provenance is read by the workers when asked: "" means no C2PA trust anchors, else a PEM file.
        self.provenance = (os.fspath(trust_anchors) if trust_anchors else "") if provenance else None
        self._pool: list[_Worker] = []

    def __enter__(self) -> "ImageReader":
        self._pool = [_Worker(self.memory_limit, self.max_pixels, self.provenance) for _ in range(self.workers)]
        return self

    def __exit__(self, *exc_info) -> None:
        for worker in self._pool:
            worker.stop()
        self._pool = []

    def read(self, paths: Iterable) -> Iterator[Decoded]:
        """Decode `paths` in order; every path gives exactly one `Decoded`. An item is a file path, or a `Record`
        (`item_cli.data`): its file, or for a data-set row its stored bytes (`Decoded.path` is the row's name)."""
        if not self._pool:
            raise ValueError("Use the ImageReader as a context manager: `with ImageReader() as reader: ...`.")
        pending = iter(enumerate(paths))
        queued: list[tuple[int, str, bytes | None]] = []
        finished: dict[int, Decoded] = {}
        next_out, exhausted = 0, False
        while True:
            in_flight = sum(worker.task is not None for worker in self._pool)
            while not exhausted and len(queued) + in_flight + len(finished) < 2 * self.workers:
                item = next(pending, None)
                exhausted = item is None
                if item is not None:
                    request = _request(*item)
                    if isinstance(request, Decoded):  # a row whose bytes cannot be had: no worker needed
                        finished[request.index] = request
                    else:
                        queued.append(request)
            for worker in self._pool:
                if worker.task is None and queued:
                    worker.submit(*queued.pop(0))
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
            busy = [worker for worker in self._pool if worker.task is not None]
            if not busy:
                if exhausted and not queued:
                    return
                continue
            deadline = min(worker.started for worker in busy) + self.timeout_s
            ready, _, _ = select.select([w.process.stdout for w in busy], [], [], max(0.0, deadline - time.monotonic()))
            for worker in busy:
                task = worker.task
                if worker.process.stdout in ready:
                    finished[task] = self._collect(worker)
                elif time.monotonic() - worker.started >= self.timeout_s:
                    finished[task] = Decoded(task, worker.path, error=(
                        f"decoding took longer than {self.timeout_s:g} s, so it was stopped (raise the decode timeout "
                        "if this is a genuine huge image)"))
                    self._replace(worker)

    def _collect(self, worker: _Worker) -> Decoded:
        task, path = worker.task, worker.path
        worker.task = None
        try:
            header, payload = _receive(worker.process.stdout)
        except (EOFError, OSError, ValueError):
            try:
                code = worker.process.wait(timeout=2)  # it closed its output: let it finish dying to give its code
            except subprocess.TimeoutExpired:
                code = None
            self._replace(worker)
            return Decoded(task, path, error=f"the decoder crashed on this file (worker exit code {code})")
        if "error" in header:
            return Decoded(task, path, key=header.get("key"), error=header["error"])
        return Decoded(task, path, image=Image.frombytes(header["mode"], tuple(header["size"]), payload), key=header["key"],
                       provenance=header.get("provenance"))

    def _replace(self, worker: _Worker) -> None:
        worker.stop(kill=True)
        self._pool[self._pool.index(worker)] = _Worker(self.memory_limit, self.max_pixels, self.provenance)


def _request(index: int, item) -> tuple[int, str, bytes | None] | Decoded:
    """(index, path or row name, the row's bytes or None) of one input; a `Decoded` error when a row's bytes
    cannot be fetched (it holds no image)."""
    row = getattr(item, "row", None)
    if row is None:
        return index, os.fsdecode(getattr(item, "path", item)), None
    try:
        return index, item.path, row.read_bytes()
    except OSError as error:
        return Decoded(index, item.path, error=str(error))


if __name__ == "__main__":
    worker_main(int(sys.argv[1]), int(sys.argv[2]) or None, sys.argv[4] if sys.argv[3:4] == ["--provenance"] else None)
