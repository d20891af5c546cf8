"""Which folders this package may write into and delete from: the ownership rule, in one place.

Every output folder that ``predict``, ``convert`` and the napari writer create carries a marker file,
``.scribble-unet-output.json``, written FIRST (before any zarr metadata), atomically. It names

* the kind of output (``prediction``, ``image`` for a conversion, ``labels`` for the napari writer);
* the run's identity (for a prediction: model token, image fingerprint, tile, ...), so a resume can
  check it is continuing the same work;
* the entries the run writes: ``trees`` (zarr arrays it creates, removed recursively) and ``groups``
  (zarr groups whose metadata it writes, removed only when nothing else is left in them).

The rule:

* A folder without our marker is not ours: it is never written into nor deleted, ``overwrite`` or not
  (a scribble store, a converted image used as input, a user's folder). The only exception is an empty
  folder.
* An output of another kind is not replaced (``predict --overwrite`` onto a converted image refuses).
* ``overwrite`` removes only what the marker lists, and inside those entries only files named as zarr
  writes them (``.zarray``, ``.zattrs``, ``.zgroup``, ``zarr.json``, chunk keys such as ``0.1`` or
  ``0/1``); any other file (``analysis.csv``, a model) stays, and so does the folder holding it.
* Symbolic links are never followed nor removed; an output path that is a link is refused.
* Paths given as ``protect`` (the input image, the model in use, the scribbles) are never removed; an
  entry that would contain one is refused.
* One run at a time: a lock file ``.scribble-unet.lock`` holding the owner's pid, locked with
  ``flock`` (released by the kernel when the process dies, so a ``kill -9`` leaves no stale lock). A
  second run on the same output refuses in one line.
"""

from __future__ import annotations

import fcntl
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ScribbleUNetError
from .files import atomic_write_json, describe_os_error, fault_point, file_mode, read_json_capped

MARKER = ".scribble-unet-output.json"
LOCK = ".scribble-unet.lock"
_OURS = (MARKER, LOCK)
_ZARR_META = {".zarray", ".zattrs", ".zgroup", "zarr.json", ".zmetadata"}
_CHUNK_KEY = re.compile(r"\d+([./]\d+)*")
KIND_WORDS = {"prediction": "a prediction", "image": "a converted image", "labels": "a saved label image"}


def _is_our_file(name: str) -> bool:
    return name in _ZARR_META or _CHUNK_KEY.fullmatch(name) is not None or name == "c"


def _check_rel(rel: str) -> str:
    parts = Path(rel).parts
    if Path(rel).is_absolute() or ".." in parts:
        raise ScribbleUNetError(f"output marker lists an entry outside the output: {rel!r}")
    return rel


def _inside(child: Path, parent: Path) -> bool:
    c, p = os.path.realpath(child), os.path.realpath(parent)
    return c == p or c.startswith(p.rstrip(os.sep) + os.sep)


def _stray_entries(path: Path) -> list[str]:
    """Entries of ``path`` other than our marker, lock and their temporary files."""
    return [n for n in os.listdir(path) if n not in _OURS and not n.startswith((f"{MARKER}.", f".{MARKER}."))]


class OutputClaim:
    """An output folder claimed by this process: its lock is held until :meth:`release`."""

    def __init__(self, path: Path, kind: str, fd: int, marker: dict[str, Any] | None,
                 protect: Sequence[tuple[str, Path]]) -> None:
        self.path = path
        self.kind = kind
        self._fd: int | None = fd
        #: The marker of the earlier run found in the folder (``None`` for a new or empty folder).
        self.marker = marker
        self.protect = list(protect)
        self.run = uuid.uuid4().hex

    # -- the marker ------------------------------------------------------------------------------

    def begin(self, identity: dict[str, Any], trees: Sequence[str], groups: Sequence[str]) -> None:
        """Write the marker (before anything else) for a new run with this identity and entries."""
        from .. import __version__

        marker = {
            "kind": self.kind,
            "run": self.run,
            "pid": os.getpid(),
            "version": __version__,
            "identity": identity,
            "trees": [_check_rel(t) for t in trees],
            "groups": [_check_rel(g) for g in groups],
        }
        atomic_write_json(self.path / MARKER, marker, what=f"the marker of {self.path}")
        self.marker = marker
        fault_point("output-marker-written")

    def clear(self) -> None:
        """Remove what the earlier run wrote (as its marker lists), and nothing else."""
        if self.marker is None:
            return
        trees = [_check_rel(str(t)) for t in self.marker.get("trees", []) if isinstance(t, str)]
        groups = [_check_rel(str(g)) for g in self.marker.get("groups", []) if isinstance(g, str)]
        for rel in trees:
            target = self.path / rel
            for label, p in self.protect:
                if _inside(p, target):
                    raise ScribbleUNetError(f"{target} holds the {label} {p}; refusing to remove it")
        try:
            for rel in trees:
                _remove_tree(self.path / rel)
            for rel in sorted(groups, key=lambda g: -len(Path(g).parts)):
                _remove_group(self.path / rel, keep_dir=(rel in ("", ".")))
        except OSError as err:
            raise ScribbleUNetError(
                f"cannot remove the earlier output in {self.path}: {describe_os_error(err)}"
            ) from err
        self.marker = None

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _remove_tree(target: Path) -> None:
    """Remove the zarr files under ``target`` (never following links); keep anything else."""
    if not os.path.lexists(target):
        return
    if target.is_symlink():
        raise ScribbleUNetError(f"{target} is a symbolic link scribble-unet did not write; remove it yourself")
    if not target.is_dir():
        if _is_our_file(target.name):
            target.unlink()
        return
    for dirpath, dirnames, filenames in os.walk(target, topdown=False, followlinks=False):
        d = Path(dirpath)
        for name in filenames:
            f = d / name
            if _is_our_file(name) and not f.is_symlink():
                f.unlink()
        for name in dirnames:
            sub = d / name
            if not sub.is_symlink():
                try:
                    sub.rmdir()
                except OSError:
                    pass  # holds something that is not ours
    try:
        target.rmdir()
    except OSError:
        pass


