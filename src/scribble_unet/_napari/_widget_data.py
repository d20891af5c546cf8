"""Data: choose the image, create or open the scribble project, name the classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..classes import LabelScheme
from ._base import Tab, alive
from ._controller import Controller


class DataWidget(Tab):
    """Image layer, project folder (scribbles on disk as painted) and class names."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self.image_combo = QComboBox()
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("project folder (scribbles, models, exports)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.classes_edit = QLineEdit(", ".join(self.controller.class_names))
        self.classes_edit.setToolTip("The kinds of object to find, separated by commas (e.g. nucleus, mitosis);\n"
                                     "they are painted with labels 2, 3, ... (1 is background). A project\n"
                                     "that already exists keeps its own classes.")
        self.classes_edit.editingFinished.connect(self._set_classes)
        self.image_combo.setToolTip("The image to paint on, train on and predict.")
        self.folder_edit.setToolTip("A folder for this image's work: scribbles (saved as you paint), models "
                                    "and exports.\nChoose an existing project folder to go on where you left off.")
        browse.setToolTip("Choose the project folder.")
        self.open_button = QPushButton("Create / open scribbles")
        self.open_button.setToolTip("Open the project folder (or create it) and show its scribbles layer "
                                    "to paint on.\nA project made before comes back with its classes, "
                                    "model and training plot.")
        self.open_button.clicked.connect(self.open_project)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.folder_edit)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Project", row)
        form.addRow("Classes", self.classes_edit)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.open_button)
        layout.addWidget(self.legend)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        session = self.controller.state.session
        session.events.message.connect(self._on_status)
        session.events.class_names.connect(self._on_class_names)
        self._refresh_layers()
        self._update_legend()

    def _refresh_layers(self, event: Any = None) -> None:
        if not alive(self):
            return
        current = self.image_combo.currentText()
        names = [ly.name for ly in self.controller.image_layers()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder")
        if folder:
            self.folder_edit.setText(folder)

    def _on_status(self, text: str) -> None:
        if alive(self):
            self.status.setText(text)

    def _on_class_names(self, names: tuple[str, ...]) -> None:
        if alive(self):
            self.classes_edit.setText(", ".join(names))
            self._update_legend()

    def _update_legend(self) -> None:
        scheme = LabelScheme(self.controller.class_names)
        self.legend.setText("Paint labels: " + scheme.describe(unlabelled="erase"))

    def _set_classes(self) -> None:
        names = self.class_names()
        if self.controller.project is not None and names and names != self.controller.class_names:
            self.run_action(lambda: self.controller.set_class_names(names), "could not rename the classes")

    def class_names(self) -> list[str]:
        return [n.strip() for n in self.classes_edit.text().split(",") if n.strip()]

    def open_project(self) -> None:
        """Use the chosen image and open (or create) the project folder."""
        name = self.image_combo.currentText()

        def act() -> None:
            from ..errors import ScribbleUNetError

            if not name:
                raise ScribbleUNetError("add an image layer first")
            folder = self.folder_edit.text().strip()
            if not folder:
                raise ScribbleUNetError("choose a project folder")
            self.controller.set_image_layer(self.viewer.layers[name])
            # a new project takes the names typed here; one that exists keeps (and shows) its own
            self.controller.open_project(Path(folder).expanduser(), self.class_names() or None)

        self.run_action(act, "could not open the scribbles")
