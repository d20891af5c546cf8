"""Notifications in napari's corner, and errors from workers in plain words."""

from __future__ import annotations

from ..errors import ScribbleUNetError


def notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def plain(e: BaseException) -> str:
    """A one-line, plain-words description of an error from a worker."""
    if isinstance(e, ScribbleUNetError):
        return str(e)
    if isinstance(e, MemoryError):
        return "out of memory; try a smaller model, batch or tile"
    if isinstance(e, OSError):
        return f"{e.strerror or e} ({e.filename})" if e.filename else str(e)
    return f"{type(e).__name__}: {e}"
