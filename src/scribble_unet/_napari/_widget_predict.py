"""Predict: the live prediction of the visible field of view, its pause control, the uncertainty and
objects layers and "next region to check"."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
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
    """Load a model, pause or resume the live view, and see what it is doing."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        live_view = controller.live_view
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(64, 4096)
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setValue(self.controller.state.prediction.tile)
        self.tile_spin.setToolTip("side of a live prediction chunk (px), rounded to the model's grid")
        self.tile_spin.valueChanged.connect(self._set_tile)
        self.load_button = QPushButton("Load model…")
        self.load_button.clicked.connect(self._load_dialog)
        self.pause_button = QPushButton("Pause live view")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("paused, nothing is predicted and training has the whole machine")
        self.pause_button.toggled.connect(self.set_paused)
        self.refresh_button = QPushButton("Predict the view now")
        self.refresh_button.clicked.connect(self.refresh)
        self.uncertainty_check = QCheckBox("Show uncertainty")
        self.uncertainty_check.setToolTip("how undecided the model is, from the same chunks as the prediction")
        self.uncertainty_check.toggled.connect(self.set_show_uncertainty)
        self.next_button = QPushButton("Next region to check")
        self.next_button.setToolTip("jump to the most uncertain predicted region that has no scribbles yet")
        self.next_button.clicked.connect(self.next_region)
        self.objects_check = QCheckBox("Show objects")
        self.objects_check.setToolTip("label the objects of the mask in view (recomputed as the view changes)")
        self.split_check = QCheckBox("Split touching objects")
        self.diameter_spin = QDoubleSpinBox()
        self.diameter_spin.setRange(2.0, 1000.0)
        self.diameter_spin.setValue(20.0)
        self.diameter_spin.setSuffix(" px")
        for check in (self.objects_check, self.split_check):
            check.toggled.connect(self._objects_changed)
        self.diameter_spin.valueChanged.connect(self._objects_changed)
        self.status = QLabel("no model yet: train one or load one")
        self.status.setWordWrap(True)
        self.objects_status = QLabel("")
        self.objects_status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Chunk size", self.tile_spin)
        form.addRow("Object diameter", self.diameter_spin)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        widgets: list[QWidget] = [self.load_button, self.pause_button, self.refresh_button, self.uncertainty_check,
                                  self.next_button, self.objects_check, self.split_check, self.status,
                                  self.objects_status]
        for w in widgets:
            layout.addWidget(w)
        layout.addStretch(1)
        status = self.controller.state.prediction
        for signal in (status.events.model_token, status.events.computed, status.events.pending,
                       status.events.missing, status.events.zoomed_out, status.events.live_paused):
            signal.connect(self._update_status)
        status.events.objects.connect(self._update_objects)
        self._live_view = live_view

    def _set_tile(self, value: int) -> None:
        self.controller.set_live_tile(int(value))

    def set_paused(self, paused: bool) -> None:
        self._live_view.set_paused(bool(paused))
        self.pause_button.setText("Resume live view" if paused else "Pause live view")

    def set_show_uncertainty(self, show: bool) -> None:
        self.run_action(lambda: self._live_view.set_show_uncertainty(bool(show)), "could not show the uncertainty")

    def next_region(self) -> Any:
        return self.run_action(self._live_view.next_region, "no region to check")

    def _objects_changed(self, *args: Any) -> None:
        show, split = self.objects_check.isChecked(), self.split_check.isChecked()
        self.run_action(lambda: self._live_view.set_objects(show, split, self.diameter_spin.value()),
                        "could not show the objects")

    def load_model(self, path: str) -> None:
        self.run_action(lambda: self.controller.load_model(path), "could not load the model")

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model", "", "Models (*.safetensors)")
        if path:
            self.load_model(path)

    def refresh(self) -> None:
        self.controller.refresh_view()

    def _update_objects(self, text: str) -> None:
        if alive(self):
            self.objects_status.setText(text)

    def _update_status(self, *args: Any) -> None:
        if not alive(self):
            return
        status = self.controller.state.prediction
        if status.model_token is None:
            return
        steps = status.model_steps
        text = (f"model {status.model_token[:8]}" + (f" ({steps} steps)" if steps is not None else "")
                + f": {status.computed_for_model} chunk(s) computed")
        if status.live_paused:
            text += "; live view paused (what is shown may be older)"
        elif status.zoomed_out:
            text += "; zoomed out: only chunks computed earlier are shown, the rest is blank: zoom in to predict"
        else:
            text += f", {status.pending} waiting in view ({status.missing} not predicted yet)"
        self.status.setText(text)
