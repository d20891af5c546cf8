"""Images in, never read whole: one interface over numpy, dask, zarr, OME-Zarr and TIFF.

:func:`open_image` turns a path or an array into an :class:`ImageSource`, a 2D image of shape
``(C, Y, X)`` that is read window by window. Sources are picklable (paths are reopened on the other
side), so dask workers read their tile plus halo straight from the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputImageError


class ImageSource:
    """A 2D image with channels, ``(C, Y, X)``, read lazily by windows.

    Attributes
    ----------
    shape_yx
        ``(Y, X)`` size of the full-resolution plane.
    n_channels
        Number of channels C (1 for grayscale).
    dtype
        Pixel type.
    name
        A label for messages and layer names.
    """

    shape_yx: tuple[int, int]
    n_channels: int
    dtype: np.dtype[Any]
    name: str = "image"

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` of every channel as an array ``(C, y1 - y0, x1 - x0)``.

        The window must lie inside the image.
        """
        raise NotImplementedError

    def to_dask(self) -> Any:
        """The whole image as a lazy dask array ``(C, Y, X)``."""
        raise NotImplementedError

    def levels(self) -> list[Any]:
        """Pyramid levels ``(C, Y_l, X_l)`` for display, full resolution first.

        Sources without a stored pyramid return ``[self.to_dask()]``.
        """
        return [self.to_dask()]

    @property
    def chunks_yx(self) -> tuple[int, int] | None:
        """Native chunk size of the storage in Y and X, when it has one."""
        return None

    def _check_window(self, y0: int, y1: int, x0: int, x1: int) -> None:
        h, w = self.shape_yx
        if not (0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w):
            raise IndexError(f"window [{y0}:{y1}, {x0}:{x1}] outside image of shape {self.shape_yx}")


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
                channel_axis = _guess_channel_axis(tuple(array.shape))
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


def _guess_channel_axis(shape: tuple[int, ...]) -> int:
    """Channel axis of a 3D array: the one axis with at most 16 entries, when exactly one has."""
    small = [i for i, s in enumerate(shape) if s <= 16]
    if len(small) == 1:
        return small[0]
    raise InputImageError(
        f"cannot tell which axis of shape {shape} holds the channels; pass channel_axis (--channel-axis)"
    )


def open_image(source: Any, channel_axis: int | None = None, name: str | None = None) -> ImageSource:
    """Open ``source`` (a path, a numpy/dask/zarr array, or an :class:`ImageSource`) as an image.

    Paths: a zarr array (v2 or v3), an OME-Zarr multiscale image (level 0 is used; axes and the channel
    axis come from its metadata), or a TIFF file (read lazily). Bad input raises
    :class:`~scribble_unet.errors.InputImageError` with a one-line message.
    """
    if isinstance(source, ImageSource):
        return source
    if hasattr(source, "shape") and hasattr(source, "dtype") and hasattr(source, "__getitem__"):
        return ArraySource(source, channel_axis=channel_axis, name=name or "image")
    from ._paths import open_path

    return open_path(source, channel_axis=channel_axis, name=name)
