"""Images on disk, opened lazily: zarr arrays, OME-Zarr multiscale images and TIFF files.

The base of the path-backed sources (:class:`StoredSource`), which read only the windows asked for;
the backends live in :mod:`.zarr_image` and :mod:`.tiff_image`. Three kinds of storage are understood:

* a plain zarr array (format 2 or 3), 2D ``(Y, X)`` or 3D with a channel axis; a zarr group that holds
  exactly one array is opened as that array;
* an OME-Zarr multiscale image (NGFF 0.4 on zarr format 2, NGFF 0.5 on zarr format 3, where the
  metadata sits under the ``"ome"`` attribute); the axes and the channel axis come from the metadata,
  level 0 is the image and every level is offered for display;
* a TIFF file (plain, OME-TIFF, ImageJ, pyramidal), read through tifffile's zarr view of its strips or
  tiles, or memory-mapped when the pixels are stored uncompressed in one contiguous block (a zarr view
  of such a file would be one chunk: every window would read the whole image).

Every source pickles as its path and a few numbers; the file is reopened on first use on the other
side, so dask (distributed) workers read their own windows from disk. Bad input raises
:class:`~scribble_unet.errors.InputImageError` with a one-line message.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputImageError
from .axes import Layout, make_layout
from .source import ImageSource

# Dask chunk side for storage without chunks of its own (memory-mapped TIFF).
_DEFAULT_CHUNK = 1024


class _LevelView:
    """One pyramid level of a stored source seen as a ``(C, Y, X)`` array, for ``dask.array.from_array``.

    It holds the source, not an open file, so a dask graph built on it pickles by path too.
    """

    def __init__(self, source: StoredSource, level: int) -> None:
        self.source = source
        self.level = level
        self.shape = (source.n_channels, *source._level_shapes_yx[level])
        self.dtype = source.dtype
        self.ndim = 3

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        if len(key) != 3 or not all(isinstance(k, slice) for k in key):
            raise TypeError(f"only slices are supported, got {key!r}")
        cs, ys, xs = key
        return self.source._read_level(self.level, ys, xs, cs)


class StoredSource(ImageSource):
    """Base of the path-backed sources: a list of stored levels read through one :class:`Layout`.

    Subclasses implement :meth:`_open`, which opens the storage and returns one array-like per level
    (anything with numpy basic slicing), and call :meth:`_setup` from their constructor.
    """

    _kind = "image"

    path: Path
    _layout: Layout
    _level_shapes_yx: list[tuple[int, int]]
    _level_chunks_yx: list[tuple[int, int] | None]

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self._cache: tuple[list[Any], Any] | None = None
        self._lock = threading.Lock()
        # A change to the file gives its dask arrays new names, so dask never reuses stale results.
        self._stamp = os.stat(path).st_mtime_ns

    # -- opening and pickling ----------------------------------------------------------------------

    def _open(self) -> tuple[list[Any], Any]:
        """Open the storage: one array-like per level, and a handle to close (or None)."""
        raise NotImplementedError

    def _arrays(self) -> list[Any]:
        with self._lock:
            if self._cache is None:
                self._cache = self._open()
            return self._cache[0]

    def close(self) -> None:
        """Close open files; the next read reopens them. Not to be called while reads are running."""
        with self._lock:
            cache, self._cache = self._cache, None
        if cache is not None and cache[1] is not None:
            cache[1].close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: module globals may be gone already
            pass

    def __getstate__(self) -> dict[str, Any]:
        # Open files and locks do not travel: the other side reopens the path on first read.
        state = self.__dict__.copy()
        state["_cache"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- shape checks --------------------------------------------------------------------------------

    def _setup(
        self,
        axes: Sequence[tuple[str, str]] | None,
        channel_axis: int | None,
        where: str,
    ) -> None:
        """Check the opened levels and record layout, shapes, chunks and dtype."""
        try:
            self._check_levels(axes, channel_axis, where)
        except BaseException:
            self.close()  # do not leave the file open until the refused source is collected
            raise

    def _check_levels(
        self,
        axes: Sequence[tuple[str, str]] | None,
        channel_axis: int | None,
        where: str,
    ) -> None:
        arrays = self._arrays()
        shape0 = tuple(int(s) for s in arrays[0].shape)
        dtype = np.dtype(arrays[0].dtype)
        if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
            raise InputImageError(f"{where} has pixels of type {dtype}, not numbers")
        if np.issubdtype(dtype, np.complexfloating):
            raise InputImageError(
                f"{where} has complex pixels ({dtype}); save the magnitude, phase or real part as the image"
            )
        layout = make_layout(axes, shape0, channel_axis, where)
        if 0 in shape0:
            raise InputImageError(f"{where} is empty (shape {shape0})")
        shapes: list[tuple[int, int]] = []
        chunks: list[tuple[int, int] | None] = []
        for level, arr in enumerate(arrays):
            shape = tuple(int(s) for s in arr.shape)
            if len(shape) != len(shape0) or (
                layout.c is not None and shape[layout.c] != shape0[layout.c]
            ):
                raise InputImageError(
                    f"{where}: pyramid level {level} has shape {shape}, which does not match level 0 {shape0}"
                )
            shapes.append((shape[layout.y], shape[layout.x]))
            chunks.append(self._native_chunks(arr, layout))
        self._layout = layout
        self._level_shapes_yx = shapes
        self._level_chunks_yx = chunks
        self.shape_yx = shapes[0]
        self.n_channels = shape0[layout.c] if layout.c is not None else 1
        self.dtype = dtype.newbyteorder("=")

    @staticmethod
    def _native_chunks(arr: Any, layout: Layout) -> tuple[int, int] | None:
        chunks = getattr(arr, "chunks", None)
        if not isinstance(chunks, tuple) or len(chunks) != layout.ndim:
            return None
        return (int(chunks[layout.y]), int(chunks[layout.x]))

    # -- reading -------------------------------------------------------------------------------------

    def _read_level(self, level: int, ys: slice, xs: slice, cs: slice = slice(None)) -> np.ndarray:
        arr = self._arrays()[level]
        try:
            block = np.asarray(arr[self._layout.index(ys, xs, cs)])
        except (InputImageError, MemoryError):
            raise
        except Exception as err:  # a truncated or corrupt chunk: name it, in one line
            raise InputImageError(self._damaged(level, ys, xs, err)) from err
        out = np.ascontiguousarray(self._layout.to_cyx(block))
        # Big-endian files (some TIFFs) come back in file order; callers get native order.
        return out.astype(self.dtype, copy=False)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        self._check_window(y0, y1, x0, x1)
        return self._read_level(0, slice(y0, y1), slice(x0, x1))

    def _damaged(self, level: int, ys: slice, xs: slice, err: BaseException) -> str:
        """One line naming the stored chunk(s) that could not be read."""
        chunks = self._level_chunks_yx[level] if hasattr(self, "_level_chunks_yx") else None
        y0, x0 = ys.start or 0, xs.start or 0
        y1 = ys.stop if ys.stop is not None else y0 + 1
        x1 = xs.stop if xs.stop is not None else x0 + 1
        if chunks:
            cy, cx = chunks
            iy0, iy1, ix0, ix1 = y0 // cy, (y1 - 1) // cy, x0 // cx, (x1 - 1) // cx
            where = (f"chunk (y {iy0}, x {ix0})" if (iy0, ix0) == (iy1, ix1)
                     else f"one of chunks y {iy0}-{iy1}, x {ix0}-{ix1}")
            where += f" ({cy}x{cx} px)"
        else:
            where = "its data"
        level_text = f" level {level}" if level else ""
        return (f"{self.path}{level_text} is damaged: cannot read {where} for the window y {y0}:{y1}, "
                f"x {x0}:{x1} ({type(err).__name__}: {one_line(err)[:120]})")

    def _dask_level(self, level: int) -> Any:
        import dask.array as da
        from dask.base import tokenize

        h, w = self._level_shapes_yx[level]
        native = self._level_chunks_yx[level]
        cy, cx = native if native is not None else (_DEFAULT_CHUNK, _DEFAULT_CHUNK)
        # All channels in one chunk: every consumer (display, prediction) needs all of them per pixel.
        chunks = (self.n_channels, min(cy, h), min(cx, w))
        token = tokenize(str(self.path), self._kind, level, self._stamp, self.shape_yx)
        return da.from_array(
            _LevelView(self, level),
            chunks=chunks,
            name=f"{self._kind}-{self.name}-L{level}-{token}",
            meta=np.empty((0, 0, 0), dtype=self.dtype),
            fancy=False,
        )

    def to_dask(self) -> Any:
        return self._dask_level(0)

    def levels(self) -> list[Any]:
        return [self._dask_level(level) for level in range(len(self._level_shapes_yx))]

    @property
    def chunks_yx(self) -> tuple[int, int] | None:
        return self._level_chunks_yx[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, shape=({self.n_channels}, {self.shape_yx[0]}, "
            f"{self.shape_yx[1]}), dtype={self.dtype}, levels={len(self._level_shapes_yx)})"
        )


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 200 else text[:197] + "..."
