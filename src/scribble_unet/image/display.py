"""A display pyramid for a large single-resolution image, filled once, block by block.

A strided pyramid ``[a, a[::2, ::2], a[::4, ::4], ...]`` defined lazily over an image stored at one
resolution costs nothing to define but everything to look at: every pixel of a coarse level lies in
a different chunk, so drawing the zoomed-out image reads the whole image (on the thread that draws).
:class:`DisplayPyramid` keeps the coarse levels (up to :data:`MAX_HELD_PX` pixels each) in memory
instead and fills them from one pass over the image, each chunk read once: :meth:`DisplayPyramid.run`
(a generator, for a worker thread) fills them while the viewer shows what is there so far (zeros
elsewhere). Without a background pass (:attr:`DisplayPyramid.background` false, as in scripts) a
read of a coarse level fills the blocks it needs first, so the values are always those of the
strided pyramid. Level 0 stays the lazy image itself (a view reads only its own chunks).

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .levels import ArrayView2D

MIN_SIDE = 1024
"""The coarsest level keeps at least this many pixels along its longer side."""
MAX_HELD_PX = 8192 * 8192
"""Coarse levels larger than this stay lazy strided views (a 16384² image's levels 1-4 are held)."""
DEFAULT_BLOCK = 1024


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


class DisplayPyramid:
    """Display levels of a 2D lazy image (dask array, zarr array, ...) of shape ``(Y, X)``."""

    def __init__(self, image: Any, min_side: int = MIN_SIDE, max_held_px: int = MAX_HELD_PX) -> None:
        self.image = image
        h, w = (int(s) for s in image.shape[-2:])
        self.shape = (h, w)
        self.dtype = np.dtype(image.dtype)
        chunks = getattr(image, "chunksize", None) or getattr(image, "chunks", None)
        by, bx = (int(chunks[-2]), int(chunks[-1])) if chunks else (DEFAULT_BLOCK, DEFAULT_BLOCK)
        self.block = (min(by, h), min(bx, w))
        self.factors: list[int] = []
        f = 2
        while max(h, w) // f >= min_side:
            self.factors.append(f)
            f *= 2
        self.held: dict[int, np.ndarray] = {
            f: np.zeros((_ceil(h, f), _ceil(w, f)), self.dtype)
            for f in self.factors if _ceil(h, f) * _ceil(w, f) <= max_held_px
        }
        self.n_blocks = (_ceil(h, self.block[0]), _ceil(w, self.block[1]))
        self.filled = np.zeros(self.n_blocks, bool)
        self.background = False
        """True while (or once) :meth:`run` fills the levels: reads then never wait for the image."""
        self.stopped = threading.Event()
        self.done = threading.Event()
        self.estimate: tuple[float, float] | None = None
        """What :meth:`estimate_range` returned (the contrast limits a viewer started with)."""
        self.low: float | None = None
        self.high: float | None = None
        self.reads = 0  # image blocks read (for tests)
        self._lock = threading.RLock()

    def levels(self) -> list[Any]:
        """Level 0 (the image), then each coarse level: held (:class:`HeldLevel`) or a strided view."""
        return [self.image] + [HeldLevel(self, f) if f in self.held else self.image[..., ::f, ::f]
                               for f in self.factors]

    def _bounds(self, by: int, bx: int) -> tuple[int, int, int, int]:
        cy, cx = self.block
        return by * cy, min(self.shape[0], (by + 1) * cy), bx * cx, min(self.shape[1], (bx + 1) * cx)

    def fill_block(self, by: int, bx: int) -> None:
        """Read image block ``(by, bx)`` once and write its samples into every held level."""
        if self.filled[by, bx]:
            return
        y0, y1, x0, x1 = self._bounds(by, bx)
        block = np.asarray(self.image[y0:y1, x0:x1])
        with self._lock:
            self.reads += 1
            if self.filled[by, bx]:
                return
            for f, level in self.held.items():
                part = block[(-y0) % f :: f, (-x0) % f :: f]
                ly0, lx0 = _ceil(y0, f), _ceil(x0, f)
                level[ly0 : ly0 + part.shape[0], lx0 : lx0 + part.shape[1]] = part
            if block.size:
                lo, hi = float(np.nanmin(block)), float(np.nanmax(block))
                self.low = lo if self.low is None else min(self.low, lo)
                self.high = hi if self.high is None else max(self.high, hi)
            self.filled[by, bx] = True

    def estimate_range(self) -> tuple[float, float]:
        """Contrast limits from the central block alone (one block read): ``(min, max)``, max > min."""
        by, bx = self.n_blocks[0] // 2, self.n_blocks[1] // 2
        y0, y1, x0, x1 = self._bounds(by, bx)
        block = np.asarray(self.image[y0:y1, x0:x1])
        lo, hi = float(np.nanmin(block)), float(np.nanmax(block))
        self.estimate = (lo, hi) if hi > lo else (lo, lo + 1.0)
        return self.estimate

    def run(self, every_s: float = 0.5) -> Iterator[int]:
        """Fill every block (centre rows first); yields the number filled at most every ``every_s`` s."""
        self.background = True
        ny, nx = self.n_blocks
        order = sorted(((by, bx) for by in range(ny) for bx in range(nx)),
                       key=lambda b: (abs(2 * b[0] + 1 - ny) + abs(2 * b[1] + 1 - nx), b))
        last = time.monotonic()
        for n, (by, bx) in enumerate(order, 1):
            if self.stopped.is_set():
                return
            self.fill_block(by, bx)
            if time.monotonic() - last >= every_s:
                last = time.monotonic()
                yield n
        self.done.set()
        yield len(order)

    def stop(self) -> None:
        self.stopped.set()

    def read(self, factor: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Held level ``factor`` pixels ``[y0:y1, x0:x1]`` (level coordinates)."""
        if not self.background:
            cy, cx = self.block
            fy0, fy1 = y0 * factor, min(self.shape[0], y1 * factor)
            fx0, fx1 = x0 * factor, min(self.shape[1], x1 * factor)
            for by in range(fy0 // cy, _ceil(fy1, cy)):
                for bx in range(fx0 // cx, _ceil(fx1, cx)):
                    self.fill_block(by, bx)
        return self.held[factor][y0:y1, x0:x1].copy()  # a copy: the worker keeps writing


class HeldLevel(ArrayView2D):
    """A held coarse level as the array napari reads (``shape``, ``dtype``, ``ndim``, basic indexing)."""

    def __init__(self, pyramid: DisplayPyramid, factor: int) -> None:
        self.pyramid = pyramid
        self.factor = factor
        h, w = pyramid.held[factor].shape
        self.shape = (int(h), int(w))
        self.dtype = pyramid.dtype

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.array(self[:, :])  # a copy: the held level keeps filling in the background
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (2 - len(key))
        if len(key) != 2:
            raise IndexError(f"a display level has 2 axes, not {len(key)}")
        spans: list[tuple[int, int]] = []
        picks: list[int | slice] = []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, (int, np.integer)):
                i = int(k) % n
                spans.append((i, i + 1))
                picks.append(0)
            elif isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 1:
                    raise TypeError("a display level does not support negative steps")
                spans.append((start, max(start, stop)))
                picks.append(slice(None, None, step))
            else:
                raise TypeError(f"a display level supports integer and slice indexing, not {type(k)}")
        (y0, y1), (x0, x1) = spans
        return self.pyramid.read(self.factor, y0, y1, x0, x1)[picks[0], picks[1]]
