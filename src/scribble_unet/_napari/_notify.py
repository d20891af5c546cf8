"""Notifications in napari's corner, and errors from workers in plain words."""

from __future__ import annotations

import re

from ..errors import ScribbleUNetError

GUI_WORDS = {"--classes": "in the Object classes field", "--nan-policy": "with the command line's --nan-policy"}
"""What a command-line option in a core message means in the widget."""


def gui_words(message: str) -> str:
    """A core message in the widget's words: ``declare more classes (--classes)`` names the field."""
    def swap(m: re.Match[str]) -> str:
        option = m.group(1)
        return f" ({GUI_WORDS[option]})" if option in GUI_WORDS else ""

    return re.sub(r" \((--[a-z-]+)[^)]*\)", swap, message)


def notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def plain(e: BaseException) -> str:
    """A one-line, plain-words description of an error from a worker."""
    if isinstance(e, ScribbleUNetError):
        return gui_words(str(e))
    if isinstance(e, MemoryError):
        return "out of memory; try a smaller model, batch or tile"
    if isinstance(e, OSError):
        return f"{e.strerror or e} ({e.filename})" if e.filename else str(e)
    return f"{type(e).__name__}: {e}"
