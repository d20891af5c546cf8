"""A scribble project on disk: the scribble store (zarr), class names, models and exports.

Layout of a project folder::

    project.json        class names, image description, the model in use, the model versions, the
                        last run's configuration and the training history (loss, IoU points, steps)
    scribbles.zarr      uint8 scribbles, same Y, X as the image; 0 unlabelled, 1 background, 2.. classes
    models/             one file per training run (model-<date>-<time>.safetensors; the last
                        :data:`KEEP_MODELS` are kept, and always the one in use), and saved models
    export.zarr         the last whole-image export (an OME-Zarr label image)

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError
from .store import (  # noqa: F401 (re-exported: the store's faces used to live here)
    MAX_POOLED_CHUNKS,
    ScribbleOverview,
    ScribbleOverviewLevel,
    WriteThroughWindow,
)

SCRIBBLE_CHUNK = 512
PROJECT_FILE = "project.json"
KEEP_MODELS = 5
"""Model versions kept in ``models/``; older ones are deleted, never the one in use."""


@dataclass(frozen=True)
class ModelVersion:
    """One model file of the project: where it is, when it was saved, how many steps trained it in all."""

    file: str
    saved: str
    steps: int

    @property
    def label(self) -> str:
        """How the user sees the model: ``"saved 3 Jan 14:32, 88 steps"``."""
        try:
            dt = datetime.fromisoformat(self.saved)
            when = f"{dt.day} {dt:%b %H:%M}"
        except ValueError:
            when = self.saved
        return f"saved {when}, {self.steps} steps"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "saved": self.saved, "steps": self.steps}


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
    run_config: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    models: list[ModelVersion] = field(default_factory=list)
    is_new: bool = True
    """True when the folder had no ``project.json`` when opened (not saved)."""

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
            if proj.model is not None:
                proj.model = proj.check_model_path(proj.model)
            proj.image = meta.get("image")
            proj.is_new = False
            proj.run_config = _dict_of_dicts(meta.get("run_config"))
            proj.history = meta.get("history") if isinstance(meta.get("history"), dict) else {}
            proj.models = proj._read_versions(meta.get("models"))
        return proj

    def _read_versions(self, entries: Any) -> list[ModelVersion]:
        """The model versions of ``project.json``; an entry that is malformed or leaves the project is dropped."""
        out: list[ModelVersion] = []
        for e in entries if isinstance(entries, list) else []:
            if not (isinstance(e, dict) and isinstance(e.get("saved"), str) and isinstance(e.get("steps"), int)):
                continue
            try:
                out.append(ModelVersion(self.check_model_path(e.get("file")), e["saved"], e["steps"]))
            except ScribbleUNetError:
                continue
        return out

    def check_model_path(self, model: Any) -> str:
        """The model path of ``project.json``, relative to the project; one that leaves it is refused."""
        if not isinstance(model, str) or not model:
            raise ScribbleUNetError(f"{self.folder / PROJECT_FILE}: 'model' must be a file name in the project")
        target = os.path.realpath(self.folder / model)
        root = os.path.realpath(self.folder)
        if os.path.isabs(model) or not target.startswith(root + os.sep):
            raise ScribbleUNetError(
                f"{self.folder / PROJECT_FILE} names the model {model[:200]!r}, which is outside the project "
                "folder; a project's model must lie inside it (e.g. models/model.safetensors)"
            )
        return model

    def save(self) -> None:
        """Write ``project.json`` (atomically: temporary file, fsync, rename)."""
        from ..ome.files import atomic_write_json

        model = self.model
        if model is not None:
            try:
                self.check_model_path(model)
            except ScribbleUNetError:
                model = None  # only a model inside the project is recorded (opening refuses any other)
        meta = {"class_names": self.class_names, "model": model, "image": self.image,
                "models": [v.to_json() for v in self.models], "run_config": self.run_config,
                "history": self.history}
        atomic_write_json(self.folder / PROJECT_FILE, meta, what=str(self.folder / PROJECT_FILE))

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
        if self.model and self.check_model_path(self.model) and (self.folder / self.model).exists():
            return self.folder / self.model
        files = sorted(self.models_dir.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        return files[-1] if files else None

    # ------------------------------------------------------------------ model versions
    def new_model_path(self, now: datetime | None = None) -> Path:
        """A new file for the next training run's model: ``models/model-<date>-<time>.safetensors``.

        Never an existing file: every run writes its own version, so no earlier model is overwritten.
        """
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        path = self.models_dir / f"model-{stamp}.safetensors"
        n = 2
        while path.exists() or self.version_of(path) is not None:
            path = self.models_dir / f"model-{stamp}-{n}.safetensors"
            n += 1
        return path

    def _relative(self, path: str | os.PathLike[str]) -> str:
        p = Path(path)
        try:
            rel = str(p.resolve().relative_to(self.folder.resolve()))
        except ValueError:
            rel = str(p)
        return self.check_model_path(rel)

    def version_of(self, path: str | os.PathLike[str] | None) -> ModelVersion | None:
        """The recorded version of model file ``path`` (None when it is not one of the project's)."""
        if path is None:
            return None
        try:
            rel = self._relative(path)
        except ScribbleUNetError:
            return None
        return next((v for v in self.models if v.file == rel), None)

    def record_model(self, path: str | os.PathLike[str], steps: int, saved: datetime | None = None) -> ModelVersion:
        """Record model file ``path`` (inside the project) as the newest version and the one in use.

        Versions beyond the last :data:`KEEP_MODELS` are forgotten and their files deleted, except the
        one in use; a file the project did not record (an older ``model.safetensors``, a saved
        model) is never deleted. Call :meth:`save` afterwards.
        """
        rel = self._relative(path)
        version = ModelVersion(rel, (saved or datetime.now()).isoformat(timespec="seconds"), int(steps))
        self.models = [v for v in self.models if v.file != rel] + [version]
        self.model = rel
        while len(self.models) > KEEP_MODELS:
            old = next(v for v in self.models if v.file != self.model)
            self.models.remove(old)
            try:
                (self.folder / old.file).unlink(missing_ok=True)
            except OSError:
                pass  # kept on disk; it is no longer listed
        return version


def _dict_of_dicts(value: Any) -> dict[str, Any]:
    """``run_config`` of ``project.json``: a dict of dicts (one per configuration), else empty."""
    if not isinstance(value, dict):
        return {}
    return {k: dict(v) for k, v in value.items() if isinstance(k, str) and isinstance(v, dict)}
