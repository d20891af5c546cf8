"""Train: model size and training settings, start / pause / stop, progress and a live plot."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._base import ControllerWidget, alive
from ._config_form import ConfigForm
from ._plot import LivePlot

TRAIN_FIELDS = ["steps", "time_budget", "batch_size", "lr", "tile", "validate_every", "checkpoint_every",
                "fg_share", "val_share", "loss", "seed", "device"]
MODEL_FIELDS = ["depth", "width", "norm"]


class TrainWidget(ControllerWidget):
    """Start, pause and stop training; watch the loss and the IoU on held-out strokes; save the model."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent)
        from ..config import INTERACTIVE_TRAINING
        from ..model.unet import ModelConfig
        from ..training.trainer import TrainConfig

        self.model_form = ConfigForm(ModelConfig, MODEL_FIELDS)
        self.train_form = ConfigForm(TrainConfig, TRAIN_FIELDS,
                                     TrainConfig(**INTERACTIVE_TRAINING),
                                     none_text={"tile": "auto", "time_budget": "none", "steps": "none"})
        self.init_edit = QLineEdit()
        self.init_edit.setPlaceholderText("fine-tune this model (empty: from scratch)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.save_button = QPushButton("Save model…")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self._save_dialog)
        self.progress = QProgressBar()
        self.plot = LivePlot()
        self.info = QLabel("")
        self.info.setWordWrap(True)

        init_row = QHBoxLayout()
        init_row.addWidget(self.init_edit)
        init_row.addWidget(browse)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button, self.save_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Model"))
        layout.addWidget(self.model_form)
        layout.addWidget(QLabel("Training"))
        layout.addWidget(self.train_form)
        layout.addLayout(init_row)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.plot)
        layout.addWidget(self.info)
        layout.addStretch(1)

        self.controller.train_event.connect(self._on_event)
        self.controller.training_state.connect(self._on_state)
        self._on_state("idle")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model to fine-tune", "", "Models (*.safetensors)")
        if path:
            self.init_edit.setText(path)

    def start(self) -> None:
        """Start training with the settings in the form."""
        def act() -> None:
            from ..model.unet import ModelConfig

            names = tuple(self.controller.class_names)
            model_config = self.model_form.value(n_classes=len(names), class_names=names)
            model_config = ModelConfig(**{**model_config.__dict__})
            train_config = self.train_form.value()
            self.plot.clear()
            self._steps = train_config.steps
            self.progress.setRange(0, train_config.steps or 0)
            self.progress.setValue(0)
            self.controller.start_training(model_config, train_config, self.init_edit.text().strip() or None)

        self.run_action(act, "could not start training")

    def toggle_pause(self) -> None:
        trainer = self.controller.trainer
        if trainer is None:
            return
        if trainer.paused:
            self.controller.resume_training()
        else:
            self.controller.pause_training()

    def stop(self) -> None:
        self.controller.stop_training()

    def save_model(self, path: str) -> None:
        self.run_action(lambda: self.controller.save_model(path), "could not save the model")

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save model", "model.safetensors", "Models (*.safetensors)")
        if path:
            self.save_model(path)

    def _on_state(self, state: str) -> None:
        if not alive(self):
            return
        running = state in ("running", "paused")
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.pause_button.setText("Resume" if state == "paused" else "Pause")
        self.stop_button.setEnabled(running)
        self.model_form.setEnabled(not running)
        self.train_form.setEnabled(not running)

    def _on_event(self, event: Any) -> None:
        if not alive(self):
            return
        from ..training.trainer import FinishedEvent, StepEvent, ValidationEvent

        if isinstance(event, StepEvent):
            self.plot.add_loss(event.step, event.loss)
            if getattr(self, "_steps", None):
                self.progress.setValue(min(event.step, self.progress.maximum()))
            self.info.setText(f"step {event.step}, loss {event.loss:.4f}, {event.elapsed:.0f} s")
        elif isinstance(event, ValidationEvent) and event.iou:
            objects = [v for k, v in event.iou.items() if k != "background"] or list(event.iou.values())
            self.plot.add_iou(event.step, sum(objects) / len(objects))
        elif isinstance(event, FinishedEvent):
            self.info.setText(f"finished after {event.step} steps ({event.reason})")
