"""Live prediction of the visible field of view, chunk by chunk, with a cache keyed by the model.

:class:`LivePrediction` holds the wanted chunks (those of the latest view, nearest its centre
first) and a cache of computed chunks: for each, the model token, the mask and the uncertainty
(:func:`~.uncertainty.uncertainty_from_probabilities`, quantised to ``0..255``), both from ONE
network pass. :meth:`LivePrediction.run` is a generator meant for a background thread: it asks the
:class:`~.schedule.MachineScheduler` when to compute, computes one chunk at a time and yields its
index. The display arrays (:class:`CachedLevel`) show whatever the cache holds, at any pyramid
level, and 0 elsewhere, so zooming out shows what has been computed without computing anything.
No Qt here.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from ..image import ImageSource
from ..image.levels import LevelArray
from ..model.checkpoint import Checkpoint
from .predict import ChunkPredictor
from .schedule import MachineScheduler
from .uncertainty import uncertainty_from_probabilities

DEFAULT_LIVE_TILE = 512
MAX_CACHED_CHUNKS = 2048  # 1 GiB of uint8 masks + uncertainties at 512²: the oldest are dropped beyond this
UNCERTAINTY_LEVELS = 255
"""The cached uncertainty ``u`` in [0, 1] is stored as ``round(u * 255)`` (uint8)."""

Box = tuple[int, int, int, int]


class Chunk(NamedTuple):
    """One computed chunk: the model's token, its mask and its quantised uncertainty."""

    token: str
    mask: np.ndarray
    uncertainty: np.ndarray


def quantise_uncertainty(u: np.ndarray) -> np.ndarray:
    """``round(u * 255)`` as uint8 (what the live cache and the uncertainty layer hold)."""
    return np.rint(np.clip(u, 0.0, 1.0) * UNCERTAINTY_LEVELS).astype(np.uint8)


