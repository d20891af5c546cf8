"""Exact tiling: output chunks on a global grid, input windows with a halo, reflection at borders.

The reference ("one whole-image pass") is defined as: reflect-pad the image by ``halo`` on every side
and by ``halo`` plus the rounding to a multiple of ``align`` at the bottom/right, run the network once,
crop back to the image. Every output chunk here starts on a multiple of ``align`` and reads the same
reflected pixels in a window ``[start - halo, stop' + halo)`` (``stop'`` rounded up to ``align``), so
each output pixel sees exactly the values, and the pooling grid, that it sees in the whole pass. Pixels
are never more than ``halo`` from the chunk centre's window edge, beyond the network's receptive field,
so the zero padding of the convolutions at the window edge cannot reach them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import ScribbleUNetError


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map integer positions onto ``[0, n)`` by mirror reflection without repeating the edge pixel.

    Same convention as ``numpy.pad(mode="reflect")``, including pads longer than the axis.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m < n, m, period - m)


def read_reflected(
    read: Callable[[int, int, int, int], np.ndarray],
    shape_yx: tuple[int, int],
    y0: int,
    y1: int,
    x0: int,
    x1: int,
) -> np.ndarray:
    """Read window ``[y0:y1, x0:x1]`` of an image extended by reflection beyond its borders.

    ``read(y0, y1, x0, x1)`` must return ``(C, y1 - y0, x1 - x0)`` for windows inside the image; only the
    bounding box of the pixels actually needed is read.
    """
    h, w = shape_yx
    iy = reflect_index(np.arange(y0, y1), h)
    ix = reflect_index(np.arange(x0, x1), w)
    ry0, ry1 = int(iy.min()), int(iy.max()) + 1
    rx0, rx1 = int(ix.min()), int(ix.max()) + 1
    block = read(ry0, ry1, rx0, rx1)
    if y0 >= 0 and y1 <= h and x0 >= 0 and x1 <= w:
        return block
    return block[:, iy - ry0][:, :, ix - rx0]


def round_tile(tile: int, align: int) -> int:
    """Round a requested tile size to the nearest positive multiple of ``align``."""
    if tile < 0:
        raise ScribbleUNetError(f"tile size must be positive (or 0 for one whole-image pass), got {tile}")
    return max(align, round(tile / align) * align)


@dataclass(frozen=True)
class TileGrid:
    """Output chunks of an image on a grid aligned to the network's pooling grid.

    Parameters
    ----------
    shape_yx
        Image size.
    tile
        Output chunk side (a multiple of ``align``); the last row/column of chunks is cut at the image.
    halo
        Context read on each side of a chunk (a multiple of ``align``).
    align
        ``2**depth`` of the network.
    """

    shape_yx: tuple[int, int]
    tile: int
    halo: int
    align: int

    def __post_init__(self) -> None:
        if self.tile <= 0 or self.tile % self.align:
            raise ScribbleUNetError(f"tile {self.tile} is not a positive multiple of {self.align}")
        if self.halo < 0 or self.halo % self.align:
            raise ScribbleUNetError(f"halo {self.halo} is not a multiple of {self.align}")

    @classmethod
    def whole(cls, shape_yx: tuple[int, int], halo: int, align: int) -> TileGrid:
        """One chunk covering the whole image (``--tile 0``)."""
        side = max(shape_yx)
        return cls(shape_yx, -(-side // align) * align, halo, align)

    @property
    def n_chunks(self) -> tuple[int, int]:
        h, w = self.shape_yx
        return math.ceil(h / self.tile), math.ceil(w / self.tile)

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Chunk sizes along Y and X in dask's format."""
        return tuple(  # type: ignore[return-value]
            tuple(min(self.tile, n - i) for i in range(0, n, self.tile)) for n in self.shape_yx
        )

    def chunk_bounds(self, iy: int, ix: int) -> tuple[int, int, int, int]:
        """Output window ``(y0, y1, x0, x1)`` of chunk ``(iy, ix)``, inside the image."""
        h, w = self.shape_yx
        y0, x0 = iy * self.tile, ix * self.tile
        if not (0 <= y0 < h and 0 <= x0 < w):
            raise IndexError(f"chunk ({iy}, {ix}) outside the grid {self.n_chunks}")
        return y0, min(y0 + self.tile, h), x0, min(x0 + self.tile, w)

    def input_window(self, iy: int, ix: int) -> tuple[int, int, int, int]:
        """Network input window ``(y0, y1, x0, x1)`` for chunk ``(iy, ix)``; may extend past the image."""
        y0, y1, x0, x1 = self.chunk_bounds(iy, ix)
        a = self.align
        y1 = -(-y1 // a) * a
        x1 = -(-x1 // a) * a
        return y0 - self.halo, y1 + self.halo, x0 - self.halo, x1 + self.halo

    def __iter__(self) -> Iterator[tuple[int, int]]:
        ny, nx = self.n_chunks
        for iy in range(ny):
            for ix in range(nx):
                yield iy, ix

    def chunks_touching(self, y0: int, y1: int, x0: int, x1: int) -> list[tuple[int, int]]:
        """Indices of the chunks that overlap the region ``[y0:y1, x0:x1]``."""
        h, w = self.shape_yx
        y0, y1 = max(0, y0), min(h, y1)
        x0, x1 = max(0, x0), min(w, x1)
        if y0 >= y1 or x0 >= x1:
            return []
        t = self.tile
        return [
            (iy, ix)
            for iy in range(y0 // t, (y1 - 1) // t + 1)
            for ix in range(x0 // t, (x1 - 1) // t + 1)
        ]
