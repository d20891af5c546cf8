"""Images on disk, opened lazily: zarr arrays, OME-Zarr multiscale images and TIFF files.

:func:`open_path` looks at a path and returns an :class:`~scribble_unet.io.ImageSource` that reads
only the windows asked for. Three kinds of storage are understood:

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputImageError
from .io import ImageSource, _guess_channel_axis

__all__ = ["OmeZarrSource", "TiffSource", "ZarrArraySource", "open_path"]

_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
# Classic TIFF and BigTIFF headers, little and big endian.
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup", ".zattrs")

# Dask chunk side for storage without chunks of its own (memory-mapped TIFF).
_DEFAULT_CHUNK = 1024

# Roles an axis can play. "?" is an axis whose meaning the file does not say (tifffile's "Q", "I", ...,
# or a plain array); any other string is a named axis that must have length 1 (t, z, or a custom one).
_Y, _X, _C, _UNKNOWN = "y", "x", "c", "?"


def open_path(
    source: str | os.PathLike[str], channel_axis: int | None = None, name: str | None = None
) -> ImageSource:
    """Open the image stored at ``source`` for lazy, windowed reading.

    Parameters
    ----------
    source
        Path of a TIFF file, a zarr array, an OME-Zarr image group (a ``labels`` subgroup is ignored),
        or a zarr group that holds exactly one array.
    channel_axis
        Index of the channel axis among the stored array's axes (negative counts from the end). Only
        needed when the file does not say which axis holds the channels; when its metadata does, a
        different value is an error.
    name
        Label for messages and layers; the file name without its extension by default.

    Returns
    -------
    ImageSource
        A picklable source of shape ``(C, Y, X)``.

    Raises
    ------
    InputImageError
        When the path does not exist, is not an image, or holds an image this package cannot use
        (3D, more axes, empty, non-numeric pixels).
    """
    if not isinstance(source, (str, os.PathLike)):
        raise InputImageError(
            f"cannot open a {type(source).__name__} as an image; pass a path or an array"
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise InputImageError(f"{path} does not exist")
    label = name or _stem(path)
    if path.is_file():
        if _has_tiff_header(path):
            return TiffSource(path, channel_axis=channel_axis, name=label)
        if path.suffix.lower() in _TIFF_SUFFIXES:
            raise InputImageError(
                f"{path} is not a valid TIFF file (it does not start with a TIFF header)"
            )
        raise InputImageError(
            f"{path} is not an image: expected a TIFF file, a zarr array or an OME-Zarr image"
        )
    if path.is_dir():
        return _open_zarr_dir(path, channel_axis, label)
    raise InputImageError(f"{path} is neither a file nor a directory")


# --------------------------------------------------------------------------------------------------
# Axis layout


@dataclass(frozen=True)
class _Layout:
    """Where the y, x and channel axes sit in a stored array; every other axis has length 1."""

    ndim: int
    y: int
    x: int
    c: int | None

    def index(self, ys: slice, xs: slice, cs: slice) -> tuple[int | slice, ...]:
        """Stored-array index for a window; length-1 axes are indexed with 0 so they drop out."""
        idx: list[int | slice] = [0] * self.ndim
        idx[self.y] = ys
        idx[self.x] = xs
        if self.c is not None:
            idx[self.c] = cs
        return tuple(idx)

    def to_cyx(self, block: np.ndarray) -> np.ndarray:
        """Reorder a block indexed with :meth:`index` (kept axes in stored order) to ``(C, y, x)``."""
        kept = sorted(a for a in (self.c, self.y, self.x) if a is not None)
        order = [kept.index(a) for a in (self.c, self.y, self.x) if a is not None]
        out = block.transpose(order)
        return out if self.c is not None else out[None]


def _make_layout(
    axes: Sequence[tuple[str, str]] | None,
    shape: tuple[int, ...],
    channel_axis: int | None,
    where: str,
) -> _Layout:
    """Work out the :class:`_Layout` of an array from its axis roles (``(role, name)`` per axis).

    ``axes`` is None when the storage says nothing about its axes: then the array must be 2D, or 3D
    with the channel axis given or guessed by the rule of :func:`~scribble_unet.io._guess_channel_axis`.
    """
    ndim = len(shape)
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise InputImageError(
                f"channel_axis={channel_axis} is out of range for {where}, which has {ndim} axes {shape}"
            )
        channel_axis %= ndim

    if axes is None:
        if ndim == 2:
            if channel_axis is not None:
                raise InputImageError(
                    f"{where} is a 2D image and has no channel axis; drop channel_axis"
                )
            return _Layout(2, 0, 1, None)
        if ndim == 3:
            c3 = channel_axis if channel_axis is not None else _guess_channel_axis(shape)
            y3, x3 = (a for a in range(3) if a != c3)
            return _Layout(3, y3, x3, c3)
        raise InputImageError(
            f"{where} has {ndim} axes {shape}; only 2D images (Y, X) with an optional channel axis are supported"
        )

    if len(axes) != ndim:
        raise InputImageError(
            f"{where}: its metadata names {len(axes)} axes but the array has {ndim} {shape}"
        )
    roles = [role for role, _ in axes]
    axes_text = "".join(n if len(n) == 1 else f"[{n}]" for _, n in axes)

    # Named axes that are neither channels nor y/x (t, z, ...) are fine only with length 1.
    for (role, axname), size in zip(axes, shape, strict=True):
        if role in (_Y, _X, _C, _UNKNOWN) or size == 1:
            continue
        if role == "t":
            what = f"{size} time points"
        elif role == "z":
            what = f"{size} z planes"
        else:
            what = f"{size} entries along axis '{axname}'"
        raise InputImageError(
            f"{where} has {what}; only 2D images are supported for now (axes {axes_text}, "
            f"shape {shape}; save one plane, or a projection, as its own image)"
        )
    for role in (_Y, _X):
        if roles.count(role) != 1:
            raise InputImageError(
                f"{where}: cannot find exactly one {role} axis in its axes {axes_text}"
            )
    y, x = roles.index(_Y), roles.index(_X)

    channels = [i for i, r in enumerate(roles) if r == _C]
    unknown = [i for i, r in enumerate(roles) if r == _UNKNOWN and shape[i] > 1]
    if len(channels) > 1 and sum(shape[i] > 1 for i in channels) > 1:
        raise InputImageError(
            f"{where} has more than one channel axis (axes {axes_text}, shape {shape}); "
            "only 2D images with one channel axis are supported"
        )
    if (channels and unknown) or len(unknown) > 1:
        raise InputImageError(
            f"{where} has {ndim} axes (axes {axes_text}, shape {shape}); "
            "only 2D images with an optional channel axis are supported"
        )
    c: int | None
    if channels:
        # Prefer the one channel axis longer than 1 (an OME-TIFF can list both C and S of length 1).
        c = max(channels, key=lambda i: shape[i])
    elif unknown:
        (c,) = unknown
        if channel_axis is None and shape[c] > 16:
            raise InputImageError(
                f"cannot tell whether axis {c} (length {shape[c]}) of {where} holds channels or planes "
                f"(axes {axes_text}, shape {shape}); pass channel_axis (--channel-axis) if it holds channels"
            )
    else:
        c = None
    if channel_axis is not None and channel_axis != c:
        said = f"axis {c}" if c is not None else "no axis"
        raise InputImageError(
            f"channel_axis={channel_axis} disagrees with {where}, whose axes {axes_text} put the channels on "
            f"{said}; drop channel_axis"
        )
    return _Layout(ndim, y, x, c)


# --------------------------------------------------------------------------------------------------
# Sources


class _LevelView:
    """One pyramid level of a stored source seen as a ``(C, Y, X)`` array, for ``dask.array.from_array``.

    It holds the source, not an open file, so a dask graph built on it pickles by path too.
    """

    def __init__(self, source: _StoredSource, level: int) -> None:
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


class _StoredSource(ImageSource):
    """Base of the path-backed sources: a list of stored levels read through one :class:`_Layout`.

    Subclasses implement :meth:`_open`, which opens the storage and returns one array-like per level
    (anything with numpy basic slicing), and call :meth:`_setup` from their constructor.
    """

    _kind = "image"

    path: Path
    _layout: _Layout
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
        layout = _make_layout(axes, shape0, channel_axis, where)
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
    def _native_chunks(arr: Any, layout: _Layout) -> tuple[int, int] | None:
        chunks = getattr(arr, "chunks", None)
        if not isinstance(chunks, tuple) or len(chunks) != layout.ndim:
            return None
        return (int(chunks[layout.y]), int(chunks[layout.x]))

    # -- reading -------------------------------------------------------------------------------------

    def _read_level(self, level: int, ys: slice, xs: slice, cs: slice = slice(None)) -> np.ndarray:
        arr = self._arrays()[level]
        block = np.asarray(arr[self._layout.index(ys, xs, cs)])
        out = np.ascontiguousarray(self._layout.to_cyx(block))
        # Big-endian files (some TIFFs) come back in file order; callers get native order.
        return out.astype(self.dtype, copy=False)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        self._check_window(y0, y1, x0, x1)
        return self._read_level(0, slice(y0, y1), slice(x0, x1))

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


class ZarrArraySource(_StoredSource):
    """A zarr array (format 2 or 3), possibly one array inside a zarr group.

    Its axes come from zarr v3 ``dimension_names`` or the xarray-style ``_ARRAY_DIMENSIONS`` attribute
    of format 2 when those name every axis with one of t, c, z, y, x; otherwise the array must be 2D or
    3D with a guessable or given channel axis.
    """

    _kind = "zarr"

    def __init__(self, path: Path, channel_axis: int | None = None, name: str = "image") -> None:
        super().__init__(path, name)
        self._setup(_dimension_axes(self._arrays()[0]), channel_axis, f"zarr array {path}")

    def _open(self) -> tuple[list[Any], Any]:
        return [_open_zarr_array(self.path)], None


class OmeZarrSource(_StoredSource):
    """An OME-Zarr multiscale image (NGFF 0.4 on zarr format 2, or 0.5 on zarr format 3).

    Level 0 (``datasets[0].path``) is the image; every dataset is a level of :meth:`levels`. Length-1
    t and z axes are dropped; longer ones are refused (only 2D images are supported).
    """

    _kind = "ome-zarr"

    def __init__(
        self,
        path: Path,
        dataset_paths: Sequence[str],
        axes: Sequence[tuple[str, str]] | None,
        channel_axis: int | None = None,
        name: str = "image",
    ) -> None:
        super().__init__(path, name)
        self.dataset_paths = list(dataset_paths)
        self._setup(axes, channel_axis, f"OME-Zarr image {path}")

    def _open(self) -> tuple[list[Any], Any]:
        return [
            _open_zarr_array(self.path / p, what=f"dataset {p!r} of") for p in self.dataset_paths
        ], None


class TiffSource(_StoredSource):
    """The first series of a TIFF file (plain, OME-TIFF, ImageJ or pyramidal), read lazily.

    Each pyramid level is read through tifffile's zarr view of its strips or tiles, so a window reads
    only the strips or tiles it touches; uncompressed levels stored in one contiguous block are
    memory-mapped instead, because their zarr view would be a single chunk. The axes come from
    tifffile's series axes (``YX``, ``CYX``, ``YXS`` for RGB, ...).
    """

    _kind = "tiff"

    def __init__(self, path: Path, channel_axis: int | None = None, name: str = "image") -> None:
        super().__init__(path, name)
        self._arrays()
        assert self._cache is not None
        #: tifffile's axes letters of the first series, e.g. ``"YX"``, ``"CYX"``, ``"YXS"``.
        self.axes: str = self._cache[1].series[0].axes
        self._setup(_tiff_axes(self.axes), channel_axis, f"TIFF file {path}")

    def _open_handle(self) -> Any:
        import tifffile

        try:
            return tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, ValueError, OSError) as err:
            raise InputImageError(
                f"{self.path} is not a readable TIFF file ({_one_line(err)})"
            ) from err

    def _open(self) -> tuple[list[Any], Any]:
        import tifffile
        import zarr

        tf = self._open_handle()
        try:
            if not tf.series:
                raise InputImageError(f"TIFF file {self.path} holds no image")
            series = tf.series[0]
            arrays: list[Any] = []
            for level in range(len(series.levels)):
                try:
                    arrays.append(tifffile.memmap(self.path, series=0, level=level, mode="r"))
                    continue
                except ValueError:  # compressed, tiled or scattered: not memory-mappable
                    pass
                store = tf.aszarr(series=0, level=level)
                arrays.append(zarr.open_array(store, mode="r"))
        except InputImageError:
            tf.close()
            raise
        except Exception as err:
            tf.close()
            raise InputImageError(f"cannot read TIFF file {self.path} ({_one_line(err)})") from err
        return arrays, tf


# --------------------------------------------------------------------------------------------------
# Zarr directories


def _open_zarr_dir(path: Path, channel_axis: int | None, name: str) -> ImageSource:
    import zarr

    if not any(path.iterdir()):
        raise InputImageError(f"{path} is an empty directory, not an image")
    if not any((path / marker).exists() for marker in _ZARR_MARKERS):
        raise InputImageError(
            f"{path} is a directory but not a zarr array or group (it has no zarr.json, .zarray or .zgroup)"
        )
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as err:
        raise InputImageError(
            f"{path} is not a readable zarr array or group ({_one_line(err)})"
        ) from err

    if isinstance(node, zarr.Array):
        axes = _parent_multiscales_axes(path)
        if axes is not None:
            # A level of an OME-Zarr image opened directly: its axes are in the parent's metadata.
            return OmeZarrSource(path.parent, [path.name], axes, channel_axis, name)
        return ZarrArraySource(path, channel_axis=channel_axis, name=name)

    attrs = dict(node.attrs)
    multiscales = _multiscales_attr(attrs)
    if multiscales is not None:
        marker = attrs.get("scribble_unet")
        if isinstance(marker, dict) and marker.get("complete") is False:
            raise InputImageError(
                f"{path} is an unfinished conversion (its 'scribble_unet' attribute says complete: false); "
                "convert the image again with overwrite=True"
            )
        paths, axes = _parse_multiscales(multiscales, path)
        return OmeZarrSource(path, paths, axes, channel_axis, name)
    if "bioformats2raw.layout" in attrs and (path / "0").is_dir():
        # bioformats2raw writes the first image as group "0" beside an "OME" metadata group.
        return _open_zarr_dir(path / "0", channel_axis, name)

    arrays = sorted(key for key, _ in node.arrays())
    if len(arrays) == 1:
        return ZarrArraySource(path / arrays[0], channel_axis=channel_axis, name=name)
    if not arrays:
        raise InputImageError(
            f"{path} is a zarr group with no image array in it (and no OME-Zarr metadata)"
        )
    listed = ", ".join(arrays[:5]) + (", ..." if len(arrays) > 5 else "")
    raise InputImageError(
        f"{path} is a zarr group with {len(arrays)} arrays ({listed}); pass the path of the one to open"
    )


def _open_zarr_array(path: Path, what: str = "") -> Any:
    import zarr

    try:
        return zarr.open_array(store=str(path), mode="r")
    except Exception as err:
        where = f"{what} {path.parent}" if what else str(path)
        raise InputImageError(f"cannot open the zarr array {where} ({_one_line(err)})") from err


def _multiscales_attr(attrs: dict[str, Any]) -> Any:
    """The ``multiscales`` list of NGFF 0.5 (under ``"ome"``) or of 0.4 and earlier (top level)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        return ome["multiscales"]
    return attrs.get("multiscales")


