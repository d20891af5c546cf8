"""A scribble project on disk: the scribble store (zarr), class names, models and exports.

Layout of a project folder::

    project.json        class names, image description, the model in use
    scribbles.zarr      uint8 scribbles, same Y, X as the image; 0 unlabelled, 1 background, 2.. classes
    models/             checkpoints published by the trainer, and saved models
    export.zarr         the last whole-image export (an OME-Zarr label image)

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError

SCRIBBLE_CHUNK = 512
PROJECT_FILE = "project.json"


@dataclass
class Project:
    """A project folder and what it records.

    Parameters
    ----------
    folder
        The folder; created when missing.
    class_names
        Names of the object classes; scribble value ``k + 1`` is class ``k`` (1 is background).
    """

    folder: Path
    class_names: list[str] = field(default_factory=lambda: ["object"])
    model: str | None = None
    image: str | None = None

    @property
    def scribbles_path(self) -> Path:
        return self.folder / "scribbles.zarr"

    @property
    def models_dir(self) -> Path:
        return self.folder / "models"

    @property
    def export_path(self) -> Path:
        return self.folder / "export.zarr"

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> Project:
        """Open (or create) the project in ``folder``."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise ScribbleUNetError(f"{folder} is a file; choose a folder for the project")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "models").mkdir(exist_ok=True)
        except OSError as e:
            raise ScribbleUNetError(f"cannot create the project folder {folder}: {e.strerror}") from e
        proj = cls(folder)
        meta_path = folder / PROJECT_FILE
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ScribbleUNetError(f"{meta_path} is damaged ({e}); move it away to start afresh") from e
            proj.class_names = list(meta.get("class_names") or ["object"])
            proj.model = meta.get("model")
            proj.image = meta.get("image")
        return proj

    def save(self) -> None:
        """Write ``project.json`` (atomically)."""
        meta = {"class_names": self.class_names, "model": self.model, "image": self.image}
        tmp = self.folder / (PROJECT_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, self.folder / PROJECT_FILE)

    def open_scribbles(self, shape_yx: tuple[int, int]) -> Any:
        """The scribble store: a uint8 zarr array of ``shape_yx``, created empty when missing."""
        import zarr

        path = self.scribbles_path
        if path.exists():
            arr = zarr.open_array(path, mode="r+")
            if tuple(arr.shape) != tuple(shape_yx):
                raise ScribbleUNetError(
                    f"the project's scribbles have shape {tuple(arr.shape)} but the image is {tuple(shape_yx)}; "
                    "choose another project folder for this image"
                )
            return arr
        c = SCRIBBLE_CHUNK
        return zarr.create_array(path, shape=shape_yx, chunks=(c, c), dtype=np.uint8, fill_value=0)

    def latest_checkpoint(self) -> Path | None:
        """The model recorded in ``project.json``, else the newest checkpoint in ``models/``."""
        if self.model and (self.folder / self.model).exists():
            return self.folder / self.model
        files = sorted(self.models_dir.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        return files[-1] if files else None


class WriteThroughWindow(np.ndarray):
    """A numpy window onto a region of a zarr scribble store; every assignment is written through.

    napari paints (and undoes, and fills) by assigning into the layer's data. Because this class is a
    real ``numpy.ndarray``, napari treats it as one; its ``__setitem__`` additionally copies the
    bounding box of what changed into the store, so the store on disk always holds every stroke.
    Views taken from it (slices) do not write through; only the window itself does.
    """

    _store: Any
    _origin: tuple[int, int]
    _on_write: Any

    @classmethod
    def load(cls, store: Any, y0: int, y1: int, x0: int, x1: int, on_write: Any = None) -> WriteThroughWindow:
        """Read ``store[y0:y1, x0:x1]`` into a new window."""
        data = np.asarray(store[y0:y1, x0:x1])
        win = data.view(cls)
        win._store = store
        win._origin = (y0, x0)
        win._on_write = on_write
        return win

    def __array_finalize__(self, obj: Any) -> None:
        self._store = None
        self._origin = (0, 0)
        self._on_write = None

    @property
    def origin(self) -> tuple[int, int]:
        """Position of the window's first pixel in the store."""
        return self._origin

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if self._store is None:
            return
        box = _bounding_box(key, self.shape)
        if box is None:
            return
        y0, y1, x0, x1 = box
        oy, ox = self._origin
        self._store[oy + y0 : oy + y1, ox + x0 : ox + x1] = self.view(np.ndarray)[y0:y1, x0:x1]
        if self._on_write is not None:
            self._on_write((oy + y0, oy + y1, ox + x0, ox + x1))


def _bounding_box(key: Any, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, y1, x0, x1)`` of what ``array[key] = ...`` touches; whole array if unsure."""
    whole = (0, shape[0], 0, shape[1])
    if not isinstance(key, tuple) or len(key) != 2:
        return whole
    bounds: list[int] = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step != 1:
                return whole
            if stop <= start:
                return None
            bounds += [start, stop]
        elif isinstance(k, (int, np.integer)):
            i = int(k) % n
            bounds += [i, i + 1]
        else:
            idx = np.asarray(k)
            if idx.dtype == bool or idx.size == 0:
                return whole if idx.size else None
            bounds += [int(idx.min()) % n, int(idx.max()) % n + 1]
    return bounds[0], bounds[1], bounds[2], bounds[3]
