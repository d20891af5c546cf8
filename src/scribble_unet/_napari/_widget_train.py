"""Train: model size and training settings, start / pause / stop, progress and a live plot."""

from __future__ import annotations

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

from ..state import TrainingState
from ._base import Tab, alive
from ._config_form import ConfigForm
from ._controller import Controller
from ._plot import LivePlot

TRAIN_FIELDS = ["steps", "time_budget", "batch_size", "lr", "tile", "validate_every", "checkpoint_every",
                "fg_share", "val_share", "loss", "seed", "device"]
MODEL_FIELDS = ["depth", "width", "norm"]


class TrainWidget(Tab):
    """Start, pause and stop training; watch the loss and the IoU on held-out strokes; save the model."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
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

        status = self.controller.state.training
        status.events.step.connect(self._on_step)
        status.events.iou.connect(self._on_iou)
        status.events.message.connect(self._on_message)
        status.events.state.connect(self._on_state)
        self._on_state(status.state)

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
            self.progress.setRange(0, train_config.steps or 0)
            self.progress.setValue(0)
            self.controller.start_training(model_config, train_config, self.init_edit.text().strip() or None)

        self.run_action(act, "could not start training")

    def toggle_pause(self) -> None:
        if self.controller.state.training.state is TrainingState.PAUSED:
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

    def _on_state(self, state: TrainingState) -> None:
        if not alive(self):
            return
        running = state in (TrainingState.RUNNING, TrainingState.PAUSED)
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.pause_button.setText("Resume" if state is TrainingState.PAUSED else "Pause")
        self.stop_button.setEnabled(running)
        self.model_form.setEnabled(not running)
        self.train_form.setEnabled(not running)

    def _on_step(self, step: int) -> None:
        status = self.controller.state.training
        if not alive(self) or status.loss is None:
            return
        self.plot.add_loss(step, status.loss)
        if status.max_steps:
            self.progress.setValue(min(step, self.progress.maximum()))
        self.info.setText(f"step {step}, loss {status.loss:.4f}, {status.elapsed:.0f} s")

    def _on_iou(self, iou: tuple[int, float] | None) -> None:
        if alive(self) and iou is not None:
            self.plot.add_iou(*iou)

    def _on_message(self, message: str) -> None:
        if alive(self) and message:
            self.info.setText(message)
