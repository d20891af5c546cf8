"""Whole-image export: :func:`predict_to_zarr` writes the mask (an OME-Zarr label image) and optionally
the probabilities, chunk by chunk, resumably, on threads or a dask.distributed cluster; the layout is in
the README.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ScribbleUNetError
from ..image.source import ImageSource
from ..inference.predict import DEFAULT_TILE, ChunkPredictor, probabilities_to_mask
from ..model.checkpoint import Checkpoint
from ..model.normalize import NanPolicy
from ..ome.files import describe_os_error, fault_point
from ..ome.output import OutputClaim, claim_output

PROGRESS_ARRAY = "progress"
HASH_ARRAY = "input_hash"
MASK_PATH = "labels/mask"
PROBA_PATH = "probabilities"


def chunk_input_hash(source: ImageSource, bounds: tuple[int, int, int, int]) -> int:
    """Content hash (64 bits) of the image pixels under one output chunk, as read from the source.

    Stored beside the chunk's progress flag, it lets a resumed run prove that every chunk it keeps was
    predicted from the same pixels: the chunks tile the image, so an edit anywhere changes one of them.
    """
    import hashlib

    y0, y1, x0, x1 = bounds
    block = np.ascontiguousarray(source.read(y0, y1, x0, x1))
    digest = hashlib.blake2b(f"{block.shape}|{block.dtype}".encode(), digest_size=8)
    digest.update(block.data)
    return int.from_bytes(digest.digest(), "little")


def _write_chunk(predictor: ChunkPredictor, out: str, iy: int, ix: int, with_proba: bool,
                 threads: int | None = None) -> tuple[int, int]:
    """Predict chunk ``(iy, ix)`` and write it; the hash and progress flag only after the data."""
    import zarr

    if threads:
        torch.set_num_threads(threads)
    bounds = predictor.grid.chunk_bounds(iy, ix)
    input_hash = chunk_input_hash(predictor.source, bounds)
    prob = predictor.probabilities(iy, ix)
    y0, y1, x0, x1 = bounds
    root = zarr.open_group(out, mode="r+")
    root[f"{MASK_PATH}/0"][y0:y1, x0:x1] = probabilities_to_mask(prob)  # type: ignore[index]
    if with_proba:
        root[f"{PROBA_PATH}/0"][:, y0:y1, x0:x1] = prob  # type: ignore[index]
    root[HASH_ARRAY][iy, ix] = input_hash  # type: ignore[index]
    root[PROGRESS_ARRAY][iy, ix] = 1  # type: ignore[index]
    fault_point("predict-chunk-written")
    return iy, ix


@dataclass
class PredictResult:
    """What :func:`predict_to_zarr` did."""

    path: str
    n_chunks: int
    computed: int
    skipped: int
    notes: list[str]


def image_fingerprint(source: ImageSource, window: int = 64) -> str:
    """A cheap content hash of an image: shape, dtype and five fixed windows (corners and centre).

    It tells a resumed export whether the image is the one the earlier run used, without reading
    the whole image.
    """
    import hashlib

    h, w = source.shape_yx
    digest = hashlib.sha256(f"{source.shape_yx}|{source.n_channels}|{source.dtype}".encode())
    wy, wx = min(window, h), min(window, w)
    for y, x in [(0, 0), (0, w - wx), (h - wy, 0), (h - wy, w - wx), ((h - wy) // 2, (w - wx) // 2)]:
        digest.update(np.ascontiguousarray(source.read(y, y + wy, x, x + wx)).tobytes())
    return digest.hexdigest()[:16]


_RESUME_KEYS = ("model_token", "image", "image_shape", "tile", "probabilities", "nan_policy")
_TREES = (MASK_PATH, PROBA_PATH, PROGRESS_ARRAY, HASH_ARRAY)
_GROUPS = ("labels", "")


def _run_info(predictor: ChunkPredictor, with_proba: bool) -> dict[str, Any]:
    from .. import __version__

    return {
        "version": __version__,
        "model_token": predictor.checkpoint.token,
        "image": image_fingerprint(predictor.source),
        "image_shape": list(predictor.source.shape_yx),
        "tile": predictor.grid.tile,
        "classes": list(predictor.class_names),
        "probabilities": with_proba,
        "nan_policy": predictor.nan_policy,
        "complete": False,
    }


def _read_run_info(out: str) -> dict[str, Any] | None:
    """The ``scribble_unet`` attributes of an existing output, or None if they cannot be read."""
    from ..ome.files import read_json_capped

    attrs = read_json_capped(Path(out) / ".zattrs")
    info = attrs.get("scribble_unet") if isinstance(attrs, dict) else None
    return dict(info) if isinstance(info, dict) else None


def _write_root_attrs(out: str, info: dict[str, Any]) -> None:
    """The root attributes, written whole and atomically (a crash never leaves a truncated .zattrs)."""
    from ..ome.files import atomic_write_json

    atomic_write_json(Path(out) / ".zattrs", {"scribble_unet": info}, what=f"the attributes of {out}")


def _protected(predictor: ChunkPredictor) -> list[tuple[str, Any]]:
    return [("input image", getattr(predictor.source, "path", None)),
            ("model in use", getattr(predictor.checkpoint, "path", None))]


def _prepare_output(claim: OutputClaim, predictor: ChunkPredictor, with_proba: bool, overwrite: bool,
                    notes: list[str]) -> Any:
    """Create the output group, or reopen it to resume a run with the same model, image and tile.

    The output folder is claimed (and locked) by the caller under the ownership rule of
    :mod:`scribble_unet.ome.output`: ``overwrite`` removes only what an earlier prediction wrote.
    """

    out = str(claim.path)
    src_path = getattr(predictor.source, "path", None)
    if src_path is not None and _overlaps(out, os.fspath(src_path)):
        raise ScribbleUNetError(f"output {out} overlaps the input image {src_path}; choose another path")
    info = _run_info(predictor, with_proba)
    identity = {k: info[k] for k in _RESUME_KEYS}
    old = claim.marker
    if old is not None and not overwrite:
        found = old.get("identity")
        same: dict[str, Any] = found if isinstance(found, dict) else {}
        if same != identity:
            diff = ", ".join(k for k in _RESUME_KEYS if same.get(k) != identity[k]) or "identity"
            raise ScribbleUNetError(
                f"{out} holds a prediction made with another {diff}; pass --overwrite or choose another path"
            )
        root = _open_for_resume(out, with_proba, info)
        if root is not None:
            return root
        notes.append("the earlier run stopped while creating the output; it was created again")
    claim.clear()
    claim.begin(identity, _TREES, _GROUPS)  # the marker first: a half-created output is known as ours
    return _create_arrays(out, predictor, with_proba, info)


def _open_for_resume(out: str, with_proba: bool, info: dict[str, Any]) -> Any:
    """The output group if every array of a resumable output can be opened, else None.

    Damaged or missing root attributes (a truncated ``.zattrs``) are written again from this run's
    identity, which the marker has just shown to be the earlier run's; the progress flags are kept.
    """
    import zarr

    if _read_run_info(out) is None and os.path.isfile(os.path.join(out, ".zgroup")):
        _write_root_attrs(out, info)
    try:
        root = zarr.open_group(out, mode="r+")
        needed = [f"{MASK_PATH}/0", PROGRESS_ARRAY, HASH_ARRAY] + ([f"{PROBA_PATH}/0"] if with_proba else [])
        for n in needed:
            root[n]
    except Exception:  # missing or damaged metadata: the run that made it stopped while creating it
        return None
    return root


def _create_arrays(out: str, predictor: ChunkPredictor, with_proba: bool, info: dict[str, Any]) -> Any:
    import zarr

    from ..ome import ngff

    grid = predictor.grid
    h, w = grid.shape_yx
    # zarr chunks never larger than the image (a huge --tile or --tile 0 on a strip stays bounded);
    # their origins are still multiples of the tile, so each prediction chunk owns its zarr chunk
    cy, cx = min(grid.tile, h), min(grid.tile, w)
    k = predictor.n_classes
    try:
        root = zarr.open_group(out, mode="a", zarr_format=2)
        labels = root.require_group("labels")
        labels.attrs["labels"] = ["mask"]
        mask = labels.create_group("mask", overwrite=True)
        mask.create_array("0", shape=(h, w), chunks=(cy, cx), dtype=np.uint8 if k < 255 else np.uint16,
                          fill_value=0)
        mask.attrs["multiscales"] = ngff.multiscales("mask", "yx", 1)
        mask.attrs["image-label"] = ngff.image_label(predictor.class_names)
        if with_proba:
            proba = root.create_group(PROBA_PATH, overwrite=True)
            proba.create_array("0", shape=(k, h, w), chunks=(k, cy, cx), dtype=np.float32, fill_value=0.0)
            proba.attrs["multiscales"] = ngff.multiscales("probabilities", "cyx", 1)
            proba.attrs["omero"] = {"channels": [{"label": n} for n in predictor.class_names]}
        ny, nx = grid.n_chunks
        root.create_array(HASH_ARRAY, shape=(ny, nx), chunks=(1, 1), dtype=np.uint64, fill_value=0,
                          overwrite=True)
        root.create_array(PROGRESS_ARRAY, shape=(ny, nx), chunks=(1, 1), dtype=np.uint8, fill_value=0,
                          overwrite=True)
    except OSError as err:
        raise ScribbleUNetError(f"cannot create the output {out}: {describe_os_error(err)}; "
                                "a rerun (with --overwrite) cleans it up") from err
    fault_point("predict-arrays-created")
    # written last: the run's attributes (the marker, written first, already says the folder is ours)
    _write_root_attrs(out, info)
    return zarr.open_group(out, mode="r+")


def _read_flags(arr: Any, grid_shape: tuple[int, int], what: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Values of a (1, 1)-chunked array; chunks that cannot be decoded read as 0 and are listed."""
    try:
        return np.asarray(arr[...]), []
    except Exception:  # a damaged chunk somewhere: read them one by one
        pass
    ny, nx = grid_shape
    values = np.zeros((ny, nx), dtype=arr.dtype)
    damaged = []
    for iy in range(ny):
        for ix in range(nx):
            try:
                values[iy, ix] = arr[iy, ix]
            except Exception:
                damaged.append((iy, ix))
    return values, damaged


