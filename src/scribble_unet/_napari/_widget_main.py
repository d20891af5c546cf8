"""All four steps in one dock widget, in the order a user works: Data, Train, Predict, Export."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from ._base import ControllerWidget
from ._widget_data import DataWidget
from ._widget_export import ExportWidget
from ._widget_predict import PredictWidget
from ._widget_train import TrainWidget


class MainWidget(ControllerWidget):
    """Tabs holding the Data, Train, Predict and Export widgets, sharing one controller."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent)
        self.data = DataWidget(napari_viewer)
        self.train = TrainWidget(napari_viewer)
        self.predict = PredictWidget(napari_viewer)
        self.export = ExportWidget(napari_viewer)
        self.tabs = QTabWidget()
        for w, name in ((self.data, "Data"), (self.train, "Train"), (self.predict, "Predict"),
                        (self.export, "Export")):
            self.tabs.addTab(w, name)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
