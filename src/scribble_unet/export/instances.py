"""Instance labels of a whole exported mask, chunk by chunk, exact across chunk borders, resumable.

:func:`instances_to_zarr` adds ``labels/instances`` (an NGFF label image, uint32, the mask's chunking,
a nearest-neighbour pyramid) beside ``labels/mask`` of a complete :func:`predict_to_zarr` output.
:func:`write_instances` is the array-level algorithm, in three passes over chunks:

1. **Label** each chunk from a window of the mask (the chunk plus a halo: one pixel without split,
   ``SplitOptions.halo`` with it) with local ids 1..n (:func:`~scribble_unet.inference.instances.label_chunk`);
   write them into the output array, and keep the chunk's count of objects and its border strips: its
   four edge lines and the four lines of the one-pixel ring just outside it, with the ids this chunk
   gives the ring's pixels (0 for objects not in the chunk).
2. **Merge**: provisional global id = the chunk's offset + local id. Across every chunk border, the
   pixel pairs that touch (8-connectivity) and that the chunk above / on the left sees as one object are
   joined (connected components of the pair graph); the result, consecutive final ids numbered by first
   provisional id, is written as a table (one entry per provisional id).
3. **Relabel** each chunk through the table.

Memory: one window per chunk in flight, one row (or column) of chunks' border strips, the pair list and
the id table; never the whole label image. Each pass records progress (``instances_progress``: 1 after
pass 1, 2 after pass 3 for the chunk; the table is written before pass 3 starts), so an interrupted run
resumes where it stopped. The exactness contract is in ``docs/instances.md``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError
from ..inference.instances import SplitOptions, label_chunk
from ..ome.pyramid import nearest_pyramid

INSTANCES_PATH = "labels/instances"
INSTANCES_PROGRESS = "instances_progress"
INSTANCES_WORK = "instances_work"
ATTR = "scribble_unet_instances"
LABELLED, RELABELLED = 1, 2


@dataclass
class InstancesResult:
    """What :func:`instances_to_zarr` did."""

    path: str
    n_objects: int
    n_chunks: int
    resumed: bool
    notes: list[str]


def _chunk_grid(shape: tuple[int, int], chunks: tuple[int, int]) -> tuple[int, int]:
    return -(-shape[0] // chunks[0]), -(-shape[1] // chunks[1])


def _bounds(iy: int, ix: int, shape: tuple[int, int], chunks: tuple[int, int]) -> tuple[int, int, int, int]:
    y0, x0 = iy * chunks[0], ix * chunks[1]
    return y0, min(y0 + chunks[0], shape[0]), x0, min(x0 + chunks[1], shape[1])


def _strip_len(chunks: tuple[int, int]) -> int:
    return max(chunks) + 2


# edge lines stored per chunk, each indexed from the ring's first pixel (core offset - 1):
# 0-3: the chunk's own top row, bottom row, left column, right column;
# 4-7: the ring's top row (y0 - 1), bottom row (y1), left column (x0 - 1), right column (x1)
TOP, BOTTOM, LEFT, RIGHT = 0, 1, 2, 3


def _label_one(mask: Any, labels: Any, work: Any, progress: Any, iy: int, ix: int,
               options: SplitOptions | None) -> None:
    """Pass 1 for chunk ``(iy, ix)``: local ids into ``labels``, count and strips into ``work``, then
    the progress flag."""
    shape = (int(mask.shape[0]), int(mask.shape[1]))
    chunks = (int(labels.chunks[0]), int(labels.chunks[1]))
    h, w = shape
    y0, y1, x0, x1 = _bounds(iy, ix, shape, chunks)
    halo = 1 if options is None else options.halo
    wy0, wy1, wx0, wx1 = max(y0 - halo, 0), min(y1 + halo, h), max(x0 - halo, 0), min(x1 + halo, w)
    window = np.asarray(mask[wy0:wy1, wx0:wx1])
    ry0, ry1, rx0, rx1 = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
    core_lab, ring_lab = label_chunk(
        window, (y0 - wy0, y1 - wy0, x0 - wx0, x1 - wx0), (ry0 - wy0, ry1 - wy0, rx0 - wx0, rx1 - wx0),
        options, (wy0 > 0, wy1 < h, wx0 > 0, wx1 < w),
    )
    labels[y0:y1, x0:x1] = core_lab.astype(np.uint32)
    # the ring rectangle placed in a (y1 - y0 + 2, x1 - x0 + 2) frame whose (0, 0) is (y0 - 1, x0 - 1)
    frame = np.zeros((y1 - y0 + 2, x1 - x0 + 2), np.uint32)
    frame[ry0 - y0 + 1 : ry1 - y0 + 1, rx0 - x0 + 1 : rx1 - x0 + 1] = ring_lab
    n = _strip_len(chunks)
    strips = np.zeros((8, n), np.uint32)
    fy, fx = frame.shape
    strips[TOP, 1 : fx - 1] = frame[1, 1:-1]
    strips[BOTTOM, 1 : fx - 1] = frame[-2, 1:-1]
    strips[LEFT, 1 : fy - 1] = frame[1:-1, 1]
    strips[RIGHT, 1 : fy - 1] = frame[1:-1, -2]
    strips[4 + TOP, :fx] = frame[0]
    strips[4 + BOTTOM, :fx] = frame[-1]
    strips[4 + LEFT, :fy] = frame[:, 0]
    strips[4 + RIGHT, :fy] = frame[:, -1]
    work["strips"][iy, ix] = strips
    work["count"][iy, ix] = int(core_lab.max())
    progress[iy, ix] = LABELLED


def _offsets(counts: np.ndarray) -> np.ndarray:
    """Provisional id of each chunk's local id 0 (ids 1..n of chunk c are offset[c] + 1..n)."""
    flat = counts.ravel().astype(np.int64)
    return np.concatenate([[0], np.cumsum(flat)[:-1]]).reshape(counts.shape)


