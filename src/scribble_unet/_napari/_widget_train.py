"""Train: what to find, how big it is, how long to train; start / pause / stop; the plot; Advanced.

The simple view holds what a biologist decides (the object classes, their size, the time budget,
whether to continue the current model). Everything else sits in a collapsed Advanced section,
generated from the shared configuration (:mod:`scribble_unet.config`).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..config import INTERACTIVE_TRAINING
from ..state import TrainingState
from ._base import Tab, alive
from ._config_form import ConfigForm
from ._controller import Controller
from ._plot import LivePlot

TRAIN_FIELDS = ["start", "steps", "batch_size", "lr", "tile", "validate_every", "checkpoint_every", "fg_share",
                "val_share", "consistency", "edge_weight", "loss", "seed", "device"]
MODEL_FIELDS = ["depth", "width", "norm", "filter_bank", "pixel_forest", "prior_shift", "snap_borders"]
DEFAULT_TIME_BUDGET = int(INTERACTIVE_TRAINING["time_budget"])

TIPS = {
    "classes": "The kinds of object the model should find, separated by commas (e.g. nucleus, mitosis).\n"
               "Paint them with labels 2, 3, ...; label 1 is background.",
    "size": "Typical object diameter in pixels (measure one with a line in napari).\n"
            "Auto: estimated from the image under your object strokes; the estimate is shown once training starts.",
    "time": "How long to train, in seconds (pauses do not count). No limit: train until you press Stop.",
    "continue": "Continue training the model in use, so nothing learnt so far is lost.\n"
                "Untick to start a new model from scratch (the current one stays in the project's models).",
    "start": "Train on your scribbles. The prediction layer updates as the model improves;\n"
             "keep painting or correcting meanwhile: new strokes are used from the next step on.",
    "pause": "Pause training (Resume goes on where it stopped).",
    "stop": "End training now; the model is saved in the project.",
    "models": "Models saved in the project, newest first; choose one to predict with and continue from it.",
    "save": "Save a copy of the model in use as a file, e.g. to use it on other images.",
    "advanced": "Settings of the network and of training for specialists; the defaults suit most images.",
    "browse": "Start from a model file made elsewhere instead of the project's model.",
    "correct": "Copy the prediction you see (up to 1024 x 1024 px) into an editable 'correction' layer.\n"
               "Fix it there: paint missed objects with their class, erase false ones with 0 (background).",
    "apply": "Turn the pixels you changed in the correction layer into scribbles, so the next training\n"
             "steps learn from them (Ctrl+Z on the scribbles layer undoes it).",
    "discard": "Remove the correction layer without changing the scribbles.",
}


class TrainWidget(Tab):
    """Start, pause and stop training; watch the loss and the IoU on held-out strokes; pick the model."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        from ..model.unet import ModelConfig
        from ..training.trainer import TrainConfig

        self.classes_edit = QLineEdit(", ".join(controller.class_names))
        self.classes_edit.editingFinished.connect(self._set_classes)
        self.size_spin = _spin(0, 10_000, 0, "auto", " px")
        self.size_note = QLabel("")
        self.time_spin = _spin(0, 7 * 24 * 3600, DEFAULT_TIME_BUDGET, "no limit", " s")
        self.continue_check = QCheckBox("Continue from the current model")
        self.continue_check.setChecked(True)
        self.models_combo = QComboBox()
        self.models_combo.activated.connect(self._use_model)
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        self.correct_button = QPushButton("Correct here")
        self.apply_button = QPushButton("Add to scribbles")
        self.discard_button = QPushButton("Discard")
        self.correct_button.clicked.connect(self.correct_here)
        self.apply_button.clicked.connect(self.apply_correction)
        self.discard_button.clicked.connect(self.discard_correction)
        self.progress = QProgressBar()
        self.plot = LivePlot()
        self.info = QLabel("")
        self.info.setWordWrap(True)

        # Advanced, collapsed
        self.model_form = ConfigForm(ModelConfig, MODEL_FIELDS)
        self.train_form = ConfigForm(TrainConfig, TRAIN_FIELDS, TrainConfig(**INTERACTIVE_TRAINING),
                                     none_text={"tile": "auto", "steps": "no limit"})
        self.init_edit = QLineEdit()
        self.init_edit.setPlaceholderText("another model file to start from (optional)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.save_button = QPushButton("Save model as…")
        self.save_button.clicked.connect(self._save_dialog)
        self.advanced_button = QToolButton()
        self.advanced_button.setText("Advanced")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(_text_beside_icon())
        self.advanced = QWidget()
        self.advanced_button.toggled.connect(self._show_advanced)
        self._show_advanced(False)

        for w, key in ((self.classes_edit, "classes"), (self.size_spin, "size"), (self.time_spin, "time"),
                       (self.continue_check, "continue"), (self.start_button, "start"),
                       (self.pause_button, "pause"), (self.stop_button, "stop"), (self.models_combo, "models"),
                       (self.save_button, "save"), (self.correct_button, "correct"),
                       (self.apply_button, "apply"), (self.discard_button, "discard"), (self.advanced_button, "advanced"), (browse, "browse"),
                       (self.init_edit, "browse")):
            w.setToolTip(TIPS[key])

        simple = QFormLayout()
        simple.addRow("Object classes", self.classes_edit)
        size_row = QHBoxLayout()
        size_row.addWidget(self.size_spin)
        size_row.addWidget(self.size_note, 1)
        simple.addRow("Object size", size_row)
        simple.addRow("Train for", self.time_spin)
        simple.addRow("Model", self.models_combo)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(b)
        init_row = QHBoxLayout()
        init_row.addWidget(self.init_edit)
        init_row.addWidget(browse)
        adv = QVBoxLayout(self.advanced)
        adv.setContentsMargins(12, 0, 0, 0)
        adv.addWidget(QLabel("Network"))
        adv.addWidget(self.model_form)
        adv.addWidget(QLabel("Training"))
        adv.addWidget(self.train_form)
        adv.addLayout(init_row)
        adv.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(simple)
        layout.addWidget(self.continue_check)
        layout.addLayout(buttons)
        correct = QHBoxLayout()
        for b in (self.correct_button, self.apply_button, self.discard_button):
            correct.addWidget(b)
        layout.addLayout(correct)
        layout.addWidget(self.progress)
        layout.addWidget(self.plot)
        layout.addWidget(self.info)
        layout.addWidget(self.advanced_button)
        layout.addWidget(self.advanced)
        layout.addStretch(1)

        status = self.controller.state.training
        status.events.step.connect(self._on_step)
        status.events.iou.connect(self._on_iou)
        status.events.message.connect(self._on_message)
        status.events.state.connect(self._on_state)
        status.events.history_version.connect(self._on_history)
        status.events.diameter.connect(self._on_diameter)
        status.events.versions.connect(self._on_models)
        status.events.model_label.connect(self._on_models)
        session = self.controller.state.session
        session.events.class_names.connect(self._on_class_names)
        session.events.project.connect(self._restore_settings)
        self._on_state(status.state)
        self._on_models()
        self._on_correction()

    # ------------------------------------------------------------------ intents
    def start(self) -> None:
        """Start training with the settings shown (continuing the current model if ticked)."""
        def act() -> None:
            from ..model.checkpoint import load_checkpoint
            from ..training.trainer import config_for_init

            ctrl = self.controller
            names = tuple(ctrl.class_names)
            init: Any = None
            if self.init_edit.text().strip():
                init = load_checkpoint(self.init_edit.text().strip())
            elif self.continue_check.isChecked() and ctrl.checkpoint is not None:
                init = ctrl.checkpoint
            if init is not None:
                model_config = config_for_init(init, names)
            else:
                model_config = self.model_form.value(n_classes=len(names), class_names=names)
            budget = self.time_spin.value() or None
            size = self.size_spin.value() or None
            train_config = self.train_form.value(time_budget=None if budget is None else float(budget),
                                                 object_diameter=None if size is None else float(size))
            if train_config.time_budget is not None:
                self.progress.setRange(0, int(train_config.time_budget))
                self.progress.setFormat("%v of %m s")
            elif train_config.steps is not None:
                self.progress.setRange(0, train_config.steps)
                self.progress.setFormat("step %v of %m")
            else:
                self.progress.setRange(0, 0)  # until stopped: a busy bar
            self.progress.setValue(0)
            self.plot.held_out = train_config.val_share > 0
            self.plot.update()
            ctrl.start_training(model_config, train_config, init)

        self.run_action(act, "could not start training")

    def correct_here(self) -> None:
        """Copy the prediction in view into the correction layer, for the user to fix."""
        def act() -> None:
            self.controller.begin_correction()
            self.info.setText("Fix the prediction in the 'correction' layer (0 erases to background), "
                              "then press 'Add to scribbles'.")
            self._on_correction()

        self.run_action(act, "could not start a correction")

    def apply_correction(self) -> None:
        self.run_action(self.controller.apply_correction, "could not add the correction")
        self._on_correction()

    def discard_correction(self) -> None:
        self.controller.cancel_correction()
        self._on_correction()

    def _on_correction(self) -> None:
        open_ = self.controller.correction_layer is not None
        self.apply_button.setEnabled(open_)
        self.discard_button.setEnabled(open_)

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

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model to start from", "", "Models (*.safetensors)")
        if path:
            self.init_edit.setText(path)

    def _set_classes(self) -> None:
        names = [n.strip() for n in self.classes_edit.text().split(",") if n.strip()]
        if names != list(self.controller.class_names):
            self.run_action(lambda: self.controller.set_class_names(names), "could not rename the classes")

    def _use_model(self, index: int) -> None:
        file = self.models_combo.itemData(index)
        if file and file != self.controller.state.training.model_file:
            self.run_action(lambda: self.controller.use_model(file), "could not use that model")

    def _show_advanced(self, shown: bool) -> None:
        from qtpy.QtCore import Qt

        self.advanced.setVisible(shown)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    # ------------------------------------------------------------------ rendering
    def _restore_settings(self, *args: Any) -> None:
        """Show the settings of the project's last run (a reopened project trains as before)."""
        project = self.controller.project
        if not alive(self) or project is None:
            return
        train, model = project.run_config.get("train", {}), project.run_config.get("model", {})
        for form, values in ((self.train_form, train), (self.model_form, model)):
            for name, value in values.items():
                if name in form.editors:
                    try:
                        form.set_value(name, value)
                    except (TypeError, ValueError):
                        pass  # a value the editor cannot show keeps the default
        if "time_budget" in train:
            self.time_spin.setValue(int(train["time_budget"] or 0))
        if "object_diameter" in train:
            self.size_spin.setValue(round(train["object_diameter"] or 0))

    def _on_state(self, state: TrainingState) -> None:
        if not alive(self):
            return
        running = state in (TrainingState.RUNNING, TrainingState.PAUSED)
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.pause_button.setText("Resume" if state is TrainingState.PAUSED else "Pause")
        self.stop_button.setEnabled(running)
        for w in (self.model_form, self.train_form, self.size_spin, self.time_spin, self.continue_check,
                  self.models_combo, self.classes_edit):
            w.setEnabled(not running)
        if not running:
            self._on_models()

    def _on_step(self, step: int) -> None:
        status = self.controller.state.training
        if not alive(self) or status.loss is None:
            return
        self.plot.add_loss(status.base_step + step, status.loss)
        if status.time_budget:
            self.progress.setValue(min(int(status.elapsed), self.progress.maximum()))
        elif self.progress.maximum() > 0:
            self.progress.setValue(min(step, self.progress.maximum()))
        self.info.setText(f"step {status.base_step + step} ({step} in this run), {status.elapsed:.0f} s")

    def _on_iou(self, iou: tuple[int, float] | None) -> None:
        if alive(self) and iou is not None:
            self.plot.add_iou(*iou)

    def _on_history(self, *args: Any) -> None:
        history = self.controller.state.training.history
        if alive(self):
            self.plot.set_points(history.loss, history.iou)

    def _on_diameter(self, diameter: float | None) -> None:
        if alive(self):
            auto = self.size_spin.value() == 0
            self.size_note.setText(f"estimated: {diameter:.0f} px" if diameter and auto else "")

    def _on_message(self, message: str) -> None:
        if alive(self) and message:
            self.info.setText(message)
            status = self.controller.state.training
            if self.progress.maximum() == 0:
                self.progress.setRange(0, 1)
                self.progress.setValue(1)
            elif status.time_budget:  # the time after the last step (validation, saving) counts too
                self.progress.setValue(min(int(status.elapsed), self.progress.maximum()))

    def _on_class_names(self, names: tuple[str, ...]) -> None:
        if alive(self):
            self.classes_edit.setText(", ".join(names))

    def _on_models(self, *args: Any) -> None:
        if not alive(self):
            return
        status = self.controller.state.training
        self.models_combo.clear()
        if not status.versions and status.model_label:
            self.models_combo.addItem(status.model_label + " (in use)", status.model_file)
        for file, label in status.versions:
            self.models_combo.addItem(label + (" (in use)" if file == status.model_file else ""), file)
        if self.models_combo.count() == 0:
            self.models_combo.addItem("none yet: Start trains a new model", None)
        index = self.models_combo.findData(status.model_file)
        self.models_combo.setCurrentIndex(max(0, index))
        has_model = self.controller.checkpoint is not None
        running = status.state is not TrainingState.IDLE
        self.continue_check.setEnabled(has_model and not running)
        self.continue_check.setText(f"Continue from the current model ({status.model_label})" if has_model
                                    else "Continue from the current model (none yet)")


def _spin(lo: int, hi: int, value: int, special: str, suffix: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setValue(value)
    spin.setSpecialValueText(special)
    spin.setSuffix(suffix)
    return spin


def _text_beside_icon() -> Any:
    from qtpy.QtCore import Qt

    return Qt.ToolButtonStyle.ToolButtonTextBesideIcon
