"""Images already in memory or lazy: numpy, dask and zarr arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputImageError
from .axes import guess_channel_axis
from .source import ImageSource


class ArraySource(ImageSource):
    """An in-memory or lazy array (numpy, dask, zarr.Array) seen as ``(C, Y, X)``.

    ``array`` has 2 axes ``(Y, X)`` or 3 axes with the channel axis given by ``channel_axis``.
    """

    def __init__(self, array: Any, channel_axis: int | None = None, name: str = "image") -> None:
        ndim = len(array.shape)
        if ndim == 2:
            if channel_axis is not None:
                raise InputImageError("a 2D image has no channel axis; drop channel_axis")
            self._array = array
            self._caxis: int | None = None
        elif ndim == 3:
            if channel_axis is None:
                channel_axis = guess_channel_axis(tuple(array.shape))
            if channel_axis < 0:
                channel_axis += 3
            if channel_axis not in (0, 1, 2):
                raise InputImageError(f"channel axis {channel_axis} is not one of 0, 1, 2")
            self._array = array
            self._caxis = channel_axis
        else:
            raise InputImageError(
                f"image has {ndim} axes {tuple(array.shape)}; 2D images with an optional channel axis are supported"
            )
        shape = tuple(int(s) for s in array.shape)
        if self._caxis is None:
            self.shape_yx = (shape[0], shape[1])
            self.n_channels = 1
        else:
            yx = [s for i, s in enumerate(shape) if i != self._caxis]
            self.shape_yx = (yx[0], yx[1])
            self.n_channels = shape[self._caxis]
        if 0 in self.shape_yx or self.n_channels == 0:
            raise InputImageError(f"image is empty (shape {shape})")
        self.dtype = np.dtype(array.dtype)
        if not (np.issubdtype(self.dtype, np.number) or self.dtype == np.bool_):
            raise InputImageError(f"image pixels are {self.dtype}, not numbers")
        if np.issubdtype(self.dtype, np.complexfloating):
            raise InputImageError(
                f"image pixels are complex ({self.dtype}); save the magnitude, phase or real part as the image"
            )
        self.name = name

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        self._check_window(y0, y1, x0, x1)
        if self._caxis is None:
            return np.asarray(self._array[y0:y1, x0:x1])[None]
        idx: list[slice] = [slice(y0, y1), slice(x0, x1)]
        idx.insert(self._caxis, slice(None))
        out = np.asarray(self._array[tuple(idx)])
        return np.moveaxis(out, self._caxis, 0)

    def to_dask(self) -> Any:
        import dask.array as da

        arr = self._array if isinstance(self._array, da.Array) else da.from_array(self._array, chunks="auto")
        if self._caxis is None:
            return arr[None]
        return da.moveaxis(arr, self._caxis, 0)

    @property
    def chunks_yx(self) -> tuple[int, int] | None:
        chunks = getattr(self._array, "chunks", None)
        if chunks is None:
            return None
        if chunks and isinstance(chunks[0], tuple):  # dask: tuple of tuples
            chunks = tuple(c[0] for c in chunks)
        yx = [int(c) for i, c in enumerate(chunks) if i != self._caxis]
        return (yx[0], yx[1])
