"""The scribble store's faces in the viewer: a write-through window and a max-pooled overview.

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from ..image.levels import LevelArray


class WriteThroughWindow(np.ndarray):
    """A numpy window onto a region of a zarr scribble store; every assignment is written through.

    napari paints (and undoes, and fills) by assigning into the layer's data. Because this class is a
    real ``numpy.ndarray``, napari treats it as one; its ``__setitem__`` additionally copies the
    bounding box of what changed into the store, so the store on disk always holds every stroke.
    Views taken from it (slices) do not write through; only the window itself does.
    """

    _store: Any
    _origin: tuple[int, int]
    _on_write: Any

    @classmethod
    def load(cls, store: Any, y0: int, y1: int, x0: int, x1: int, on_write: Any = None) -> WriteThroughWindow:
        """Read ``store[y0:y1, x0:x1]`` into a new window."""
        data = np.asarray(store[y0:y1, x0:x1])
        win = data.view(cls)
        win._store = store
        win._origin = (y0, x0)
        win._on_write = on_write
        return win

    def __array_finalize__(self, obj: Any) -> None:
        self._store = None
        self._origin = (0, 0)
        self._on_write = None

    @property
    def origin(self) -> tuple[int, int]:
        """Position of the window's first pixel in the store."""
        return self._origin

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if self._store is None:
            return
        box = _bounding_box(key, self.shape)
        if box is None:
            return
        y0, y1, x0, x1 = box
        oy, ox = self._origin
        self._store[oy + y0 : oy + y1, ox + x0 : ox + x1] = self.view(np.ndarray)[y0:y1, x0:x1]
        if self._on_write is not None:
            self._on_write((oy + y0, oy + y1, ox + x0, ox + x1))


