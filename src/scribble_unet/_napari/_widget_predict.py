"""Predict: the live prediction of the visible field of view, refreshed on every new model."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._base import Tab, alive
from ._controller import Controller


class PredictWidget(Tab):
    """Load a model, choose the live chunk size, and see what the live prediction is doing."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(64, 4096)
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setValue(self.controller.state.prediction.tile)
        self.tile_spin.setToolTip("side of a live prediction chunk (px), rounded to the model's grid")
        self.tile_spin.valueChanged.connect(self._set_tile)
        self.load_button = QPushButton("Load model…")
        self.load_button.clicked.connect(self._load_dialog)
        self.refresh_button = QPushButton("Predict the view now")
        self.refresh_button.clicked.connect(self.refresh)
        self.status = QLabel("no model yet: train one or load one")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Chunk size", self.tile_spin)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.load_button)
        layout.addWidget(self.refresh_button)
        layout.addWidget(self.status)
        layout.addStretch(1)
        status = self.controller.state.prediction
        for signal in (status.events.model_token, status.events.computed, status.events.pending):
            signal.connect(self._update_status)

    def _set_tile(self, value: int) -> None:
        self.controller.set_live_tile(int(value))

    def load_model(self, path: str) -> None:
        self.run_action(lambda: self.controller.load_model(path), "could not load the model")

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model", "", "Models (*.safetensors)")
        if path:
            self.load_model(path)

    def refresh(self) -> None:
        self.controller.refresh_view()

    def _update_status(self, *args: Any) -> None:
        if not alive(self):
            return
        status = self.controller.state.prediction
        if status.model_token is None:
            return
        steps = status.model_steps
        self.status.setText(
            f"model {status.model_token[:8]}" + (f" ({steps} steps)" if steps is not None else "")
            + f": {status.computed_for_model} chunk(s) computed, {status.pending} waiting in view"
        )
