"""Zarr arrays and OME-Zarr multiscale images (NGFF 0.4 on zarr format 2, 0.5 on format 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputImageError
from ..ome import ngff
from .source import ImageSource
from .stored import StoredSource, one_line

ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup", ".zattrs")


class ZarrArraySource(StoredSource):
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


class OmeZarrSource(StoredSource):
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


def open_zarr_dir(path: Path, channel_axis: int | None, name: str) -> ImageSource:
    import zarr

    if not any(path.iterdir()):
        raise InputImageError(f"{path} is an empty directory, not an image")
    if not any((path / marker).exists() for marker in ZARR_MARKERS):
        raise InputImageError(
            f"{path} is a directory but not a zarr array or group (it has no zarr.json, .zarray or .zgroup)"
        )
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as err:
        raise InputImageError(
            f"{path} is not a readable zarr array or group ({one_line(err)})"
        ) from err

    if isinstance(node, zarr.Array):
        axes = _parent_multiscales_axes(path)
        if axes is not None:
            # A level of an OME-Zarr image opened directly: its axes are in the parent's metadata.
            return OmeZarrSource(path.parent, [path.name], axes, channel_axis, name)
        return ZarrArraySource(path, channel_axis=channel_axis, name=name)

    attrs = dict(node.attrs)
    multiscales = ngff.multiscales_attr(attrs)
    if multiscales is not None:
        marker = attrs.get("scribble_unet")
        if isinstance(marker, dict) and marker.get("complete") is False:
            raise InputImageError(
                f"{path} is an unfinished conversion (its 'scribble_unet' attribute says complete: false); "
                "convert the image again with overwrite=True"
            )
        paths, axes = ngff.parse_multiscales(multiscales, path)
        return OmeZarrSource(path, paths, axes, channel_axis, name)
    if "bioformats2raw.layout" in attrs and (path / "0").is_dir():
        # bioformats2raw writes the first image as group "0" beside an "OME" metadata group.
        return open_zarr_dir(path / "0", channel_axis, name)

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
        raise InputImageError(f"cannot open the zarr array {where} ({one_line(err)})") from err


def _parent_multiscales_axes(path: Path) -> list[tuple[str, str]] | None:
    """Axes of ``path`` when it is a dataset of the OME-Zarr image in its parent directory."""
    import zarr

    parent = path.parent
    if not any((parent / marker).exists() for marker in ZARR_MARKERS):
        return None
    try:
        group = zarr.open_group(store=str(parent), mode="r")
        multiscales = ngff.multiscales_attr(dict(group.attrs))
        if multiscales is None:
            return None
        paths, axes = ngff.parse_multiscales(multiscales, parent)
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