class LivePrediction:
    """Wanted chunks, a chunk cache and a compute loop for one image.

    Parameters
    ----------
    source
        The image.
    tile
        Side of a prediction chunk (rounded to the model's grid).
    scheduler
        Who runs when (training or the view); a fresh one if not given.
    """

    def __init__(self, source: ImageSource, tile: int = DEFAULT_LIVE_TILE,
                 scheduler: MachineScheduler | None = None) -> None:
        self.source = source
        self.tile = tile
        self.scheduler = scheduler or MachineScheduler()
        self.predictor: ChunkPredictor | None = None
        self.token: str | None = None
        self._newest: Checkpoint | None = None  # the newest model given; taken per the schedule
        self._adopted_at = -float("inf")
        self.cache: OrderedDict[tuple[int, int], Chunk] = OrderedDict()
        self.wanted: list[tuple[int, int]] = []
        self._region: Box | None = None
        self.computed = 0  # chunks computed since creation (for tests and the status line)
        self.computed_for_token = 0
        self.requested: list[tuple[int, int]] = []  # every chunk started, in order (tests, benchmarks)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.running = threading.Event()

    @property
    def grid(self) -> Any:
        return None if self.predictor is None else self.predictor.grid

    @property
    def newest_token(self) -> str | None:
        return None if self._newest is None else self._newest.token

    def set_checkpoint(self, checkpoint: Checkpoint) -> None:
        """A newer model: taken at once for the first model, else when the schedule allows."""
        with self._cond:
            self._newest = checkpoint
            if self.predictor is None or self.predictor.grid.tile != self.tile:
                self._adopt()
            self._cond.notify_all()

    def _adopt(self) -> None:
        """Predict with the newest model from now on (cached chunks become stale, stay shown)."""
        ckpt = self._newest
        if ckpt is None or (ckpt.token == self.token and self.predictor is not None
                            and self.predictor.grid.tile == self.tile):
            return
        predictor = ChunkPredictor(ckpt, self.source, tile=self.tile, device="cpu")
        if self.predictor is not None and predictor.grid.tile != self.predictor.grid.tile:
            self.cache.clear()  # another grid: old chunks no longer line up
        self.predictor = predictor
        self.token = ckpt.token
        self.computed_for_token = 0
        self._adopted_at = self.scheduler.clock()
        self._update_wanted()

    def request(self, y0: int, y1: int, x0: int, x1: int) -> None:
        """Want the chunks of region ``[y0:y1, x0:x1]`` (replacing the previous request)."""
        with self._cond:
            self._region = (y0, y1, x0, x1)
            self._update_wanted()
            self._cond.notify_all()

    def clear_request(self) -> None:
        """Want nothing (the view is zoomed out too far, or elsewhere): nothing off screen is computed."""
        with self._cond:
            self._region = None
            self.wanted = []
            self._cond.notify_all()

    def _update_wanted(self) -> None:
        grid = self.grid
        region = self._region
        if grid is None or region is None:
            self.wanted = []
            return
        y0, y1, x0, x1 = region
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        t = grid.tile
        chunks = grid.chunks_touching(y0, y1, x0, x1)
        chunks.sort(key=lambda c: (c[0] * t + t / 2 - cy) ** 2 + (c[1] * t + t / 2 - cx) ** 2)
        self.wanted = chunks

    def _next(self) -> tuple[tuple[int, int], bool] | None:
        """The next chunk and whether it is urgent: missing ones first, then stale ones."""
        if self.predictor is None:
            return None
        interacting = self.scheduler.interacting()
        stale = None
        for c in self.wanted:
            hit = self.cache.get(c)
            if hit is None:
                return c, True
            if stale is None and hit.token != self.token:
                stale = c
        return None if stale is None else (stale, interacting)

    def _maybe_adopt(self) -> None:
        newest = self._newest
        if newest is None or newest.token == self.token:
            return
        sched = self.scheduler
        pass_done = all((hit := self.cache.get(c)) is not None and hit.token == self.token for c in self.wanted)
        due = sched.clock() - self._adopted_at >= sched.refresh_every_s
        if sched.interacting() or (pass_done and due):
            self._adopt()

    def missing(self) -> int:
        """Wanted chunks with no prediction at all (blank on screen)."""
        with self._cond:
            return sum(1 for c in self.wanted if c not in self.cache)

    def pending(self) -> int:
        """Wanted chunks not yet computed with the newest model."""
        with self._cond:
            newest = self.newest_token
            return sum(1 for c in self.wanted if (hit := self.cache.get(c)) is None or hit.token != newest)

    def stop(self) -> None:
        """Ask :meth:`run` to return (after the chunk in flight)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _wait(self, seconds: float) -> None:
        self.scheduler.hold_training(False)
        self._cond.wait(timeout=seconds)

    def run(self) -> Iterator[tuple[int, int]]:
        """Compute wanted chunks until :meth:`stop`, as the schedule says; yields each finished index."""
        self.running.set()
        sched = self.scheduler
        try:
            while not self._stop.is_set():
                with self._cond:
                    if sched.live_paused:
                        self._wait(0.2)
                        continue
                    self._maybe_adopt()
                    nxt = self._next()
                    if nxt is None:
                        self._wait(0.2)
                        continue
                    job, urgent = nxt
                    if not urgent and (delay := sched.idle_wait()) > 0:
                        self._wait(min(delay, 0.2))
                        continue
                    predictor, token = self.predictor, self.token
                    self.requested.append(job)
                sched.hold_training(True)
                assert predictor is not None and token is not None
                t0 = time.perf_counter()
                prob, mask = predictor.outputs(*job)
                chunk = Chunk(token, mask, quantise_uncertainty(uncertainty_from_probabilities(prob)))
                # how much this refresh changed the picture (the schedule spends less on views that settle)
                before = self.cache.get(job)
                changed = (float(np.count_nonzero(before.mask != mask)) / mask.size
                           if before is not None and before.mask.shape == mask.shape else None)
                sched.chunk_done(time.perf_counter() - t0, urgent, changed)
                if not urgent:
                    sched.hold_training(False)
                with self._cond:
                    hit = self.cache.get(job)
                    if token != self.token and hit is not None and hit.token == self.token:
                        continue  # a newer model was taken meanwhile and its result is already shown
                    self.cache[job] = chunk
                    self.cache.move_to_end(job)
                    while len(self.cache) > MAX_CACHED_CHUNKS:
                        self.cache.popitem(last=False)
                    self.computed += 1
                    if token == self.token:
                        self.computed_for_token += 1
                yield job
        finally:
            sched.hold_training(False)
            self.running.clear()

    def levels(self, n_levels: int, field: str = "mask") -> list[CachedLevel]:
        """Display arrays of the cached ``field`` ("mask" or "uncertainty") at levels ``0 .. n_levels - 1``."""
        return [CachedLevel(self, lvl, field) for lvl in range(n_levels)]

    def snapshot(self) -> tuple[Any, dict[tuple[int, int], Chunk]]:
        """The grid and a copy of the cache (for readers on other threads)."""
        with self._cond:
            return self.grid, dict(self.cache)

    def read(self, y0: int, y1: int, x0: int, x1: int, field: str = "mask") -> np.ndarray:
        """Full-resolution ``field`` of a region from the cache (0 where nothing was computed)."""
        return CachedLevel(self, 0, field)[y0:y1, x0:x1]


class CachedLevel(LevelArray):
    """A read-only array ``(Y_l, X_l)`` of the cached mask or uncertainty at pyramid level ``level``.

    Pixel ``(y, x)`` of level ``l`` is full-resolution pixel ``(y * 2**l, x * 2**l)`` of the cache,
    0 where nothing was computed. Implements what napari needs of a layer's data (``shape``,
    ``dtype``, ``ndim``, ``__getitem__``). Only the chunks the request touches are looked up.
    """

    def __init__(self, live: LivePrediction, level: int, field: str = "mask") -> None:
        super().__init__(live.source.shape_yx, level)
        if field not in ("mask", "uncertainty"):
            raise ValueError(f"field must be 'mask' or 'uncertainty', got {field!r}")
        self.live = live
        self.field = field

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
        grid, cache = self.live.snapshot()
        if cache and rows.size and cols.size:
            if _increasing_slice(key[0]) and _increasing_slice(key[1]):
                self._fill_by_slices(out, ry, rx, grid.tile, cache)
            else:
                self._fill_by_index(out, ry, rx, grid.tile, cache)
        if scalar_r and scalar_c:
            return out[0, 0]
        if scalar_r:
            return out[0]
        if scalar_c:
            return out[:, 0]
        return out


    def _source(self, chunk: Chunk) -> np.ndarray:
        return chunk.mask if self.field == "mask" else chunk.uncertainty

    def _fill_by_slices(self, out: np.ndarray, ry: np.ndarray, rx: np.ndarray, t: int,
                        cache: dict[tuple[int, int], Chunk]) -> None:
        """``ry``/``rx`` are increasing arithmetic progressions (napari's requests): each chunk's share
        is one strided slice of the chunk into one block of ``out`` (no fancy indexing: the redraw of a
        full-resolution 1080x1844 view took 22 ms with it, under 1 ms without)."""
        def spans(coords: np.ndarray) -> list[tuple[int, int, int, int]]:
            step = int(coords[1] - coords[0]) if coords.size > 1 else 1
            first, last = int(coords[0]) // t, int(coords[-1]) // t
            bounds = np.searchsorted(coords, np.arange(first, last + 2) * t)
            return [(b, int(bounds[i]), int(bounds[i + 1]), step)
                    for i, b in enumerate(range(first, last + 1)) if bounds[i + 1] > bounds[i]]

        col_spans = spans(rx)
        for iy, r0, r1, sy in spans(ry):
            for ix, c0, c1, sx in col_spans:
                hit = cache.get((iy, ix))
                if hit is None:
                    continue
                y0, x0 = int(ry[r0]) - iy * t, int(rx[c0]) - ix * t
                out[r0:r1, c0:c1] = self._source(hit)[y0 : y0 + (r1 - r0 - 1) * sy + 1 : sy,
                                                      x0 : x0 + (c1 - c0 - 1) * sx + 1 : sx]

    def _fill_by_index(self, out: np.ndarray, ry: np.ndarray, rx: np.ndarray, t: int,
                       cache: dict[tuple[int, int], Chunk]) -> None:
        """Any other request (integer arrays, reversed slices): fancy indexing chunk by chunk."""
        by, bx = ry // t, rx // t
        col_sel = {ix: np.nonzero(bx == ix)[0] for ix in np.unique(bx).tolist()}
        for iy in np.unique(by).tolist():
            sel_r = None
            for ix, sel_c in col_sel.items():
                hit = cache.get((iy, ix))
                if hit is None:
                    continue
                if sel_r is None:
                    sel_r = np.nonzero(by == iy)[0]
                out[np.ix_(sel_r, sel_c)] = self._source(hit)[np.ix_(ry[sel_r] - iy * t, rx[sel_c] - ix * t)]


def _increasing_slice(key: Any) -> bool:
    return isinstance(key, slice) and (key.step is None or key.step > 0)


CachedMaskLevel = CachedLevel  # the name earlier versions used
