"""Decoding ahead: a thread drains the image reader into a bounded queue while the networks score a batch.

Without it the reader's workers stop as soon as their few in-flight images are decoded (the reader is a
generator: nothing asks for the next image while the networks run), so every batch waits for its own
decoding. The thread keeps up to `depth` decoded images waiting; memory stays bounded by `depth`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterable, depth: int) -> Iterator:
    """Yield `items` in order, produced by a background thread at most `depth` ahead of the consumer.

    An exception in the producer is raised here; when the consumer stops early the thread stops too."""
    if depth < 1:
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Failure(error))

    thread = threading.Thread(target=produce, name="item-decode-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)
