"""The identity of a prediction output and the checks that make resuming it safe.

An output records how it was made (:func:`_run_info`: model token, image fingerprint, tile, ...); a run
that finds an output creates it (:func:`_create_arrays`) or resumes it (:func:`_open_for_resume`) only
under the ownership rule of :mod:`scribble_unet.ome.output` (:func:`_prepare_output`), and before
resuming re-checks every finished chunk (:func:`_verify_done`): its input pixels must hash as when it was
predicted (:func:`chunk_input_hash`) and its data must decode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError
from ..image.source import ImageSource
from ..inference.predict import ChunkPredictor
from ..ome.files import describe_os_error, fault_point
from ..ome.output import OutputClaim

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


_RESUME_KEYS = ("model_token", "image", "image_shape", "tile", "probabilities", "nan_policy", "snap_borders")
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
        "snap_borders": predictor.snap,
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


def _stored_chunks(arr_dir: Path) -> list[tuple[int, int]] | None:
    """Indices of the chunks of a 2D array that exist on disk (zarr v2 ``iy.ix`` files or v3
    ``c/iy/ix``); None when the array is not a local folder. Never-written chunks have no file."""
    if not arr_dir.is_dir():
        return None
    found: list[tuple[int, int]] = []
    for name in os.listdir(arr_dir):
        a, dot, b = name.partition(".")
        if dot and a.isdigit() and b.isdigit():
            found.append((int(a), int(b)))
    c = arr_dir / "c"
    if c.is_dir():
        for a in os.listdir(c):
            if a.isdigit() and (c / a).is_dir():
                found.extend((int(a), int(b)) for b in os.listdir(c / a) if b.isdigit())
    return found


def _read_flags(arr: Any, grid_shape: tuple[int, int], what: str,
                arr_dir: Path | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Values of a (1, 1)-chunked array; chunks that cannot be decoded read as 0 and are listed.

    With ``arr_dir`` (the array's folder) only the chunks that exist on disk are read: a huge declared
    image has millions of chunks, and asking zarr for all of them took minutes and gigabytes before
    the first chunk was predicted.
    """
    ny, nx = grid_shape
    stored = _stored_chunks(arr_dir) if arr_dir is not None else None
    if stored is None:
        try:
            return np.asarray(arr[...]), []
        except Exception:  # a damaged chunk somewhere: read them one by one
            stored = [(iy, ix) for iy in range(ny) for ix in range(nx)]
    values = np.zeros((ny, nx), dtype=arr.dtype)
    damaged = []
    for iy, ix in stored:
        if iy >= ny or ix >= nx:
            continue
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
    done, bad_flags = _read_flags(root[PROGRESS_ARRAY], shape, "progress", Path(out) / PROGRESS_ARRAY)
    hashes, bad_hashes = _read_flags(root[HASH_ARRAY], shape, "input hash", Path(out) / HASH_ARRAY)
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

