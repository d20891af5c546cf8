"""Screenshots of a whole session on a large image, for docs/user-guide.md.

Run headless (needs Xvfb with Qt's xcb backend, not ``offscreen``)::

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/make_screenshots.py

The image is 4096 x 4096 px (16.8 megapixels): the built-in real nuclei image (2018 Data Science Bowl)
tiled 8 x 8, every other tile mirrored. It is written as a zarr array and opened through the plugin's
reader, as *File > Open* does. The script then does what the guide tells a user to do, pressing the
widget's buttons: create the project, zoom in and paint (strokes drawn from the image's hand-made
instance mask, as a user's brush would), train a small model for 80 steps, correct the prediction in view
and add the correction to the scribbles, show the objects, export the whole image, open the export,
and reopen the project in a new viewer. It writes ``docs/images/*.png`` (downscaled to stay small).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PLUGIN = "napari-scribble-unet"
TILES = 8
WINDOW = (1600, 1000)
MAX_WIDTH = 1400
MAX_BYTES = 400_000


def make_image(folder: Path) -> tuple[Path, np.ndarray]:
    """Write the tiled nuclei image (see the module docstring); returns its path and its instance mask."""
    import zarr

    from scribble_unet.image.nuclei import load_nuclei

    image, instances = load_nuclei()
    rows_img, rows_ins = [], []
    for i in range(TILES):
        row_img, row_ins = [], []
        for j in range(TILES):
            a, b = image, instances.astype(np.int32)
            if i % 2:  # mirrored, so that the nuclei continue across the seams
                a, b = a[::-1], b[::-1]
            if j % 2:
                a, b = a[:, ::-1], b[:, ::-1]
            row_img.append(a)
            row_ins.append(np.where(b > 0, b + 1000 * (i * TILES + j), 0))
        rows_img.append(np.concatenate(row_img, axis=1))
        rows_ins.append(np.concatenate(row_ins, axis=1))
    big, truth = np.concatenate(rows_img), np.concatenate(rows_ins)
    path = folder / "nuclei_4096.zarr"
    zarr.create_array(path, shape=big.shape, chunks=(512, 512), dtype=big.dtype, overwrite=True)[:] = big
    return path, truth


def strokes(truth: np.ndarray, box: tuple[int, int, int, int]) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Brush strokes in ``box``: one short line across the middle of each nucleus (label 2) and
    broken lines through the background between them (label 1), 3 px thick."""
    from scipy import ndimage as ndi

    y0, y1, x0, x1 = box
    sub = truth[y0:y1, x0:x1]
    inner = ndi.binary_erosion(sub > 0, iterations=3)
    near = ndi.binary_dilation(sub > 0, iterations=6)
    out: list[tuple[np.ndarray, np.ndarray, int]] = []
    for k, found in enumerate(ndi.find_objects(np.where(inner, sub, 0))):
        if found is None or k % 3:  # about every third nucleus is painted
            continue
        rs, cs = found
        row = (rs.start + rs.stop) // 2
        cols = np.arange(cs.start, cs.stop)
        cols = cols[inner[row, cols]]
        if cols.size >= 6:
            out += [(np.full(cols.size, row + d), cols, 2) for d in (-1, 0, 1) if 0 <= row + d < y1 - y0]
    for row in range(30, y1 - y0 - 2, 90):
        cols = np.flatnonzero(~near[row] & ((np.arange(x1 - x0) // 80) % 2 == 0))
        out += [(np.full(cols.size, row + d), cols, 1) for d in (0, 1, 2)]
    return [(r + y0, c + x0, v) for r, c, v in out]


def near_objects(instances: np.ndarray) -> np.ndarray:
    """The surroundings (12 px) of the nuclei whose centre is in the middle of ``instances``."""
    from scipy import ndimage as ndi

    h, w = instances.shape
    ids = np.unique(instances[instances > 0])
    centres = ndi.center_of_mass(np.ones_like(instances), instances, ids)
    middle = [i for i, (cy, cx) in zip(ids, centres, strict=True)
              if h / 5 < cy < h - h / 5 and w / 5 < cx < w - w / 5]
    return ndi.binary_dilation(np.isin(instances, middle), iterations=12)


class Session:
    """The viewer, its widget and the little helpers the walkthrough needs."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.viewer: Any = None
        self.widget: Any = None

    def open(self, image: Path) -> None:
        import napari

        self.viewer = napari.Viewer(show=True, title="napari")
        self.viewer.window._qt_window.resize(*WINDOW)
        self.viewer.open(str(image), plugin=PLUGIN)  # File > Open
        _, self.widget = self.viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
        self.settle()

    @property
    def app(self) -> Any:
        from qtpy.QtWidgets import QApplication

        return QApplication.instance()

    @property
    def ctrl(self) -> Any:
        return self.widget.controller

    def wait(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        t0 = time.monotonic()
        while not cond():
            self.app.processEvents()
            time.sleep(0.02)
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"timed out waiting for {what}")

    def settle(self, seconds: float = 0.6) -> None:
        """Let the camera-following timer, the batched redraws and the canvas catch up."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            self.app.processEvents()
            time.sleep(0.02)

    def look_at(self, y: float, x: float, zoom: float) -> None:
        self.viewer.scene.camera.zoom = zoom
        self.viewer.scene.camera.center = (y, x)
        self.settle()

    def shoot(self, name: str, tab: int | None = None) -> None:
        from PIL import Image

        if tab is not None:
            self.widget.tabs.setCurrentIndex(tab)
        self.close_toasts()
        self.settle(0.8)
        path = self.out / name
        self.viewer.screenshot(str(path), canvas_only=False)
        shot = Image.open(path).convert("RGB")
        width = min(MAX_WIDTH, shot.width)
        while True:  # smaller until it fits: a palette of 256 colours is plenty for a screenshot
            img = shot.resize((width, round(shot.height * width / shot.width)), Image.Resampling.LANCZOS)
            img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
            if path.stat().st_size <= MAX_BYTES:
                break
            width = int(width * 0.9)
        print(f"wrote {path} ({img.width} x {img.height}, {path.stat().st_size // 1024} KB)", flush=True)

    def close_toasts(self) -> None:
        """Close napari's notification pop-ups (their messages are quoted in the guide instead)."""
        from qtpy.QtWidgets import QDialog

        for w in self.viewer.window._qt_window.findChildren(QDialog):
            if type(w).__name__ == "NapariQtNotification":
                w.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "images"))
    parser.add_argument("--steps", type=int, default=80, help="steps of each training run")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import napari

    work = Path(tempfile.mkdtemp(prefix="scribble-unet-shots-"))
    image_path, truth = make_image(work)
    project = work / "project"
    s = Session(out)

    # 1. Open the image and create the project (Data tab).
    s.open(image_path)
    image_name = s.viewer.layers[0].name
    data = s.widget.data
    data.image_combo.setCurrentText(image_name)
    data.folder_edit.setText(str(project))
    data.classes_edit.setText("nucleus")
    data.open_button.click()
    s.viewer.reset_view()
    s.shoot("data.png", tab=0)

    # 2. Zoom in and paint.
    s.look_at(1900, 2300, 1.6)
    layer = s.ctrl.scribble_layer
    s.wait(lambda: s.ctrl.state.session.paintable, 10, "a paintable view")
    region = s.ctrl.visible_region()
    assert region is not None
    oy, ox = layer.data.origin
    for rows, cols, value in strokes(truth, region):
        layer.data_setitem((rows - oy, cols - ox), value)
    layer.selected_label = 2
    layer.brush_size = 3
    layer.mode = "paint"
    s.shoot("paint.png", tab=0)

    # 3. Train briefly; the prediction of the view follows each checkpoint.
    train = s.widget.train
    train.model_form.set_value("depth", 3)
    train.model_form.set_value("width", 8)
    # A step limit (Advanced) rather than "Train for": the same model whatever else the machine is doing.
    train.time_spin.setValue(0)
    for key, value in {"steps": args.steps, "batch_size": 4, "checkpoint_every": 20, "validate_every": 20,
                       "device": "cpu"}.items():
        train.train_form.set_value(key, value)
    s.widget.tabs.setCurrentIndex(1)
    t0 = time.monotonic()
    train.start_button.click()
    s.wait(lambda: s.ctrl.is_training, 10, "training to start")
    s.wait(lambda: not s.ctrl.is_training, 600, "training")
    print(f"trained {s.ctrl.state.training.history.steps} steps in {time.monotonic() - t0:.0f} s", flush=True)
    s.wait(lambda: s.ctrl.live is not None and s.ctrl.live.pending() == 0, 120, "the view's prediction")
    s.viewer.layers.selection.active = layer
    layer.mode = "pan_zoom"
    s.shoot("train.png", tab=1)

    # 4. Correct the prediction where it is wrong, add the correction to the scribbles, train on.
    s.look_at(2500, 1500, 2.5)
    s.wait(lambda: s.ctrl.live.pending() == 0, 120, "the view's prediction")
    train.correct_button.click()
    correction = s.ctrl.correction_layer
    (y0, y1, x0, x1), predicted = s.ctrl._correction
    wanted = (truth[y0:y1, x0:x1] > 0).astype(np.uint8)
    fixed = near_objects(truth[y0:y1, x0:x1])  # the user fixes the nuclei in the middle, not every pixel
    wrong = np.nonzero((wanted != predicted) & fixed)
    correction.data_setitem(wrong, wanted[wrong])  # the user's brush and eraser
    correction.mode = "paint"
    s.shoot("correct.png", tab=1)
    train.apply_button.click()
    train.start_button.click()  # "Continue from the current model" is ticked
    s.wait(lambda: s.ctrl.is_training, 10, "training to start")
    s.wait(lambda: not s.ctrl.is_training, 600, "training")
    s.wait(lambda: s.ctrl.live.pending() == 0, 120, "the view's prediction")

    # 5. Predict tab: the objects of the view.
    predict = s.widget.predict
    predict.objects_check.setChecked(True)
    s.wait(lambda: "objects" in s.viewer.layers, 60, "the objects layer")
    s.viewer.layers["scribbles"].visible = False
    s.viewer.layers["prediction"].visible = False
    s.shoot("predict.png", tab=2)
    predict.objects_check.setChecked(False)
    s.viewer.layers["scribbles"].visible = True
    s.viewer.layers["prediction"].visible = True

    # 6. Export the whole image, then open the export.
    export = s.widget.export
    s.widget.tabs.setCurrentIndex(3)
    states: list[str] = []
    s.ctrl.state.export.events.state.connect(lambda state: states.append(state.value))
    t0 = time.monotonic()
    export.export_button.click()
    s.wait(lambda: "done" in states or "failed" in states, 900, "the export")
    if "done" not in states:
        raise SystemExit("the export failed")
    print(f"exported in {time.monotonic() - t0:.0f} s", flush=True)
    s.viewer.open(str(project / "export.zarr"), plugin=PLUGIN)
    for name in ("scribbles", "prediction"):
        s.viewer.layers[name].visible = False
    s.viewer.reset_view()
    s.shoot("export.png", tab=3)
    s.viewer.close()

    # 7. Another day: open the image and the same project folder.
    s.open(image_path)
    s.widget.data.image_combo.setCurrentText(image_name)
    s.widget.data.folder_edit.setText(str(project))
    s.widget.data.open_button.click()
    s.look_at(1900, 2300, 1.6)
    s.wait(lambda: s.ctrl.live is not None and s.ctrl.live.pending() == 0 and s.ctrl.live.computed > 0, 120,
           "the reopened model's prediction")
    s.shoot("reopen.png", tab=1)
    s.viewer.close()
    napari.Viewer.close_all()


if __name__ == "__main__":
    main()