def _border_pairs(strips_a: np.ndarray, strips_b: np.ndarray, off_a: np.ndarray, off_b: np.ndarray,
                  sizes: list[int], edge: int) -> np.ndarray:
    """Provisional-id pairs joined across one border line.

    ``strips_a``: strips of the chunks on the first side (above, or on the left), ``(n, 8, L)``, along
    the line; ``strips_b`` the same for the second side; ``sizes`` their extents along the line; ``edge``
    BOTTOM (a horizontal border) or RIGHT (a vertical one). The first side's ring says which pixels of
    the second side are its objects.
    """
    own = np.concatenate([s[edge, 1 : 1 + n] for s, n in zip(strips_a, sizes, strict=True)]).astype(np.int64)
    other_edge = TOP if edge == BOTTOM else LEFT
    other = np.concatenate([s[other_edge, 1 : 1 + n] for s, n in zip(strips_b, sizes, strict=True)]).astype(np.int64)
    prov_a = np.where(own > 0, own + np.repeat(off_a, sizes), 0)
    prov_b = np.where(other > 0, other + np.repeat(off_b, sizes), 0)
    total = len(own)
    out = []
    for d in (-1, 0, 1):
        # the first side's ring value at position p + d, for each pixel p of its own edge line
        ring = np.concatenate([s[4 + edge, 1 + d : 1 + d + n] for s, n in zip(strips_a, sizes, strict=True)])
        p = np.arange(total)
        q = p + d
        ok = (q >= 0) & (q < total) & (own > 0) & (ring.astype(np.int64) == own)
        out.append(np.stack([prov_a[p[ok]], prov_b[q[ok]]], axis=1))
    pairs = np.concatenate(out)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def _merge(work: Any, grid: tuple[int, int], shape: tuple[int, int], chunks: tuple[int, int]) -> int:
    """Pass 2: the table of final ids (``work["map"]``); returns the number of objects."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ny, nx = grid
    counts = np.asarray(work["count"][...]).astype(np.int64)
    off = _offsets(counts)  # provisional 0 is background; chunk c's ids are off[c] + 1..n
    n_prov = int(counts.sum()) + 1
    widths = [_bounds(0, ix, shape, chunks)[3] - _bounds(0, ix, shape, chunks)[2] for ix in range(nx)]
    heights = [_bounds(iy, 0, shape, chunks)[1] - _bounds(iy, 0, shape, chunks)[0] for iy in range(ny)]
    pairs: list[np.ndarray] = []
    strips = work["strips"]
    prev = np.asarray(strips[0])  # one chunk row of strips at a time: (nx, 8, L)
    for iy in range(ny):
        row = prev if iy == 0 else np.asarray(strips[iy])
        if iy > 0:
            pairs.append(_border_pairs(prev, row, off[iy - 1], off[iy], widths, BOTTOM))
        if nx > 1:
            # vertical borders of this chunk row: chunk ix (left) against ix + 1, one border at a time
            for ix in range(nx - 1):
                pairs.append(_border_pairs(row[ix : ix + 1], row[ix + 1 : ix + 2], off[iy, ix : ix + 1],
                                           off[iy, ix + 1 : ix + 2], [heights[iy]], RIGHT))
        prev = row
    # corner-diagonal pairs between chunks (iy, ix) and (iy + 1, ix +- 1) come with the horizontal
    # borders (d = +-1 along the whole line); those between (iy, ix) and (iy -+ 1, ix + 1) across a
    # vertical border come with the vertical borders only within a chunk row: the others are the same
    # pixel pairs seen across the horizontal border, already counted there.
    edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n_prov, n_prov))
    _, comp = connected_components(graph, directed=False)
    # final ids 1..M numbered by first provisional id; provisional 0 (background) -> 0
    _, first, inverse = np.unique(comp[1:], return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(1, len(first) + 1)
    table = np.zeros(n_prov, dtype=np.uint32)
    table[1:] = rank[inverse]
    arr = work.create_array("map", shape=(n_prov,), chunks=(max(1, min(n_prov, 1 << 20)),),
                            dtype=np.uint32, fill_value=0, overwrite=True)
    arr[...] = table
    work.attrs["merged"] = True  # after the whole table: a resume never trusts half a table
    return len(first)


def _relabel_one(labels: Any, work: Any, progress: Any, offsets: np.ndarray, counts: np.ndarray,
                 iy: int, ix: int) -> None:
    """Pass 3 for chunk ``(iy, ix)``: local ids to final ids, then the progress flag."""
    shape = (int(labels.shape[0]), int(labels.shape[1]))
    chunks = (int(labels.chunks[0]), int(labels.chunks[1]))
    y0, y1, x0, x1 = _bounds(iy, ix, shape, chunks)
    start, n = int(offsets[iy, ix]), int(counts[iy, ix])
    table = np.zeros(n + 1, np.uint32)
    if n:
        table[1:] = np.asarray(work["map"][start + 1 : start + n + 1])
    local = np.asarray(labels[y0:y1, x0:x1])
    labels[y0:y1, x0:x1] = table[local]
    progress[iy, ix] = RELABELLED


def _run(tasks: Iterator[tuple[int, int]], fn: Callable[[int, int], None], threads: int,
         advance: Callable[[], None]) -> None:
    if threads <= 1:
        for iy, ix in tasks:
            fn(iy, ix)
            advance()
        return
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        pending: set[Any] = set()
        while True:
            while len(pending) < 2 * threads:
                nxt = next(tasks, None)
                if nxt is None:
                    break
                pending.add(pool.submit(fn, *nxt))
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                f.result()
                advance()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def write_instances(
    mask: Any,
    labels: Any,
    work: Any,
    progress: Any,
    options: SplitOptions | None,
    threads: int | None = None,
    on_chunk: Callable[[], None] | None = None,
) -> int:
    """Instance labels of ``mask`` into ``labels``, chunk by chunk; returns the number of objects.

    Parameters
    ----------
    mask
        ``(Y, X)`` array read by slices (a zarr or dask array, or numpy); only windows of one chunk plus
        the halo are read.
    labels
        ``(Y, X)`` uint32 zarr array whose chunk grid is the one labelled (its ``chunks``).
    work
        A zarr group for the intermediate state (``count``, ``strips``, ``map``); created if empty.
    progress
        ``(chunks_y, chunks_x)`` uint8 zarr array: 0 to do, 1 labelled, 2 done. Chunks are skipped
        according to it, so a call after an interruption resumes.
    options
        ``None``: connected regions only; otherwise the split.
    """
    shape = (int(mask.shape[0]), int(mask.shape[1]))
    if tuple(labels.shape) != shape:
        raise ScribbleUNetError(f"labels shape {tuple(labels.shape)} differs from the mask's {shape}")
    chunks = (int(labels.chunks[0]), int(labels.chunks[1]))
    grid = _chunk_grid(shape, chunks)
    if tuple(progress.shape) != grid:
        raise ScribbleUNetError(f"progress shape {tuple(progress.shape)} differs from the chunk grid {grid}")
    ny, nx = grid
    if "count" not in work:
        # one zarr chunk per image chunk: chunks labelled at once on threads never share a stored chunk
        n = _strip_len(chunks)
        work.create_array("count", shape=grid, chunks=(1, 1), dtype=np.uint32, fill_value=0)
        work.create_array("strips", shape=(ny, nx, 8, n), chunks=(1, 1, 8, n), dtype=np.uint32, fill_value=0)
    n_threads = threads or os.cpu_count() or 1
    tick = on_chunk or (lambda: None)

    state = np.asarray(progress[...])
    todo = iter([(iy, ix) for iy in range(ny) for ix in range(nx) if state[iy, ix] == 0])
    _run(todo, lambda iy, ix: _label_one(mask, labels, work, progress, iy, ix, options), n_threads, tick)
    if not work.attrs.get("merged"):
        _merge(work, grid, shape, chunks)
    counts = np.asarray(work["count"][...]).astype(np.int64)
    offsets = _offsets(counts)
    state = np.asarray(progress[...])
    todo = iter([(iy, ix) for iy in range(ny) for ix in range(nx) if state[iy, ix] == LABELLED])
    _run(todo, lambda iy, ix: _relabel_one(labels, work, progress, offsets, counts, iy, ix), n_threads, tick)
    table = work["map"]
    return int(np.asarray(table[...]).max()) if table.shape[0] > 1 else 0


def _settings(options: SplitOptions | None) -> dict[str, Any]:
    if options is None:
        return {"split": False}
    return {"split": True, "object_diameter": options.object_diameter, "max_extent": options.max_extent,
            "h": options.h, "min_distance": options.min_distance}


def instances_to_zarr(
    out: str | os.PathLike[str],
    split: bool = True,
    object_diameter: float | None = None,
    options: SplitOptions | None = None,
    threads: int | None = None,
    progress: bool | Callable[[int, int], None] = True,
) -> InstancesResult:
    """Add ``labels/instances`` to the complete prediction output ``out``.

    ``split`` with ``object_diameter`` (or full ``options``) splits touching objects; ``split=False``
    labels connected regions only. A finished pass with the same settings is not redone; an unfinished
    one resumes; other settings replace it. ``progress``: ``True`` for a tqdm bar, or a callable getting
    ``(done, total)`` over both chunk passes.
    """
    import zarr

    from ..ome import ngff
    from .to_zarr import MASK_PATH, _read_run_info

    out = os.path.abspath(os.fspath(out))
    info = _read_run_info(out)
    if info is None:
        raise ScribbleUNetError(f"{out} is not a scribble-unet prediction output")
    if not info.get("complete"):
        raise ScribbleUNetError(f"{out} holds an unfinished prediction; finish it before labelling instances")
    opts: SplitOptions | None = None
    if split:
        if options is None:
            if object_diameter is None:
                raise ScribbleUNetError("splitting touching objects needs an object diameter "
                                        "(--object-diameter PX), or --no-split")
            try:
                options = SplitOptions(float(object_diameter))
            except ValueError as e:
                raise ScribbleUNetError(str(e)) from None
        opts = options
    settings = _settings(opts)
    root: Any = zarr.open_group(out, mode="r+")
    mask = root[f"{MASK_PATH}/0"]
    shape = (int(mask.shape[0]), int(mask.shape[1]))
    chunks = (int(mask.chunks[0]), int(mask.chunks[1]))
    grid = _chunk_grid(shape, chunks)

    resumed = False
    existing: Any = root.get(INSTANCES_PATH)
    if existing is not None:
        old = dict(existing.attrs.get(ATTR) or {})
        if old.get("settings") == settings and INSTANCES_PROGRESS in root:
            if old.get("complete"):
                return InstancesResult(f"{out}/{INSTANCES_PATH}", int(old.get("n_objects", 0)),
                                       grid[0] * grid[1], True, ["already complete"])
            resumed = True
        else:
            _remove(root, out)
    if not resumed:
        _remove(root, out)
        new = root.require_group(INSTANCES_PATH)
        new.create_array("0", shape=shape, chunks=chunks, dtype=np.uint32, fill_value=0)
        new.attrs["image-label"] = {"version": ngff.NGFF_VERSION}
        new.attrs["multiscales"] = ngff.multiscales("instances", "yx", 1)
        root.create_array(INSTANCES_PROGRESS, shape=grid, chunks=(1, 1), dtype=np.uint8, fill_value=0)
        root.require_group(INSTANCES_WORK)
        # written last: an output with these attributes has every array the pass needs
        new.attrs[ATTR] = {"settings": settings, "complete": False}
    group: Any = root[INSTANCES_PATH]
    prog = root[INSTANCES_PROGRESS]

    total = 2 * grid[0] * grid[1]
    state = np.asarray(prog[...])
    done = int((state >= LABELLED).sum() + (state >= RELABELLED).sum())
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=done, unit="chunk", desc="instances", dynamic_ncols=True)
    counter = [done]

    def tick() -> None:
        counter[0] += 1
        if bar is not None:
            bar.update(1)
        elif callable(progress):
            progress(counter[0], total)

    try:
        n_objects = write_instances(mask, group["0"], root[INSTANCES_WORK], prog, opts, threads, tick)
    finally:
        if bar is not None:
            bar.close()
    nearest_pyramid(group, "instances", max(chunks))
    labels: Any = root["labels"]
    names = list(labels.attrs.get("labels", []))
    if "instances" not in names:
        labels.attrs["labels"] = [*names, "instances"]
    group.attrs[ATTR] = {"settings": settings, "complete": True, "n_objects": n_objects}
    shutil.rmtree(os.path.join(out, INSTANCES_WORK), ignore_errors=True)
    notes = [] if opts is None else [f"split with object diameter {opts.object_diameter:g} px: regions up "
                                     f"to {opts.max_extent} px are split, larger ones kept whole"]
    return InstancesResult(f"{out}/{INSTANCES_PATH}", n_objects, grid[0] * grid[1], resumed, notes)


def _remove(root: Any, out: str) -> None:
    """Delete an earlier instances pass (its label image, progress and work state)."""
    labels = root.get("labels")
    if labels is not None:
        names = [n for n in labels.attrs.get("labels", []) if n != "instances"]
        labels.attrs["labels"] = names
    for rel in (INSTANCES_PATH, INSTANCES_PROGRESS, INSTANCES_WORK):
        path = os.path.join(out, *rel.split("/"))
        if os.path.isdir(path):
            shutil.rmtree(path)
