"""Writer contribution: a Labels layer saved as an OME-Zarr (NGFF 0.4) label image."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError
from ..ome import ngff
from ..ome.files import describe_os_error
from ..ome.output import claim_output


def _pyramid_levels(data: Any, chunk: int) -> list[Any]:
    """Nearest-neighbour pyramid (dask) of a 2D label array until the largest side fits a chunk."""
    import dask.array as da

    level = data if isinstance(data, da.Array) else da.from_array(data, chunks=(chunk, chunk))
    level = level.rechunk((chunk, chunk))
    levels = [level]
    while max(level.shape) > chunk:
        level = level[::2, ::2].rechunk((chunk, chunk))
        levels.append(level)
    return levels


def write_label_image(
    path: str | os.PathLike[str],
    data: Any,
    name: str = "labels",
    class_names: list[str] | None = None,
    chunk: int = 1024,
    overwrite: bool = True,
) -> str:
    """Write ``data`` (2D integer labels) to ``path/labels/<name>`` as an NGFF 0.4 label image.

    Parameters
    ----------
    path
        The OME-Zarr group to write: created, or, when ``overwrite``, an earlier label image written
        here replaced. Nothing this writer did not write is ever deleted (see
        :mod:`scribble_unet.ome.output`): an existing folder without its marker is refused.
    data
        A 2D numpy, dask or zarr array; written chunk by chunk.
    class_names
        Names of values 1..K, stored in the ``image-label`` properties.
    """
    import dask.array as da
    import zarr

    path = os.fspath(path)
    if len(data.shape) != 2:
        raise ScribbleUNetError(f"only 2D label images can be saved, this one has shape {tuple(data.shape)}")
    if not np.issubdtype(np.dtype(data.dtype), np.integer):
        raise ScribbleUNetError(f"labels must be integers, not {data.dtype}")
    name = name.replace("/", "_").replace("\\", "_").strip(".") or "labels"
    levels = _pyramid_levels(data, chunk)
    # the ownership rule of the core: only an earlier label image written here is replaced, and only
    # what it wrote; any other folder, file, scribble store or image is refused, never deleted
    with claim_output(path, "labels", create_parents=True) as claim:
        if claim.marker is not None and not overwrite:
            raise ScribbleUNetError(f"{path} exists; choose another name")
        claim.clear()
        claim.begin({"name": name}, [f"labels/{name}"], ["labels", ""])
        try:
            root = zarr.open_group(path, mode="a", zarr_format=2)
            labels = root.require_group("labels")
            labels.attrs["labels"] = [name]
            group = labels.create_group(name, overwrite=True)
            for i, lvl in enumerate(levels):
                arr = group.create_array(str(i), shape=lvl.shape, chunks=(chunk, chunk), dtype=lvl.dtype,
                                         fill_value=0)
                da.store(lvl, arr, lock=False, scheduler="threads")  # type: ignore[arg-type]
            group.attrs["multiscales"] = ngff.multiscales(name, "yx", len(levels))
            if class_names is None:
                top = int(levels[-1].max().compute())
                class_names = [f"class{k}" for k in range(1, max(1, top) + 1)]
            group.attrs["image-label"] = ngff.image_label(class_names)
        except OSError as err:
            raise ScribbleUNetError(f"cannot write {path}: {describe_os_error(err)}") from err
    return path


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """napari writer hook: save one Labels layer as an OME-Zarr label image at ``path``."""
    if isinstance(data, list):  # multiscale: full resolution is level 0
        data = data[0]
    metadata = meta.get("metadata") or {}
    names = metadata.get("class_names")
    return [write_label_image(path, data, name=meta.get("name") or "labels",
                              class_names=list(names) if names else None)]
