"""Training batches drawn ahead of the training step, on a background thread."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

Batch = tuple[np.ndarray, np.ndarray, np.ndarray | None]


class Prefetcher:
    """Draws batches with ``draw`` on a background thread, ``depth`` ahead of the training step.

    Reading zarr chunks and augmenting tiles then overlaps the network's forward and backward pass
    (numpy, zarr's codecs and torch release the GIL for most of their work). An exception in ``draw``
    is raised again by :meth:`get`.
    """

    def __init__(self, draw: Any, depth: int = 2) -> None:
        import queue

        self._draw = draw
        self._queue: queue.Queue[tuple[Batch | None, BaseException | None]] = queue.Queue(maxsize=max(1, depth))
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._work, name="scribble-unet-prefetch", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        import queue

        while not self._closed.is_set():
            try:
                item: tuple[Batch | None, BaseException | None] = (self._draw(), None)
            except BaseException as e:  # handed to the training thread
                item = (None, e)
            while not self._closed.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[1] is not None:
                return

    def get(self) -> Batch:
        batch, error = self._queue.get()
        if error is not None:
            raise error
        assert batch is not None
        return batch

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
