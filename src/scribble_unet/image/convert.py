"""Convert any readable image (TIFF mainly) to a chunked, pyramidal OME-Zarr image.

A TIFF of strips, or one big uncompressed block, is slow to browse and to read by windows. Converting
it once to OME-Zarr gives square chunks (each window reads only what it needs) and a pyramid (napari
shows a 20000 x 20000 image without loading it). The output is NGFF 0.4 on zarr format 2, which
napari-ome-zarr, ome-zarr-py, Fiji and QuPath read today.

Layout of the output ``out``::

    out/                 root group: "multiscales" (NGFF 0.4) and "scribble_unet": {"complete": bool}
    out/0                level 0, the image itself, (C, Y, X) or (Y, X) for grayscale
    out/1, out/2, ...    each level half the previous one in y and x (rounded up)

The root attribute ``"scribble_unet": {"complete": false}`` is written first and set to ``true`` only
after the last level is written, so a conversion that crashed or was interrupted never looks finished:
:func:`~scribble_unet.image.open_image` refuses such a store with a message saying to convert again.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError
from ..ome import ngff
from ..ome.files import atomic_write_json, describe_os_error
from ..ome.output import claim_output
from .open import open_image
from .source import ImageSource

__all__ = ["COMPLETE_ATTR", "convert_to_ome_zarr", "downsample2", "pyramid_shapes"]

#: Root attribute of a converted image: ``{"complete": bool}`` (plus the source it came from).
COMPLETE_ATTR = "scribble_unet"

def convert_to_ome_zarr(
    src: Any,
    out: str | os.PathLike[str],
    chunk: int = 1024,
    channel_axis: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the image ``src`` as an NGFF 0.4 OME-Zarr image with a pyramid, in bounded memory.

    Level 0 is copied window by window (windows of ``chunk`` pixels, widened to whole stored chunks
    of the source, such as the full-width strips of a striped TIFF, so no strip is decoded twice).
    Each further level halves y and x of the one before, until the longer side is at most ``chunk``.
    Downsampling is the mean of each 2 x 2 block (fewer pixels at an odd last row or column);
    integer images round the mean to the nearest integer (ties to even), boolean images take the
    majority (ties: True). Every level is computed from the previous level already on disk, one output
    chunk at a time, so memory use stays near a few chunks whatever the image size.

    Parameters
    ----------
    src
        Anything :func:`~scribble_unet.image.open_image` opens: a TIFF, zarr or OME-Zarr path, or an array.
    out
        Output directory (conventionally ending in ``.ome.zarr``); missing parent folders are created.
    chunk
        Chunk side in y and x of every level (channels are chunked one by one).
    channel_axis
        Channel axis of ``src`` when its file does not say (see :func:`~scribble_unet.image.open_image`).
    progress
        Show a tqdm progress bar on stderr.
    overwrite
        Replace an earlier conversion at ``out``. Only what a conversion wrote is removed (the marker
        rule of :mod:`scribble_unet.ome.output`): a folder without scribble-unet's marker, a
        prediction, or a file of the user's inside the folder is never deleted.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ScribbleUNetError
        If ``out`` exists and ``overwrite`` is false, cannot be written, or ``src`` cannot be read
        (:class:`~scribble_unet.errors.InputImageError`).

    Notes
    -----
    Grayscale images (one channel) are written 2D with axes ``"yx"``; others as ``"cyx"``. The root
    attribute ``"scribble_unet": {"complete": bool}`` is ``false`` while writing and ``true`` once done.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ScribbleUNetError(f"chunk must be a positive integer, got {chunk!r}")
    chunk = int(chunk)
    out = Path(out).expanduser()
    if isinstance(src, (str, os.PathLike)) and _same_or_inside(out, Path(src).expanduser()):
        raise ScribbleUNetError(f"output {out} would overwrite its own input {src}")
    source = open_image(src, channel_axis=channel_axis)
    src_path = Path(src).expanduser() if isinstance(src, (str, os.PathLike)) else None
    shapes = pyramid_shapes(source.shape_yx, chunk)
    with claim_output(out, "image", protect=[("input image", src_path)], create_parents=True) as claim:
        if claim.marker is not None and not overwrite:
            raise ScribbleUNetError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
        claim.clear()  # only what an earlier conversion wrote
        claim.begin({"source": _describe(src)}, [str(level) for level in range(len(shapes))], [""])
        _write_levels(source, src, out, shapes, chunk, progress)
    return out


def _write_levels(source: ImageSource, src: Any, out: Path, shapes: list[tuple[int, int]], chunk: int,
                  progress: bool) -> None:
    import zarr
    from tqdm import tqdm

    grayscale = source.n_channels == 1
    attrs = {
        "multiscales": ngff.multiscales(source.name, "yx" if grayscale else "cyx", len(shapes)),
        COMPLETE_ATTR: {"complete": False, "source": _describe(src)},
    }
    try:
        root = zarr.open_group(store=str(out), mode="a", zarr_format=2)
        atomic_write_json(out / ".zattrs", attrs, what=f"the attributes of {out}")
        arrays = []
        for level, (h, w) in enumerate(shapes):
            shape = (h, w) if grayscale else (source.n_channels, h, w)
            chunks = (min(chunk, h), min(chunk, w))
            arrays.append(
                root.create_array(
                    name=str(level),
                    shape=shape,
                    chunks=chunks if grayscale else (1, *chunks),
                    dtype=source.dtype,
                    fill_value=0,
                    # NGFF 0.4 requires "/" between chunk indices in zarr format 2.
                    chunk_key_encoding={"name": "v2", "separator": "/"},
                    overwrite=True,
                )
            )
    except OSError as err:
        raise ScribbleUNetError(f"cannot write {out}: {describe_os_error(err)}") from err

    n_tiles = sum(1 for _ in _windows(source.shape_yx, _level0_window(source, chunk)))
    n_tiles += sum(sum(1 for _ in _windows(s, (chunk, chunk))) for s in shapes[1:])
    bar = tqdm(
        total=n_tiles,
        desc=f"converting {source.name}",
        unit="tile",
        file=sys.stderr,
        disable=not progress,
    )
    try:
        with bar:
            _copy_level0(source, arrays[0], grayscale, chunk, bar)
            for level in range(1, len(shapes)):
                _downsample_level(arrays[level - 1], arrays[level], grayscale, chunk, bar)
        attrs[COMPLETE_ATTR] = {"complete": True, "source": _describe(src)}
        atomic_write_json(out / ".zattrs", attrs, what=f"the attributes of {out}")
    except OSError as err:
        raise ScribbleUNetError(
            f"writing {out} failed ({describe_os_error(err)}); it is left marked incomplete"
        ) from err


def pyramid_shapes(shape_yx: tuple[int, int], chunk: int) -> list[tuple[int, int]]:
    """``(Y, X)`` of each pyramid level: halved (rounded up) until the longer side is <= ``chunk``.

    >>> pyramid_shapes((5000, 3000), 1024)
    [(5000, 3000), (2500, 1500), (1250, 750), (625, 375)]
    """
    shapes = [(int(shape_yx[0]), int(shape_yx[1]))]
    while max(shapes[-1]) > chunk:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def downsample2(block: np.ndarray) -> np.ndarray:
    """Halve the last two axes of ``block`` by 2 x 2 means, keeping its dtype.

    An odd last row or column is averaged over the pixels it has (its edge is repeated, which leaves
    the mean unchanged). Integers round to nearest (ties to even); booleans take the majority.

    >>> downsample2(np.array([[1, 2, 3], [3, 4, 5]], dtype=np.uint8))
    array([[2, 4]], dtype=uint8)
    """
    h, w = block.shape[-2:]
    pad = [(0, 0)] * (block.ndim - 2) + [(0, h % 2), (0, w % 2)]
    if h % 2 or w % 2:
        block = np.pad(block, pad, mode="edge")
    lead = block.shape[:-2]
    blocks = block.reshape(*lead, block.shape[-2] // 2, 2, block.shape[-1] // 2, 2)
    mean = blocks.mean(axis=(-3, -1), dtype=np.float64)
    if block.dtype == np.bool_:
        return mean >= 0.5
    if np.issubdtype(block.dtype, np.integer):
        return np.rint(mean).astype(block.dtype)
    return mean.astype(block.dtype)


# --------------------------------------------------------------------------------------------------


def _same_or_inside(out: Path, src: Path) -> bool:
    out_r, src_r = out.resolve(), src.resolve()
    return out_r == src_r or src_r in out_r.parents or out_r in src_r.parents


def _describe(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(Path(src).expanduser())
    return f"<{type(src).__name__}>"


def _level0_window(source: ImageSource, chunk: int) -> tuple[int, int]:
    """Window for copying level 0: ``chunk`` widened to cover whole stored chunks of the source.

    Reading a window of a striped TIFF decodes every strip it touches in full; windows as wide as the
    strips decode each strip once. The window stays a multiple of ``chunk`` so writes fill whole
    output chunks (no read-modify-write of partly written chunks).
    """
    ny, nx = source.chunks_yx or (chunk, chunk)
    h, w = source.shape_yx
    return (
        min(chunk * math.ceil(max(ny, 1) / chunk), h),
        min(chunk * math.ceil(max(nx, 1) / chunk), w),
    )


def _windows(
    shape_yx: tuple[int, int], window: tuple[int, int]
) -> Iterator[tuple[int, int, int, int]]:
    h, w = shape_yx
    wy, wx = window
    for y0 in range(0, h, wy):
        for x0 in range(0, w, wx):
            yield y0, min(y0 + wy, h), x0, min(x0 + wx, w)


def _copy_level0(source: ImageSource, dest: Any, grayscale: bool, chunk: int, bar: Any) -> None:
    for y0, y1, x0, x1 in _windows(source.shape_yx, _level0_window(source, chunk)):
        block = source.read(y0, y1, x0, x1)
        if grayscale:
            dest[y0:y1, x0:x1] = block[0]
        else:
            dest[:, y0:y1, x0:x1] = block
        bar.update(1)


def _downsample_level(prev: Any, dest: Any, grayscale: bool, chunk: int, bar: Any) -> None:
    """Fill ``dest`` from ``prev`` (already written), one output chunk (2 x 2 input chunks) at a time."""
    h, w = dest.shape[-2:]
    for y0, y1, x0, x1 in _windows((h, w), (chunk, chunk)):
        # Output rows y0:y1 come from input rows 2*y0 : 2*y1 (one fewer at an odd bottom edge).
        window = (slice(2 * y0, 2 * y1), slice(2 * x0, 2 * x1))
        if grayscale:
            dest[y0:y1, x0:x1] = downsample2(np.asarray(prev[window]))
        else:
            dest[:, y0:y1, x0:x1] = downsample2(np.asarray(prev[(slice(None), *window)]))
        bar.update(1)
