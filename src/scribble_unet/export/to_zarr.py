"""Whole-image export: :func:`predict_to_zarr` writes the mask (an OME-Zarr label image) and optionally
the probabilities, chunk by chunk, resumably, on threads or a dask.distributed cluster; the layout is in
the README.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ScribbleUNetError
from ..inference.predict import DEFAULT_TILE, ChunkPredictor
from ..model.checkpoint import Checkpoint
from ..model.normalize import NanPolicy
from ..ome.files import describe_os_error, fault_point
from ..ome.output import OutputClaim, claim_output
from .resume import (  # the output's identity, creation and resume checks
    HASH_ARRAY,
    MASK_PATH,
    PROBA_PATH,
    PROGRESS_ARRAY,
    _overlaps,
    _prepare_output,
    _protected,
    _read_run_info,
    _run_info,
    _verify_done,
    _write_root_attrs,
    chunk_input_hash,
)


def _write_chunk(predictor: ChunkPredictor, out: str, iy: int, ix: int, with_proba: bool,
                 threads: int | None = None) -> tuple[int, int]:
    """Predict chunk ``(iy, ix)`` and write it; the hash and progress flag only after the data."""
    import zarr

    if threads:
        torch.set_num_threads(threads)
    bounds = predictor.grid.chunk_bounds(iy, ix)
    input_hash = chunk_input_hash(predictor.source, bounds)
    prob, mask = predictor.outputs(iy, ix)
    y0, y1, x0, x1 = bounds
    root = zarr.open_group(out, mode="r+")
    root[f"{MASK_PATH}/0"][y0:y1, x0:x1] = mask  # type: ignore[index]
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


def _build_mask_pyramid(out: str, tile: int) -> int:
    """Write nearest-neighbour levels 1, 2, ... of the mask until the largest side fits one tile."""
    import zarr

    from ..ome.pyramid import nearest_pyramid

    return nearest_pyramid(zarr.open_group(f"{out}/{MASK_PATH}", mode="r+"), "mask", tile)


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
    snap: bool | None = None,
) -> PredictResult:
    """Predict the whole image into an OME-Zarr group at ``out``, chunk by chunk, resumably.

    Parameters
    ----------
    snap
        Mask borders on image edges (:mod:`scribble_unet.inference.borders`); None follows the
        model's ``snap_borders``. A run is resumed only with the same choice.
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
    predictor = ChunkPredictor(checkpoint, image, tile, nan_policy, device, snap=snap)
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