def _parse_multiscales(
    multiscales: Any, path: Path
) -> tuple[list[str], list[tuple[str, str]] | None]:
    """Dataset paths and axis roles of the first multiscale image listed in the metadata."""
    bad = InputImageError(f"{path} has malformed OME-Zarr 'multiscales' metadata")
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise bad
    ms = multiscales[0]
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise bad
    paths = [d.get("path") if isinstance(d, dict) else None for d in datasets]
    if not all(isinstance(p, str) and p for p in paths):
        raise bad
    return [str(p) for p in paths], _ome_axes(ms.get("axes"), path)


def _ome_axes(axes: Any, path: Path) -> list[tuple[str, str]] | None:
    """Axis roles from NGFF ``axes``: dicts (0.4+), plain names (0.3), or absent (0.1/0.2: TCZYX)."""
    if axes is None:
        names = ["t", "c", "z", "y", "x"]
        types: list[str | None] = ["time", "channel", "space", "space", "space"]
    elif isinstance(axes, list) and all(isinstance(a, str) for a in axes):
        names = [a.lower() for a in axes]
        types = [None] * len(names)
    elif isinstance(axes, list) and all(
        isinstance(a, dict) and isinstance(a.get("name"), str) for a in axes
    ):
        names = [a["name"].lower() for a in axes]
        types = [a.get("type") if isinstance(a.get("type"), str) else None for a in axes]
    else:
        raise InputImageError(f"{path} has malformed OME-Zarr 'axes' metadata")
    roles: list[str] = []
    for n, t in zip(names, types, strict=True):
        if n in (_Y, _X):
            roles.append(n)
        elif t == "channel" or n == "c":
            roles.append(_C)
        elif t == "time" or n == "t":
            roles.append("t")
        elif n == "z":
            roles.append("z")
        else:
            roles.append(n)
    if _Y not in roles or _X not in roles:
        # Spatial axes named otherwise: the last two of type "space" are the image plane.
        spatial = [i for i, t in enumerate(types) if t == "space"]
        if len(spatial) >= 2 and _Y not in roles and _X not in roles:
            roles[spatial[-2]], roles[spatial[-1]] = _Y, _X
    return list(zip(roles, names, strict=True))


