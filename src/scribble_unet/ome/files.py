"""One writer for whole files: temporary file in the same folder, fsync, rename.

Every file this package writes as a whole (models, markers, zarr attributes it owns, project files)
goes through :func:`atomic_write`, so a crash, a ``kill -9`` or a full disk leaves either the previous
file or the new one, never half of one:

* the temporary file ``.<name>.<pid>.tmp`` lives in the target's folder (a rename across file systems
  would not be atomic), is fsynced, then renamed over the target, and the folder is fsynced;
* its permissions follow the user's umask (``0666 & ~umask``), like a file opened with ``open()``;
* a failure (disk full, permission) removes the temporary file and raises one
  :class:`~scribble_unet.errors.ScribbleUNetError` line; the previous file stays intact;
* temporary files left by a killed run are removed by the next write to the same target
  (:func:`remove_stale_temporaries`), once their process is gone.

:func:`fault_point` is the fault-injection hook of the test suite (``tests/faults``): when the
environment variable ``SCRIBBLE_UNET_FAULT`` names a point (``name`` or ``name:N`` for its N-th
passage), the process kills itself with SIGKILL there. It costs one dictionary lookup otherwise.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ScribbleUNetError

FAULT_ENV = "SCRIBBLE_UNET_FAULT"
_fault_counts: dict[str, int] = {}
_fault_lock = threading.Lock()
_umask: int | None = None


def fault_point(name: str) -> None:
    """Kill this process (SIGKILL) here if ``SCRIBBLE_UNET_FAULT`` names this point (tests only)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    with _fault_lock:
        _fault_counts[name] = _fault_counts.get(name, 0) + 1
        hit = _fault_counts[name] == (int(nth) if nth else 1)
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)


def file_mode() -> int:
    """Permissions of a new file under the user's umask (read once; ``os.umask`` has no getter)."""
    global _umask
    if _umask is None:
        current = os.umask(0o022)
        os.umask(current)
        _umask = current
    return 0o666 & ~_umask


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def temporary_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident() % 100000}.tmp"


def remove_stale_temporaries(path: Path) -> int:
    """Remove ``.<name>.<pid>.*.tmp`` files next to ``path`` whose process is gone; returns how many."""
    removed = 0
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return 0
    prefix = f".{path.name}."
    for p in entries:
        n = p.name
        if not (n.startswith(prefix) and n.endswith(".tmp")):
            continue
        pid_text = n[len(prefix):].split(".", 1)[0]
        if pid_text.isdigit() and pid_alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue  # another live run is writing it
        if pid_text.isdigit() and int(pid_text) == os.getpid():
            continue
        try:
            if p.is_file() and not p.is_symlink():
                p.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def describe_os_error(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    if err.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return err.strerror or str(err)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | Callable[[Path], None], what: str = "") -> Path:
    """Write ``data`` (bytes, or a function that writes a file at the path it is given) to ``path``.

    The target is replaced only once the new content is complete and on disk. Raises
    :class:`ScribbleUNetError` (one line, the previous file intact) when it cannot be written.
    """
    path = Path(path)
    label = what or str(path)
    if path.is_symlink():
        raise ScribbleUNetError(f"{label} is a symbolic link; refusing to replace it")
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    try:
        if callable(data):
            data(tmp)
            fd = os.open(tmp, os.O_RDWR)
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        try:
            os.fchmod(fd, file_mode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fault_point("atomic-before-rename")
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(err, OSError):
            raise ScribbleUNetError(
                f"cannot write {label}: {describe_os_error(err)}; the previous file (if any) is intact"
            ) from err
        if isinstance(err, Exception) and callable(data) and not isinstance(err, ScribbleUNetError):
            # a library's own error type (safetensors raises SafetensorError on a full disk)
            text = " ".join(str(err).split())[:160]
            raise ScribbleUNetError(
                f"cannot write {label}: {text}; the previous file (if any) is intact"
            ) from err
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | os.PathLike[str], obj: Any, what: str = "") -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, allow_nan=False).encode(), what)


def read_json_capped(path: Path, limit: int = 1 << 20, max_depth: int = 64) -> Any:
    """Parse a small JSON file written by this package; ``None`` if it is missing, too big, or damaged."""
    try:
        if path.is_symlink() or path.stat().st_size > limit:
            return None
        text = path.read_bytes()
        obj = json.loads(text)
    except (OSError, ValueError, RecursionError):
        return None
    return obj if json_depth(obj) <= max_depth else None


def json_depth(obj: Any) -> int:
    """Nesting depth of a decoded JSON value (iterative: a deep value cannot exhaust the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, d = stack.pop()
        if isinstance(value, dict):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in value.values())
        elif isinstance(value, list):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in value)
    return deepest
