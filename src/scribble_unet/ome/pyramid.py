"""Nearest-neighbour pyramids of label images (mask, instances), written level by level."""

from __future__ import annotations

from typing import Any

from . import ngff


def nearest_pyramid(group: Any, name: str, tile: int) -> int:
    """Write levels 1, 2, ... of ``group["0"]`` (every other pixel of the level above, so label values
    stay labels) until the largest side fits one tile, then the NGFF ``multiscales`` of ``name``.

    Each level is read and written chunk by chunk through dask, so memory stays bounded. Returns the
    number of levels, level 0 included.
    """
    import dask.array as da

    level = 0
    prev = da.from_zarr(group["0"])
    while max(prev.shape) > tile:
        level += 1
        chunks = (min(tile, -(-prev.shape[0] // 2)), min(tile, -(-prev.shape[1] // 2)))
        nxt = prev[::2, ::2].rechunk(chunks)
        arr = group.create_array(str(level), shape=nxt.shape, chunks=chunks, dtype=nxt.dtype,
                                 fill_value=0, overwrite=True)
        da.store(nxt, arr, lock=False, scheduler="threads")
        prev = da.from_zarr(arr)
    group.attrs["multiscales"] = ngff.multiscales(name, "yx", level + 1)
    return level + 1
