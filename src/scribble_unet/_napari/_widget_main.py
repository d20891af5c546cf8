"""The Scribble U-Net dock widget: one tab per step, in the order a user works.

Data, Train, Predict, Export. The widget makes the viewer's :class:`~._controller.Controller`
and hands it to its tabs; the controller's jobs stop when the widget or napari's window closes.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from ._controller import Controller
from ._display import warm_up
from ._widget_data import DataWidget
from ._widget_export import ExportWidget
from ._widget_predict import PredictWidget
from ._widget_train import TrainWidget


class _CloseWatcher(QObject):
    """Stops a controller's jobs when the window it watches (napari's main window) closes."""

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        if event is not None and event.type() == QEvent.Type.Close:
            self.controller.shutdown()
        return False


class MainWidget(QWidget):
    """Tabs holding the Data, Train, Predict and Export steps, around one controller."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = ctrl = Controller(napari_viewer)
        warm_up()  # imports the first image open needs, off the GUI thread
        self.viewer = ctrl.viewer
        self.data = DataWidget(ctrl)
        self.train = TrainWidget(ctrl)
        self.predict = PredictWidget(ctrl)
        self.export = ExportWidget(ctrl)
        self.tabs = QTabWidget()
        for w, name in ((self.data, "Data"), (self.train, "Train"), (self.predict, "Predict"),
                        (self.export, "Export")):
            self.tabs.addTab(w, name)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        # A plain function (not a bound method of this widget) so that it still runs after the
        # C++ widget is gone.
        self.destroyed.connect(lambda *_: ctrl.shutdown())
        self._close_watcher = _CloseWatcher(ctrl)
        window = getattr(getattr(ctrl.viewer, "window", None), "_qt_window", None)
        self._watched: set[int] = set()
        if window is not None:
            self._watch(window)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        window = self.window()
        if window is not self and window is not None:
            self._watch(window)

    def _watch(self, window: QWidget) -> None:
        if id(window) not in self._watched:
            self._watched.add(id(window))
            window.installEventFilter(self._close_watcher)

    def closeEvent(self, event: Any) -> None:
        self.controller.shutdown()
        super().closeEvent(event)