def _bounding_box(key: Any, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, y1, x0, x1)`` of what ``array[key] = ...`` touches; whole array if unsure."""
    whole = (0, shape[0], 0, shape[1])
    if not isinstance(key, tuple) or len(key) != 2:
        return whole
    bounds: list[int] = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step != 1:
                return whole
            if stop <= start:
                return None
            bounds += [start, stop]
        elif isinstance(k, (int, np.integer)):
            i = int(k) % n
            bounds += [i, i + 1]
        else:
            idx = np.asarray(k)
            if idx.dtype == bool or idx.size == 0:
                return whole if idx.size else None
            bounds += [int(idx.min()) % n, int(idx.max()) % n + 1]
    return bounds[0], bounds[1], bounds[2], bounds[3]


MAX_POOLED_CHUNKS = 8192
"""Pooled chunks kept by :class:`ScribbleOverview` (at most 64 KiB each at level 1), oldest dropped."""


class ScribbleOverview:
    """A read-only pyramid of the scribble store for zoomed-out views, max-pooled so strokes stay visible.

    Level ``l`` pixel ``(y, x)`` is the maximum of the store over the full-resolution block
    ``[y * 2**l, (y + 1) * 2**l) x [x * 2**l, (x + 1) * 2**l)``: a 1 px stroke is still drawn at any
    zoom. Only store chunks that hold scribbles are read (the zarr store keeps no empty chunk), one
    at a time, and pooled chunks are cached; :meth:`invalidate` drops what a write touched. Nothing
    here ever reads more than one store chunk at once, so no full-resolution plane is loaded.

    At level 0 the box :attr:`hidden` (the paintable window, which draws itself on top) is left
    empty, so that an erased stroke is never seen through the window.
    """

    def __init__(self, store: Any, n_levels: int, max_cached: int = MAX_POOLED_CHUNKS) -> None:
        self.store = store
        self.shape: tuple[int, int] = (int(store.shape[0]), int(store.shape[1]))
        self.chunk: tuple[int, int] = (int(store.chunks[0]), int(store.chunks[1]))
        self.n_levels = n_levels
        self.max_cached = max_cached
        self.hidden: tuple[int, int, int, int] | None = None
        self.reads = 0  # store chunks read (for tests)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int, int], np.ndarray | None] = OrderedDict()
        self.chunks: set[tuple[int, int]] = self._list_chunks()

    def _list_chunks(self) -> set[tuple[int, int]]:
        """Indices of the chunks present in the store (those that may hold scribbles)."""
        ny, nx = -(-self.shape[0] // self.chunk[0]), -(-self.shape[1] // self.chunk[1])
        try:
            from zarr.core.sync import sync

            async def keys() -> list[str]:
                return [k async for k in self.store.store.list_prefix(self.store.path)]

            found = set()
            for key in sync(keys()):
                m = re.fullmatch(r"(?:.*/)?c[/.](\d+)[/.](\d+)", key)
                if m:
                    found.add((int(m.group(1)), int(m.group(2))))
            return found
        except Exception:  # another store or zarr version: every chunk may hold scribbles
            return {(iy, ix) for iy in range(ny) for ix in range(nx)}

    def levels(self) -> list[ScribbleOverviewLevel]:
        """Display arrays of levels ``0 .. n_levels - 1`` (factor 2 each), for a multiscale layer."""
        return [ScribbleOverviewLevel(self, lvl) for lvl in range(self.n_levels)]

    def invalidate(self, region: tuple[int, int, int, int]) -> None:
        """The store changed in full-resolution box ``(y0, y1, x0, x1)``: forget what was pooled there."""
        y0, y1, x0, x1 = region
        cy, cx = self.chunk
        touched = {(iy, ix) for iy in range(y0 // cy, -(-y1 // cy)) for ix in range(x0 // cx, -(-x1 // cx))}
        with self._lock:
            self.chunks |= touched
            for key in [k for k in self._cache if (k[1], k[2]) in touched]:
                del self._cache[key]

    def _pooled(self, level: int, iy: int, ix: int) -> np.ndarray | None:
        """Chunk ``(iy, ix)`` max-pooled by ``2**level`` (at least one pixel), or None if it is empty."""
        key = (level, iy, ix)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        cy, cx = self.chunk
        y0, x0 = iy * cy, ix * cx
        block = np.asarray(self.store[y0 : min(self.shape[0], y0 + cy), x0 : min(self.shape[1], x0 + cx)])
        self.reads += 1
        pooled: np.ndarray | None
        if not block.any():
            pooled = None
        else:
            f = 2**level
            h, w = block.shape
            ph, pw = -(-h // f), -(-w // f)
            padded = np.zeros((ph * f, pw * f), block.dtype)
            padded[:h, :w] = block
            pooled = padded.reshape(ph, f, pw, f).max(axis=(1, 3))
        with self._lock:
            if pooled is None:
                self.chunks.discard((iy, ix))
            self._cache[key] = pooled
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return pooled

    def read(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Level ``level`` pixels ``[y0:y1, x0:x1]`` (level coordinates)."""
        out = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), np.uint8)
        if out.size == 0:
            return out
        f = 2**level
        cy, cx = self.chunk
        with self._lock:
            chunks = sorted(self.chunks)
        for iy, ix in chunks:
            # Level pixels covered by this chunk (several chunks share a pixel when 2**level > chunk).
            ly0, ly1 = iy * cy // f, -(-min(self.shape[0], (iy + 1) * cy) // f)
            lx0, lx1 = ix * cx // f, -(-min(self.shape[1], (ix + 1) * cx) // f)
            if ly1 <= y0 or ly0 >= y1 or lx1 <= x0 or lx0 >= x1:
                continue
            pooled = self._pooled(level, iy, ix)
            if pooled is None:
                continue
            ph, pw = pooled.shape
            ly1, lx1 = ly0 + ph, lx0 + pw
            sy0, sy1 = max(y0, ly0), min(y1, ly1)
            sx0, sx1 = max(x0, lx0), min(x1, lx1)
            if sy0 >= sy1 or sx0 >= sx1:
                continue
            dst = out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
            np.maximum(dst, pooled[sy0 - ly0 : sy1 - ly0, sx0 - lx0 : sx1 - lx0], out=dst)
        hidden = self.hidden
        if level == 0 and hidden is not None:
            hy0, hy1, hx0, hx1 = hidden
            out[max(0, hy0 - y0) : max(0, hy1 - y0), max(0, hx0 - x0) : max(0, hx1 - x0)] = 0
        return out


class ScribbleOverviewLevel(LevelArray):
    """Level ``level`` of a :class:`ScribbleOverview` as the array napari reads (``shape``, ``dtype``,
    ``ndim``, ``__getitem__``); only basic slices are read from the store, anything else is refused."""

    def __init__(self, overview: ScribbleOverview, level: int) -> None:
        super().__init__(overview.shape, level)
        self.overview = overview

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (2 - len(key))
        bounds = []
        for k, n in zip(key[:2], self.shape, strict=True):
            if isinstance(k, (int, np.integer)):
                i = int(k) % n
                bounds.append((i, i + 1, 1, True))
            elif isinstance(k, slice):
                start, stop, step = k.indices(n)
                bounds.append((start, max(start, stop), step, False))
            else:
                raise TypeError(f"the scribble overview supports integer and slice indexing, not {type(k)}")
        (y0, y1, sy, ry), (x0, x1, sx, rx) = bounds
        if sy < 1 or sx < 1:
            raise TypeError("the scribble overview does not support negative steps")
        out = self.overview.read(self.level, y0, y1, x0, x1)[::sy, ::sx]
        if ry and rx:
            return out[0, 0]
        if ry:
            return out[0]
        if rx:
            return out[:, 0]
        return out
