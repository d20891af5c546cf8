"""What every tab of the Scribble U-Net widget shares: its controller and error reporting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QWidget

from ..errors import ScribbleUNetError
from ._controller import Controller
from ._notify import gui_words, plain
from ._notify import notify_error as _notify_error


class Tab(QWidget):
    """A tab: renders the controller's state and sends the user's intents to the controller."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.viewer = controller.viewer

    def run_action(self, action: Callable[[], Any], what: str) -> Any:
        """Run ``action``; user errors become a notification saying what could not be done."""
        try:
            return action()
        except ScribbleUNetError as e:
            _notify_error(f"{what}: {gui_words(str(e))}")
        except OSError as e:
            _notify_error(f"{what}: {plain(e)}")
        return None


def alive(widget: QWidget) -> bool:
    """Whether the C++ side of ``widget`` still exists (signals may outlive it)."""
    try:
        widget.objectName()
    except RuntimeError:
        return False
    return True
