"""A biologist's session in a real napari: reopen a project, paint zoomed out, correct, open the export.

Needs a display: run under xvfb-run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

pytestmark = pytest.mark.gui
PLUGIN = "napari-scribble-unet"
NUCLEI = "nuclei (DSB 2018)"


def _paint(layer, instances: np.ndarray) -> None:
    from scipy import ndimage as ndi

    near = ndi.binary_dilation(instances > 0, iterations=4)
    inner = ndi.binary_erosion(instances > 0, iterations=2)
    for row in range(40, 512, 40):
        for value, where in ((2, inner[row]), (1, ~near[row])):
            cols = np.flatnonzero(where)
            layer.data_setitem((np.full(cols.size, row), cols), value)


def _open(viewer, folder, classes: str):
    viewer.open_sample(PLUGIN, "nuclei-dsb2018")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    main.data.image_combo.setCurrentText(NUCLEI)
    main.data.folder_edit.setText(str(folder))
    main.data.classes_edit.setText(classes)
    main.data.open_project()
    return main


def _small_run(train, steps: int) -> None:
    train.model_form.set_value("width", 4)
    train.time_spin.setValue(0)  # no time limit: the steps end the run
    for key, value in {"steps": steps, "batch_size": 2, "checkpoint_every": 3, "validate_every": 3,
                       "device": "cpu", "tile": 64}.items():
        train.train_form.set_value(key, value)


def test_reopened_project_comes_back_whole_and_start_continues_its_model(make_napari_viewer, qtbot,
                                                                          tmp_path) -> None:
    folder = tmp_path / "project"
    viewer = make_napari_viewer()
    main = _open(viewer, folder, "nucleus")
    ctrl = main.controller
    _paint(ctrl.scribble_layer, viewer.layers["nuclei instances"].data)
    _small_run(main.train, 6)
    main.train.start()
    qtbot.waitUntil(lambda: not ctrl.is_training and ctrl.state.training.model_file is not None, timeout=120_000)
    meta = json.loads((folder / "project.json").read_text())
    assert meta["class_names"] == ["nucleus"] and meta["history"]["steps"] == 6
    assert len(meta["history"]["loss"]) == 6 and meta["history"]["iou"]
    assert meta["run_config"]["train"]["steps"] == 6 and len(meta["models"]) == 1
    first = folder / meta["model"]
    first_bytes = first.read_bytes()
    viewer.close()

    # A new viewer: the Classes field starts at its default, the project's names win.
    viewer2 = make_napari_viewer()
    main2 = _open(viewer2, folder, "object")
    ctrl2 = main2.controller
    assert ctrl2.class_names == ["nucleus"] and main2.data.classes_edit.text() == "nucleus"
    assert main2.train.classes_edit.text() == "nucleus"
    assert json.loads((folder / "project.json").read_text())["class_names"] == ["nucleus"]
    assert ctrl2.checkpoint_path == first and len(main2.train.plot.loss) == 6 and main2.train.plot.iou
    assert main2.train.continue_check.isChecked() and main2.train.continue_check.isEnabled()
    assert "6 steps" in main2.train.continue_check.text()
    assert main2.train.train_form.values()["steps"] == 6  # the last run's settings came back
    saved_token = ctrl2.checkpoint.token
    main2.train.start()
    qtbot.waitUntil(lambda: ctrl2.trainer is not None, timeout=60_000)
    assert ctrl2.trainer.init is not None and ctrl2.trainer.init.token == saved_token  # continued, not fresh
    qtbot.waitUntil(lambda: not ctrl2.is_training and ctrl2.state.training.history.steps == 12, timeout=120_000)
    assert first.read_bytes() == first_bytes  # the old model is kept as it was
    meta = json.loads((folder / "project.json").read_text())
    assert len(meta["models"]) == 2 and meta["model"] != str(first.relative_to(folder))
    assert meta["models"][-1]["steps"] == 12 and meta["history"]["steps"] == 12
    assert [s for s, _ in main2.train.plot.loss] == list(range(1, 13))  # one curve, steps counted on
    assert "12 steps" in main2.train.models_combo.currentText()


def test_zoomed_out_the_brush_is_off_with_a_hint_and_zoomed_in_strokes_are_saved(make_napari_viewer,
                                                                                  tmp_path) -> None:
    from scribble_unet._napari._layers import ZOOM_IN_HINT, text_overlay

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "rare-objects-64k")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    ctrl.set_image_layer(viewer.layers["rare objects 64k"])
    ctrl.open_project(tmp_path / "big")
    layer = ctrl.scribble_layer
    viewer.reset_view()  # the whole 65536² image: most of the view is outside the paintable window
    ctrl.refresh_view()
    assert not ctrl.state.session.paintable and not layer.editable
    assert text_overlay(viewer).visible and text_overlay(viewer).text == ZOOM_IN_HINT
    layer.mode = "paint"
    assert layer.mode == "pan_zoom"  # napari refuses the brush on a read-only layer
    viewer.scene.camera.zoom = 1.0
    viewer.scene.camera.center = (20000, 50000)
    ctrl.refresh_view()
    assert ctrl.state.session.paintable and layer.editable and not text_overlay(viewer).visible
    layer.mode = "paint"
    assert layer.mode == "paint"
    oy, ox = layer.data.origin
    layer.data_setitem((np.array([20000 - oy]), np.array([50000 - ox])), 2)
    assert zarr.open_array(tmp_path / "big" / "scribbles.zarr", mode="r")[20000, 50000] == 2


def test_corrections_of_the_prediction_become_scribbles_the_trainer_uses_and_undo(make_napari_viewer, qtbot,
                                                                                 tmp_path) -> None:
    viewer = make_napari_viewer()
    main = _open(viewer, tmp_path / "p", "nucleus")
    ctrl = main.controller
    _paint(ctrl.scribble_layer, viewer.layers["nuclei instances"].data)
    _small_run(main.train, 100_000)
    main.train.start()
    qtbot.waitUntil(lambda: ctrl.live is not None and ctrl.live.computed >= 1 and ctrl.trainer is not None,
                    timeout=120_000)
    before = dict(ctrl.trainer.index.counts)
    main.train.correct_here()
    layer = ctrl.correction_layer
    assert layer is not None and viewer.layers.selection.active is layer and layer.mode == "paint"
    (y0, _, x0, _), predicted = ctrl._correction
    # the user paints a missed object where the prediction says background, and erases a false one
    missed = tuple(a[:30] for a in np.nonzero(predicted == 0))
    false = tuple(a[:30] for a in np.nonzero(predicted == 1))
    layer.data_setitem(missed, 1)
    layer.data_setitem(false, 0)
    changed = missed[0].size + false[0].size
    assert int((np.asarray(layer.data) != predicted).sum()) == changed
    scribbles_path = tmp_path / "p" / "scribbles.zarr"
    painted = zarr.open_array(scribbles_path, mode="r")[:]
    main.train.apply_correction()
    assert ctrl.correction_layer is None and "correction" not in [ly.name for ly in viewer.layers]
    store = zarr.open_array(tmp_path / "p" / "scribbles.zarr", mode="r")
    assert (store[:][missed[0] + y0, missed[1] + x0] == 2).all()
    assert (store[:][false[0] + y0, false[1] + x0] == 1).all()

    def counted() -> bool:
        counts = ctrl.trainer.index.counts
        return counts.get(2, 0) + counts.get(1, 0) == before.get(2, 0) + before.get(1, 0) + changed

    qtbot.waitUntil(counted, timeout=60_000)  # the next steps train on the corrections
    ctrl.scribble_layer.undo()
    assert np.array_equal(store[:], painted)  # Ctrl+Z on the scribbles takes the whole correction back
    main.train.stop()
    qtbot.waitUntil(lambda: not ctrl.is_training, timeout=60_000)


def test_export_opens_as_one_labels_layer_with_the_live_predictions_colours(make_napari_viewer, tmp_path) -> None:
    from scribble_unet.export.to_zarr import predict_to_zarr
    from scribble_unet.image import open_image
    from scribble_unet.model.checkpoint import Checkpoint
    from scribble_unet.model.normalize import Normalization
    from scribble_unet.model.unet import ModelConfig, build_model

    names = ("nucleus", "mitosis")
    ckpt = Checkpoint.from_model(build_model(ModelConfig(depth=2, width=4, norm="none", n_classes=2,
                                                         class_names=names), seed=0),
                                 Normalization(low=(0.0,), high=(1.0,)))
    image = np.random.default_rng(0).random((200, 300)).astype(np.float32)
    out = tmp_path / "export.zarr"
    predict_to_zarr(ckpt, open_image(image), out, tile=64, probabilities=True, progress=False, device="cpu")
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin=PLUGIN)
    assert [type(ly).__name__ for ly in viewer.layers] == ["Labels"]  # no progress / hash / probabilities
    mask = viewer.layers[0]
    assert mask.metadata["class_names"] == ["background", *names]
    assert list(mask.features["class"]) == ["background", *names]
    # the live prediction's colours for the same classes
    viewer.add_image(image, name="img")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    ctrl.set_image_layer(viewer.layers["img"])
    ctrl.open_project(tmp_path / "p", list(names))
    live = ctrl.prediction_layer.colormap
    for value in (1, 2):
        assert np.allclose(mask.colormap.map(value), live.map(value))
