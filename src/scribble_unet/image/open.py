"""One dispatcher: a path or an array in, an :class:`~scribble_unet.image.source.ImageSource` out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputImageError
from .array import ArraySource
from .source import ImageSource
from .tiff_image import TIFF_SUFFIXES, TiffSource, has_tiff_header
from .zarr_image import open_zarr_dir


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
    return open_path(source, channel_axis=channel_axis, name=name)


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
        if has_tiff_header(path):
            return TiffSource(path, channel_axis=channel_axis, name=label)
        if path.suffix.lower() in TIFF_SUFFIXES:
            raise InputImageError(
                f"{path} is not a valid TIFF file (it does not start with a TIFF header)"
            )
        raise InputImageError(
            f"{path} is not an image: expected a TIFF file, a zarr array or an OME-Zarr image"
        )
    if path.is_dir():
        return open_zarr_dir(path, channel_axis, label)
    raise InputImageError(f"{path} is neither a file nor a directory")


# --------------------------------------------------------------------------------------------------
# Axis layout


def _stem(path: Path) -> str:
    """File name without its extension, also without ``.ome`` of ``.ome.tif`` / ``.ome.zarr``."""
    stem = path.resolve().stem if path.name in ("", ".", "..") else path.stem
    return stem[: -len(".ome")] if stem.lower().endswith(".ome") else stem