def _remove_group(target: Path, keep_dir: bool) -> None:
    if not target.is_dir() or target.is_symlink():
        return
    for name in _ZARR_META:
        f = target / name
        if f.is_file() and not f.is_symlink():
            f.unlink()
    if not keep_dir:
        try:
            target.rmdir()
        except OSError:
            pass


def claim_output(
    path: str | os.PathLike[str],
    kind: str,
    protect: Sequence[tuple[str, str | os.PathLike[str] | None]] = (),
    create_parents: bool = False,
) -> OutputClaim:
    """Lock ``path`` for a run writing an output of ``kind``, after checking it is ours to write.

    Returns a claim whose :attr:`~OutputClaim.marker` is the earlier run's marker (``None`` when the
    folder is new or empty). Raises :class:`ScribbleUNetError` (one line) when the folder is not ours,
    holds another kind of output, is a link, or is being written by another run.
    """
    out = Path(os.path.abspath(os.fspath(path)))
    guarded = [(label, Path(p)) for label, p in protect if p is not None]
    if out.is_symlink():
        raise ScribbleUNetError(f"output {out} is a symbolic link; give the folder it points to, or another path")
    if os.path.lexists(out) and not out.is_dir():
        raise ScribbleUNetError(f"output {out} exists and is a file, not an output folder; choose another path")
    for label, p in guarded:
        if _inside(out, p):
            raise ScribbleUNetError(f"output {out} lies inside the {label} {p}; choose another path")
    if out.is_dir():
        _refuse_if_not_ours(out, kind, read_json_capped(out / MARKER))
    parent = out.parent
    if not parent.is_dir():
        if not create_parents:
            raise ScribbleUNetError(f"output folder {parent} does not exist")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ScribbleUNetError(
                f"cannot write {out}: cannot create its folder {parent} ({describe_os_error(err)})"
            ) from err
    try:
        out.mkdir(exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, file_mode())
    except OSError as err:
        raise ScribbleUNetError(f"cannot write the output {out}: {describe_os_error(err)}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            owner = os.pread(fd, 64, 0).decode(errors="replace").split()[0]
        except (OSError, IndexError):
            owner = "?"
        os.close(fd)
        raise ScribbleUNetError(
            f"{out} is being written by another scribble-unet run (process {owner}); wait for it to finish"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        marker = read_json_capped(out / MARKER)  # again, under the lock
        _refuse_if_not_ours(out, kind, marker)
    except BaseException:
        os.close(fd)
        raise
    return OutputClaim(out, kind, fd, marker if isinstance(marker, dict) else None, guarded)


def _refuse_if_not_ours(out: Path, kind: str, marker: Any) -> None:
    if marker is None:
        if _stray_entries(out):
            if (out / MARKER).exists():
                raise ScribbleUNetError(
                    f"{out} has a damaged scribble-unet marker ({MARKER}); refusing to touch it, "
                    "choose another path"
                )
            raise ScribbleUNetError(
                f"{out} exists and is not a scribble-unet output (it has no {MARKER} marker); "
                "it is never replaced nor deleted, even with --overwrite: choose another path"
            )
        return
    if not isinstance(marker, dict) or not isinstance(marker.get("kind"), str):
        raise ScribbleUNetError(f"{out} has a damaged scribble-unet marker ({MARKER}); choose another path")
    if marker["kind"] != kind:
        have = KIND_WORDS.get(marker["kind"], marker["kind"])
        raise ScribbleUNetError(
            f"{out} holds {have} written by scribble-unet, not {KIND_WORDS.get(kind, kind)}; "
            "it is not replaced, choose another path"
        )
