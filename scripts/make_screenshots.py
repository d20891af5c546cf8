"""Screenshots of the Scribble U-Net widgets during a real run, for docs/user-guide.md.

Run headless (needs Xvfb with Qt's xcb backend, not ``offscreen``)::

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/make_screenshots.py

It opens the built-in nuclei image, paints scribbles programmatically (as a user would with the
brush), trains a small model for a few dozen steps while the live prediction follows, exports the
mask, and writes ``docs/images/*.png``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _wait(app, cond: Callable[[], bool], timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out waiting for {what}")


def _paint(layer, instances: np.ndarray) -> None:
    from scipy import ndimage as ndi

    near = ndi.binary_dilation(instances > 0, iterations=4)
    inner = ndi.binary_erosion(instances > 0, iterations=2)
    for row in range(24, 512, 48):
        for value, where in ((2, inner[row]), (1, ~near[row])):
            cols = np.flatnonzero(where)
            rows = np.full(cols.size, row)
            layer.data_setitem((np.r_[rows, rows + 1, rows + 2], np.r_[cols, cols, cols]), value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "images"))
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import napari
    from qtpy.QtWidgets import QApplication

    from scribble_unet._napari import open_demo_viewer

    work = Path(tempfile.mkdtemp(prefix="scribble-unet-shots-"))
    viewer = open_demo_viewer(work, sample="nuclei", show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1600, 1000)
    main_widget = viewer.window._dock_widgets["Scribble U-Net (napari-scribble-unet)"].widget()
    ctrl = main_widget.controller
    _paint(ctrl.scribble_layer, viewer.layers["nuclei instances"].data)
    viewer.reset_view()
    app.processEvents()
    main_widget.tabs.setCurrentIndex(0)
    _wait(app, lambda: False if time.sleep(0.3) else True, 5, "paint")
    viewer.screenshot(str(out / "data.png"), canvas_only=False)
    print("wrote", out / "data.png")

    train = main_widget.train
    train.model_form.set_value("depth", 3)
    train.model_form.set_value("width", 8)
    train.time_spin.setValue(0)  # no time limit: the steps end the run (the bar counts steps)
    for key, value in {"steps": args.steps, "batch_size": 4, "checkpoint_every": 20,
                       "validate_every": 20, "device": "cpu"}.items():
        train.train_form.set_value(key, value)
    main_widget.tabs.setCurrentIndex(1)
    train.start()
    _wait(app, lambda: not ctrl.is_training, 600, "training")
    _wait(app, lambda: ctrl.live is not None and ctrl.live.pending() == 0, 120, "prediction")
    viewer.layers["scribbles"].opacity = 0.9
    app.processEvents()
    viewer.screenshot(str(out / "train.png"), canvas_only=False)
    print("wrote", out / "train.png")

    main_widget.tabs.setCurrentIndex(2)
    viewer.layers["scribbles"].visible = False
    app.processEvents()
    viewer.screenshot(str(out / "predict.png"), canvas_only=False)
    print("wrote", out / "predict.png")

    main_widget.tabs.setCurrentIndex(3)
    states: list[str] = []
    ctrl.state.export.events.state.connect(lambda state: states.append(state.value))
    main_widget.export.export()
    _wait(app, lambda: "done" in states, 300, "export")
    app.processEvents()
    viewer.screenshot(str(out / "export.png"), canvas_only=False)
    print("wrote", out / "export.png")
    viewer.close()
    napari.Viewer.close_all()


if __name__ == "__main__":
    main()