def _verify_done(root: Any, predictor: ChunkPredictor, with_proba: bool, out: str,
                 notes: list[str], progress: bool) -> np.ndarray:
    """Check every chunk flagged done: its input pixels hash as when it was predicted, its data decodes.

    A chunk whose input differs refuses the resume (one line). A chunk whose output cannot be read back
    (a damaged file) has its flag cleared, so it is predicted again.
    """
    grid = predictor.grid
    shape = grid.n_chunks
    done, bad_flags = _read_flags(root[PROGRESS_ARRAY], shape, "progress")
    hashes, bad_hashes = _read_flags(root[HASH_ARRAY], shape, "input hash")
    done = done.astype(bool)
    for iy, ix in bad_flags + bad_hashes:
        done[iy, ix] = False
    redo = set(bad_flags) | set(bad_hashes)
    todo = list(zip(*np.nonzero(done), strict=True))
    bar = None
    if todo and progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="chunk", desc="verify", dynamic_ncols=True)
    mask = root[f"{MASK_PATH}/0"]
    proba = root[f"{PROBA_PATH}/0"] if with_proba else None
    try:
        for iy, ix in todo:
            iy, ix = int(iy), int(ix)
            bounds = grid.chunk_bounds(iy, ix)
            if chunk_input_hash(predictor.source, bounds) != int(hashes[iy, ix]):
                y0, _, x0, _ = bounds
                raise ScribbleUNetError(
                    f"{out}: the image differs from the one the earlier run predicted (chunk {iy},{ix} at "
                    f"y={y0}, x={x0}); pass --overwrite to predict it again"
                )
            y0, y1, x0, x1 = bounds
            try:
                np.asarray(mask[y0:y1, x0:x1])
                if proba is not None:
                    np.asarray(proba[:, y0:y1, x0:x1])
            except Exception:  # damaged chunk file
                done[iy, ix] = False
                redo.add((iy, ix))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    for iy, ix in sorted(redo):
        try:
            root[PROGRESS_ARRAY][iy, ix] = 0
        except OSError as err:
            raise ScribbleUNetError(f"cannot write {out}: {describe_os_error(err)}") from err
    if redo:
        listed = ", ".join(f"{iy},{ix}" for iy, ix in sorted(redo)[:5]) + (", ..." if len(redo) > 5 else "")
        notes.append(f"{len(redo)} damaged chunk(s) of the earlier run ({listed}) are predicted again")
    return done


