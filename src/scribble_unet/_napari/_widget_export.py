"""Export: the whole image's mask to an OME-Zarr label image, in the background, resumable."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..state import ExportState
from ._base import Tab, alive
from ._controller import Controller


class ExportWidget(Tab):
    """Export with a progress bar; cancel keeps finished chunks and exporting again resumes."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("output .zarr (default: export.zarr in the project)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.proba_check = QCheckBox("also write probabilities")
        self.overwrite_check = QCheckBox("replace an export made with another model")
        self.export_button = QPushButton("Export")
        self.cancel_button = QPushButton("Cancel")
        self.export_button.clicked.connect(self.export)
        self.cancel_button.clicked.connect(self.controller.cancel_export)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.proba_check)
        layout.addWidget(self.overwrite_check)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
        status = self.controller.state.export
        status.events.done.connect(self._on_progress)
        status.events.total.connect(self._on_progress)
        status.events.state.connect(self._on_state)
        self._on_state(status.state)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export to", "export.zarr", "Zarr (*.zarr)")
        if path:
            self.path_edit.setText(path)

    def output_path(self) -> str:
        text = self.path_edit.text().strip()
        if text:
            return text
        project = self.controller.project
        return str(project.export_path) if project is not None else "export.zarr"

    def export(self) -> None:
        def act() -> None:
            self.progress.setValue(0)
            self.controller.start_export(self.output_path(), probabilities=self.proba_check.isChecked(),
                                         overwrite=self.overwrite_check.isChecked())

        self.run_action(act, "could not export")

    def _on_progress(self, *args: Any) -> None:
        status = self.controller.state.export
        done, total = status.done, status.total
        if alive(self) and total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.status.setText(f"{done} of {total} chunks")

    def _on_state(self, state: ExportState) -> None:
        if not alive(self):
            return
        running = state is ExportState.RUNNING
        self.export_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if state in (ExportState.DONE, ExportState.CANCELLED, ExportState.FAILED):
            self.status.setText(f"export {state.value}"
                                + (": export again to resume" if state is ExportState.CANCELLED else ""))
