"""Live prediction of the visible field of view, chunk by chunk, with a cache keyed by the model.

:class:`LivePrediction` holds the wanted chunks (the latest view first, nearest the view's centre
first) and a cache of computed chunk masks. :meth:`LivePrediction.run` is a generator meant for a
background thread: it computes one wanted chunk at a time and yields its index. The display arrays
(:class:`CachedMaskLevel`) show whatever the cache holds, at any pyramid level, and zeros elsewhere,
so zooming out shows what has been computed without computing anything. No Qt here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..image import ImageSource
from ..image.levels import LevelArray
from ..model.checkpoint import Checkpoint
from .predict import ChunkPredictor

DEFAULT_LIVE_TILE = 512
MAX_CACHED_CHUNKS = 2048  # 512 MiB of uint8 masks at 512²: the oldest are dropped beyond this


class LivePrediction:
    """Wanted chunks, a chunk cache and a compute loop for one image.

    Parameters
    ----------
    source
        The image.
    tile
        Side of a prediction chunk (rounded to the model's grid).
    """

    def __init__(self, source: ImageSource, tile: int = DEFAULT_LIVE_TILE) -> None:
        self.source = source
        self.tile = tile
        self.predictor: ChunkPredictor | None = None
        self.token: str | None = None
        # (iy, ix) -> (token, mask); chunk bounds come from self.grid.
        self.cache: OrderedDict[tuple[int, int], tuple[str, np.ndarray]] = OrderedDict()
        self.wanted: list[tuple[int, int]] = []
        self.computed = 0  # chunks computed since creation (for tests and the status line)
        self.computed_for_token = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.running = threading.Event()

    @property
    def grid(self) -> Any:
        return None if self.predictor is None else self.predictor.grid

    def set_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Predict with ``checkpoint`` from now on; cached chunks of older models are recomputed."""
        if checkpoint.token == self.token and self.predictor is not None and self.predictor.grid.tile == self.tile:
            return  # the same weights (e.g. the final checkpoint after the last periodic one)
        predictor = ChunkPredictor(checkpoint, self.source, tile=self.tile, device="cpu")
        with self._cond:
            if self.predictor is not None and predictor.grid.tile != self.predictor.grid.tile:
                self.cache.clear()  # another grid: old chunks no longer line up
            self.predictor = predictor
            self.token = checkpoint.token
            self.computed_for_token = 0
            self._cond.notify_all()

    def request(self, y0: int, y1: int, x0: int, x1: int) -> None:
        """Want the chunks of region ``[y0:y1, x0:x1]`` (replacing the previous request)."""
        with self._cond:
            self._region = (y0, y1, x0, x1)
            self._update_wanted()
            self._cond.notify_all()

    def _update_wanted(self) -> None:
        grid = self.grid
        region = getattr(self, "_region", None)
        if grid is None or region is None:
            self.wanted = []
            return
        y0, y1, x0, x1 = region
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        t = grid.tile
        chunks = grid.chunks_touching(y0, y1, x0, x1)
        chunks.sort(key=lambda c: (c[0] * t + t / 2 - cy) ** 2 + (c[1] * t + t / 2 - cx) ** 2)
        self.wanted = chunks

    def _next(self) -> tuple[int, int] | None:
        if self.predictor is None:
            return None
        self._update_wanted()
        for c in self.wanted:
            hit = self.cache.get(c)
            if hit is None or hit[0] != self.token:
                return c
        return None

    def pending(self) -> int:
        """Wanted chunks not yet computed with the current model."""
        with self._cond:
            return sum(1 for c in self.wanted if self.cache.get(c, ("", None))[0] != self.token)

    def stop(self) -> None:
        """Ask :meth:`run` to return (after the chunk in flight)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def run(self) -> Iterator[tuple[int, int]]:
        """Compute wanted chunks forever (until :meth:`stop`), yielding each finished chunk's index."""
        self.running.set()
        try:
            while not self._stop.is_set():
                with self._cond:
                    job = self._next()
                    if job is None:
                        self._cond.wait(timeout=0.2)
                        continue
                    predictor, token = self.predictor, self.token
                assert predictor is not None and token is not None
                mask = predictor.mask(*job)
                with self._cond:
                    if token != self.token:
                        continue  # the model changed meanwhile: this result is stale
                    self.cache[job] = (token, mask)
                    self.cache.move_to_end(job)
                    while len(self.cache) > MAX_CACHED_CHUNKS:
                        self.cache.popitem(last=False)
                    self.computed += 1
                    self.computed_for_token += 1
                yield job
        finally:
            self.running.clear()

    def levels(self, n_levels: int) -> list[CachedMaskLevel]:
        """Display arrays of the cached masks at levels ``0 .. n_levels - 1`` (factor 2 each)."""
        return [CachedMaskLevel(self, lvl) for lvl in range(n_levels)]


class CachedMaskLevel(LevelArray):
    """A read-only array ``(Y_l, X_l)`` of the cached prediction at pyramid level ``level``.

    Pixel ``(y, x)`` of level ``l`` is full-resolution pixel ``(y * 2**l, x * 2**l)`` of the cache,
    0 where nothing was computed. Implements what napari needs of a layer's data (``shape``,
    ``dtype``, ``ndim``, ``__getitem__``).
    """

    def __init__(self, live: LivePrediction, level: int) -> None:
        super().__init__(live.source.shape_yx, level)
        self.live = live

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (2 - len(key))
        rows = np.arange(self.shape[0])[key[0]]
        cols = np.arange(self.shape[1])[key[1]]
        scalar_r, scalar_c = np.ndim(rows) == 0, np.ndim(cols) == 0
        rows, cols = np.atleast_1d(rows), np.atleast_1d(cols)
        out = np.zeros((rows.size, cols.size), np.uint8)
        f = 2**self.level
        ry, rx = rows * f, cols * f  # full-resolution coordinates of the requested pixels
        live = self.live
        with live._cond:
            grid = live.grid
            items = list(live.cache.items()) if grid is not None else []
        if items and rows.size and cols.size:
            t = grid.tile
            by, bx = ry // t, rx // t
            for (iy, ix), (_token, mask) in items:
                sel_r = np.nonzero(by == iy)[0]
                if sel_r.size == 0:
                    continue
                sel_c = np.nonzero(bx == ix)[0]
                if sel_c.size == 0:
                    continue
                out[np.ix_(sel_r, sel_c)] = mask[np.ix_(ry[sel_r] - iy * t, rx[sel_c] - ix * t)]
        if scalar_r and scalar_c:
            return out[0, 0]
        if scalar_r:
            return out[0]
        if scalar_c:
            return out[:, 0]
        return out
