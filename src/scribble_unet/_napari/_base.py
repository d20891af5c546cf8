"""What every dock widget shares: its controller, error reporting, and stopping workers on close."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget

from ..errors import ScribbleUNetError
from ._controller import Controller, _notify_error, _plain, controller_for


class _CloseWatcher(QObject):
    """Stops a controller's workers when the napari window closes."""

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Close:
            self.controller.shutdown()
        return False


class ControllerWidget(QWidget):
    """A dock widget bound to the viewer's shared :class:`Controller`."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.controller = controller_for(napari_viewer)
        ctrl = self.controller
        ctrl._widgets = getattr(ctrl, "_widgets", 0) + 1
        # A plain function (not a bound method of this widget) so that it still runs after the
        # C++ widget is gone; the last widget to go stops the workers.
        self.destroyed.connect(lambda *_: _release(ctrl))
        window = getattr(getattr(ctrl.viewer, "window", None), "_qt_window", None)
        if window is not None:
            self._watch(window)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        window = self.window()
        if window is not self:
            self._watch(window)

    def _watch(self, window: QWidget) -> None:
        """Stop the workers when ``window`` (napari's main window) closes; once per controller."""
        ctrl = self.controller
        if getattr(ctrl, "_close_watcher", None) is None:
            ctrl._close_watcher = _CloseWatcher(ctrl)
            window.installEventFilter(ctrl._close_watcher)

    def closeEvent(self, event: Any) -> None:
        self.controller.shutdown()
        super().closeEvent(event)

    def run_action(self, action: Callable[[], Any], what: str) -> Any:
        """Run ``action``; user errors become a notification saying what could not be done."""
        try:
            return action()
        except ScribbleUNetError as e:
            _notify_error(f"{what}: {e}")
        except OSError as e:
            _notify_error(f"{what}: {_plain(e)}")
        return None


def _release(ctrl: Controller) -> None:
    ctrl._widgets = getattr(ctrl, "_widgets", 1) - 1
    if ctrl._widgets <= 0:
        ctrl.shutdown()


def alive(widget: QWidget) -> bool:
    """Whether the C++ side of ``widget`` still exists (signals may outlive it)."""
    try:
        widget.objectName()
    except RuntimeError:
        return False
    return True