def _overlaps(a: str, b: str) -> bool:
    pa, pb = os.path.realpath(a), os.path.realpath(b)
    return pa == pb or pa.startswith(pb + os.sep) or pb.startswith(pa + os.sep)


def _build_mask_pyramid(out: str, tile: int) -> int:
    """Write nearest-neighbour levels 1, 2, ... of the mask until the largest side fits one tile."""
    import dask.array as da
    import zarr

    from ..ome import ngff

    group = zarr.open_group(f"{out}/{MASK_PATH}", mode="r+")
    level = 0
    prev = da.from_zarr(group["0"])
    while max(prev.shape) > tile:
        level += 1
        chunks = (min(tile, -(-prev.shape[0] // 2)), min(tile, -(-prev.shape[1] // 2)))
        nxt = prev[::2, ::2].rechunk(chunks)
        arr = group.create_array(str(level), shape=nxt.shape, chunks=chunks, dtype=nxt.dtype,
                                 fill_value=0, overwrite=True)
        da.store(nxt, arr, lock=False, scheduler="threads")  # type: ignore[arg-type]
        prev = da.from_zarr(arr)
    group.attrs["multiscales"] = ngff.multiscales("mask", "yx", level + 1)
    return level + 1


def predict_to_zarr(
    checkpoint: Checkpoint,
    image: Any,
    out: str | os.PathLike[str],
    tile: int = DEFAULT_TILE,
    probabilities: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
    nan_policy: NanPolicy = "error",
    device: str = "auto",
    overwrite: bool = False,
    progress: bool | Callable[[int, int], None] = True,
    cancel: threading.Event | None = None,
) -> PredictResult:
    """Predict the whole image into an OME-Zarr group at ``out``, chunk by chunk, resumably.

    Parameters
    ----------
    workers
        Run on a new ``dask.distributed.LocalCluster`` with this many single-threaded worker
        processes.
    scheduler
        Address of an existing dask scheduler (``tcp://host:port``) to run on.
    threads
        Chunks predicted at once by the local thread pool (when neither ``workers`` nor
        ``scheduler`` is given); default: one per core, each chunk running torch on one thread,
        which measured 1.2-1.5x faster than one chunk at a time on all cores (docs/performance.md).
    progress
        ``True`` shows a tqdm bar on stderr, a callable receives ``(done, total)``.
    cancel
        Set this event to stop after the chunks in flight; finished chunks stay done for a resume.

    Chunks already flagged done by an earlier run with the same model, image and tile are skipped;
    a chunk's flag is written only after its data. The root attribute ``scribble_unet.complete``
    becomes true only when every chunk and the mask pyramid are written.
    """
    out = os.path.abspath(os.fspath(out))  # workers may run in another working directory
    predictor = ChunkPredictor(checkpoint, image, tile, nan_policy, device)
    if not (scheduler or workers):
        return _predict_to_zarr(predictor, out, probabilities, None, threads, overwrite, progress, cancel)
    client, cluster = _connect(workers, scheduler)  # before anything is written
    try:
        return _predict_to_zarr(predictor, out, probabilities, client, threads, overwrite, progress, cancel)
    finally:
        _disconnect(client, cluster)


def _predict_to_zarr(
    predictor: ChunkPredictor,
    out: str,
    probabilities: bool,
    client: Any,
    threads: int | None,
    overwrite: bool,
    progress: bool | Callable[[int, int], None],
    cancel: threading.Event | None,
) -> PredictResult:
    src_path = getattr(predictor.source, "path", None)
    if src_path is not None and _overlaps(out, os.fspath(src_path)):
        raise ScribbleUNetError(f"output {out} overlaps the input image {src_path}; choose another path")
    with claim_output(out, "prediction", protect=_protected(predictor)) as claim:
        return _predict_locked(claim, predictor, probabilities, client, threads, overwrite, progress, cancel)


def _predict_locked(
    claim: OutputClaim,
    predictor: ChunkPredictor,
    probabilities: bool,
    client: Any,
    threads: int | None,
    overwrite: bool,
    progress: bool | Callable[[int, int], None],
    cancel: threading.Event | None,
) -> PredictResult:
    import zarr

    out = str(claim.path)
    notes = list(predictor.notes)
    root = _prepare_output(claim, predictor, probabilities, overwrite, notes)
    grid = predictor.grid
    done = _verify_done(root, predictor, probabilities, out, notes, progress is True)
    todo = [(iy, ix) for iy, ix in grid if not done[iy, ix]]
    total = len(grid.chunks[0]) * len(grid.chunks[1])
    skipped = total - len(todo)
    info = _read_run_info(out) or {}
    if not todo and info.get("complete"):
        return PredictResult(out, total, 0, skipped, [*notes, "already complete"])
    if info.get("complete") is not False:
        _set_complete(out, predictor, probabilities, False)

    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=skipped, unit="chunk", desc="predict", dynamic_ncols=True)

    def advance(n_done: int) -> None:
        if bar is not None:
            bar.update(1)
        elif callable(progress):
            progress(n_done, total)

    n_done = skipped
    try:
        if client is not None:
            _run_distributed(client, predictor, out, todo, probabilities, skipped, advance, cancel)
        else:
            from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

            n_threads = threads or os.cpu_count() or 1
            torch_threads = torch.get_num_threads()
            if n_threads > 1 and predictor.device == "cpu":
                torch.set_num_threads(max(1, torch_threads // n_threads))
            pool = ThreadPoolExecutor(max_workers=n_threads)
            try:
                pending: set[Any] = set()
                it = iter(todo)
                while True:
                    while len(pending) < 2 * n_threads and not (cancel and cancel.is_set()):
                        nxt = next(it, None)
                        if nxt is None:
                            break
                        pending.add(pool.submit(_write_chunk, predictor, out, nxt[0], nxt[1], probabilities))
                    if not pending:
                        break
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        f.result()
                        n_done += 1
                        advance(n_done)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                torch.set_num_threads(torch_threads)
    except OSError as err:  # a full disk, a lost permission: finished chunks stay flagged for a rerun
        raise ScribbleUNetError(
            f"cannot write {out}: {describe_os_error(err)}; finished chunks are kept and a rerun resumes"
        ) from err
    finally:
        if bar is not None:
            bar.close()
    if cancel is not None and cancel.is_set():
        final: Any = zarr.open_group(out, mode="r")
        done_now = int(np.asarray(final[PROGRESS_ARRAY][...]).sum())
        return PredictResult(out, total, done_now - skipped, skipped, [*notes, "cancelled"])
    try:
        _build_mask_pyramid(out, grid.tile)
    except OSError as err:
        raise ScribbleUNetError(f"cannot write the mask pyramid of {out}: {describe_os_error(err)}") from err
    fault_point("predict-before-complete")
    _set_complete(out, predictor, probabilities, True)
    return PredictResult(out, total, len(todo), skipped, notes)


def _set_complete(out: str, predictor: ChunkPredictor, with_proba: bool, value: bool) -> None:
    info = _read_run_info(out) or _run_info(predictor, with_proba)
    info["complete"] = value
    _write_root_attrs(out, info)


def _connect(workers: int | None, scheduler: str | None) -> tuple[Any, Any]:
    """A dask.distributed client on a new LocalCluster (``workers``) or an existing ``scheduler``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise ScribbleUNetError(
            "--workers/--scheduler need dask.distributed: pip install 'napari-scribble-unet[distributed]'"
        ) from e
    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, ValueError, TypeError) as e:
            raise ScribbleUNetError(f"cannot reach the dask scheduler at {scheduler}: {e}") from e
    if workers is None or workers < 1:
        raise ScribbleUNetError(f"--workers must be a positive number, got {workers}")
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster


def _disconnect(client: Any, cluster: Any) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


def _write_chunk_on_worker(predictor: ChunkPredictor, out: str, iy: int, ix: int, with_proba: bool,
                           n_workers: int) -> tuple[int, int]:
    """Run on a dask worker: torch gets this host's cores divided by the workers on it."""
    return _write_chunk(predictor, out, iy, ix, with_proba, max(1, (os.cpu_count() or 1) // max(1, n_workers)))


def _run_distributed(
    client: Any,
    predictor: ChunkPredictor,
    out: str,
    todo: list[tuple[int, int]],
    with_proba: bool,
    skipped: int,
    advance: Callable[[int], None],
    cancel: threading.Event | None,
) -> None:
    from distributed import as_completed

    # workers per host, so each worker gives torch its share of that host's cores
    hosts: dict[str, int] = {}
    for addr in client.scheduler_info().get("workers", {}):
        host = addr.rsplit(":", 1)[0]
        hosts[host] = hosts.get(host, 0) + 1
    per_host = max(hosts.values()) if hosts else 1
    fut_pred = client.scatter(predictor, broadcast=True)
    futures = [
        client.submit(_write_chunk_on_worker, fut_pred, out, iy, ix, with_proba, per_host, pure=False)
        for iy, ix in todo
    ]
    n = skipped
    for f in as_completed(futures):
        f.result()
        n += 1
        advance(n)
        if cancel is not None and cancel.is_set():
            client.cancel(futures)
            break