def _parent_multiscales_axes(path: Path) -> list[tuple[str, str]] | None:
    """Axes of ``path`` when it is a dataset of the OME-Zarr image in its parent directory."""
    import zarr

    parent = path.parent
    if not any((parent / marker).exists() for marker in _ZARR_MARKERS):
        return None
    try:
        group = zarr.open_group(store=str(parent), mode="r")
        multiscales = _multiscales_attr(dict(group.attrs))
        if multiscales is None:
            return None
        paths, axes = _parse_multiscales(multiscales, parent)
    except Exception:  # not a group, or metadata we cannot use: treat the array on its own
        return None
    return axes if path.name in paths else None


def _dimension_axes(arr: Any) -> list[tuple[str, str]] | None:
    """Axis roles from a zarr array's dimension names, when they are all among t, c, z, y, x."""
    names: Any = getattr(getattr(arr, "metadata", None), "dimension_names", None)
    if names is None:
        names = arr.attrs.get("_ARRAY_DIMENSIONS")
    if not isinstance(names, (list, tuple)) or len(names) != len(arr.shape):
        return None
    lowered = [str(n).lower() if n is not None else "" for n in names]
    if len(set(lowered)) != len(lowered) or not set(lowered) <= {"t", "c", "z", "y", "x"}:
        return None
    if "y" not in lowered or "x" not in lowered:
        return None
    return [(n, n) for n in lowered]


# --------------------------------------------------------------------------------------------------
# TIFF and helpers


def _tiff_axes(letters: str) -> list[tuple[str, str]]:
    """Axis roles from tifffile's series axes: Y, X; C and S (samples) are channels; T, Z planes."""
    roles = {"Y": _Y, "X": _X, "C": _C, "S": _C, "T": "t", "Z": "z"}
    return [(roles.get(a, _UNKNOWN), a) for a in letters]


def _has_tiff_header(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as err:
        raise InputImageError(f"cannot read {path} ({err.strerror or err})") from err
    return head in _TIFF_MAGIC


def _stem(path: Path) -> str:
    """File name without its extension, also without ``.ome`` of ``.ome.tif`` / ``.ome.zarr``."""
    stem = path.resolve().stem if path.name in ("", ".", "..") else path.stem
    return stem[: -len(".ome")] if stem.lower().endswith(".ome") else stem


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 200 else text[:197] + "..."
