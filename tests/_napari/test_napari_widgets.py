"""The dock widgets in a real napari viewer (needs a display: run under xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from helpers import paint_nuclei_rows
from scribble_unet.inference.predict import predict_lazy
from scribble_unet.model.checkpoint import Checkpoint
from scribble_unet.model.normalize import Normalization
from scribble_unet.model.unet import ModelConfig, build_model

pytestmark = pytest.mark.gui
PLUGIN = "napari-scribble-unet"


def test_the_widget_is_added_through_the_manifest(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    assert widget is not None and dock is not None
    assert widget.controller.viewer is viewer
    assert [widget.tabs.tabText(i) for i in range(widget.tabs.count())] == ["Data", "Train", "Predict", "Export"]


def test_end_to_end_paint_train_predict_export(make_napari_viewer, qtbot, tmp_path) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "nuclei-dsb2018")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    main.data.image_combo.setCurrentText("nuclei (DSB 2018)")
    main.data.folder_edit.setText(str(tmp_path / "project"))
    main.data.classes_edit.setText("nucleus")
    main.data.open_project()
    layer = ctrl.scribble_layer
    assert layer is not None and layer.data.shape == (512, 512)

    instances = viewer.layers["nuclei instances"].data
    paint_nuclei_rows(layer, instances, thickness=2)
    store = zarr.open_array(tmp_path / "project" / "scribbles.zarr", mode="r")
    assert np.array_equal(store[:], np.asarray(layer.data))  # every stroke is on disk already
    assert set(np.unique(store[:])) == {0, 1, 2}

    train = main.train
    train.model_form.set_value("depth", 2)
    train.model_form.set_value("width", 4)
    for key, value in {"steps": 30, "batch_size": 2, "checkpoint_every": 10, "validate_every": 10,
                       "val_share": 0.2, "device": "cpu", "tile": 64}.items():  # held-out strokes: a figure
        train.train_form.set_value(key, value)
    train.start()
    assert ctrl.is_training
    qtbot.waitUntil(lambda: ctrl.live is not None and ctrl.live.computed >= 1, timeout=120_000)
    pred_layer = viewer.layers["prediction"]
    first_token = ctrl.checkpoint.token
    qtbot.waitUntil(lambda: not ctrl.is_training, timeout=180_000)
    assert ctrl.checkpoint.token != first_token  # later checkpoints replaced the first one
    assert len(train.plot.loss) == 30 and train.plot.iou
    assert train.plot.held_out and train.plot.title() == f"IoU on held-out strokes: {train.plot.iou[-1][1]:.2f}"
    # The prediction layer shows the newest model's prediction of the visible chunk.
    qtbot.waitUntil(lambda: ctrl.live.pending() == 0, timeout=60_000)
    assert ctrl.live.cache[(0, 0)][0] == ctrl.checkpoint.token
    lazy = predict_lazy(ctrl.checkpoint, ctrl.source, tile=ctrl.live.tile)
    expected = lazy.mask.compute(scheduler="synchronous")
    assert np.array_equal(np.asarray(pred_layer.data[:, :]), expected)

    out = tmp_path / "export.zarr"
    main.export.path_edit.setText(str(out))
    states: list[str] = []
    ctrl.state.export.events.state.connect(lambda state: states.append(state.value))
    main.export.export()
    qtbot.waitUntil(lambda: "done" in states, timeout=120_000)
    mask = zarr.open_group(out, mode="r")["labels/mask/0"][:]
    assert np.array_equal(mask, expected)
    assert main.export.progress.value() == main.export.progress.maximum() > 0
    # File > Open of the export: one labels layer, named by class, coloured as the live prediction.
    before = len(viewer.layers)
    viewer.open(str(out), plugin=PLUGIN)
    added = list(viewer.layers)[before:]
    assert [(type(ly).__name__, ly.name) for ly in added] == [("Labels", "mask")]
    assert added[0].metadata["class_names"] == ["background", "nucleus"]
    assert np.array_equal(np.asarray(added[0].data[0] if added[0].multiscale else added[0].data), expected)
    assert np.allclose(added[0].colormap.map(1), pred_layer.colormap.map(1))
    assert added[0].colormap.map(0)[3] == 0  # background transparent, as in the live prediction


def test_training_errors_become_notifications_and_widget_stays_usable(make_napari_viewer, tmp_path,
                                                                     monkeypatch) -> None:
    import scribble_unet._napari._base as base

    messages: list[str] = []
    monkeypatch.setattr(base, "_notify_error", messages.append)
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "nuclei-dsb2018")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    main.train.start()  # no project yet
    assert messages and "could not start training" in messages[-1] and "project" in messages[-1]
    assert main.train.start_button.isEnabled()
    main.export.export()  # no model yet
    assert "no model" in messages[-1]
    main.data.open_project()  # no folder
    assert "choose a project folder" in messages[-1]


def test_large_sample_predicts_only_the_zoomed_in_view(make_napari_viewer, qtbot, tmp_path) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "rare-objects-64k")
    image = viewer.layers["rare objects 64k"]
    assert image.multiscale and image.data[0].shape == (65536, 65536)
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    ctrl.set_image_layer(image)
    ctrl.open_project(tmp_path / "big")
    assert ctrl.scribble_layer.data.shape == (4096, 4096)  # a window, not a 65536² plane
    viewer.scene.camera.center = (40000, 30000)
    viewer.scene.camera.zoom = 4.0
    ckpt = Checkpoint.from_model(build_model(ModelConfig(depth=2, width=4, norm="none"), seed=0),
                                 Normalization(low=(400.0,), high=(4200.0,)))
    ctrl.set_checkpoint(ckpt)
    region = ctrl.visible_region()
    assert region is not None
    y0, y1, x0, x1 = region
    assert y0 <= 40000 <= y1 and x0 <= 30000 <= x1
    wanted = ctrl.live.grid.chunks_touching(*region)
    qtbot.waitUntil(lambda: ctrl.live.pending() == 0 and ctrl.live.computed >= len(wanted), timeout=120_000)
    assert ctrl.live.computed == len(wanted) <= 16  # of 16384 chunks in the image
    # The scribble window moved to the view, and painting there lands in the store.
    oy, ox = ctrl.scribble_layer.data.origin
    assert oy <= y0 and y1 <= oy + 4096 and ox <= x0 and x1 <= ox + 4096
    ctrl.scribble_layer.data_setitem((np.array([40000 - oy]), np.array([30000 - ox])), 2)
    assert zarr.open_array(tmp_path / "big" / "scribbles.zarr", mode="r")[40000, 30000] == 2
    # What is shown equals the exact prediction of those pixels.
    chunk = ctrl.live.grid.chunks_touching(40000, 40001, 30000, 30001)[0]
    cy0, cy1, cx0, cx1 = ctrl.live.grid.chunk_bounds(*chunk)
    shown = np.asarray(ctrl.prediction_layer.data[0][cy0:cy1, cx0:cx1])
    assert np.array_equal(shown, ctrl.live.predictor.mask(*chunk))


def test_closing_the_viewer_stops_workers_quickly(make_napari_viewer, qtbot, tmp_path) -> None:
    import time

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "nuclei-dsb2018")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    ctrl.set_image_layer(viewer.layers["nuclei (DSB 2018)"])
    ctrl.open_project(tmp_path / "p")
    paint_nuclei_rows(ctrl.scribble_layer, viewer.layers["nuclei instances"].data, thickness=2)
    from scribble_unet.training.trainer import TrainConfig

    ctrl.start_training(ModelConfig(depth=2, width=4), TrainConfig(steps=100000, checkpoint_every=5,
                                                                  validate_every=0, device="cpu", tile=64))
    qtbot.waitUntil(lambda: ctrl.live is not None and ctrl.live.computed >= 1, timeout=120_000)
    assert not ctrl.training_job.done.is_set() and not ctrl.live_job.done.is_set()
    t0 = time.perf_counter()
    viewer.close()  # as the user closing the window
    assert ctrl.closed
    # "quickly": within seconds of a 100000-step run (loose bounds: the test machine is shared)
    assert ctrl.training_job.done.wait(15.0) and ctrl.live_job.done.wait(5.0)
    assert time.perf_counter() - t0 < 20.0
    from qtpy.QtCore import QThreadPool

    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=2000)


def test_large_sample_draws_scribbles_outside_the_window_when_zoomed_out(make_napari_viewer, qtbot,
                                                                        tmp_path) -> None:
    from scribble_unet._napari._layers import OVERVIEW_LAYER
    from scribble_unet.scribbles.project import Project

    # A stroke made earlier, far from where the paintable window will open (the image's centre).
    store = Project.open(tmp_path / "big").open_scribbles((65536, 65536))
    store[60001:60003, 2000:6000] = 2
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "rare-objects-64k")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    ctrl.set_image_layer(viewer.layers["rare objects 64k"])
    ctrl.open_project(tmp_path / "big")
    oy, ox = ctrl.scribble_layer.data.origin
    assert ctrl.scribble_layer.data.shape == (4096, 4096) and not oy <= 60001 < oy + 4096
    overview = viewer.layers[OVERVIEW_LAYER]
    assert overview.multiscale and overview.data[0].shape == (65536, 65536)
    layers = list(viewer.layers)
    assert layers.index(overview) == layers.index(ctrl.scribble_layer) - 1
    assert viewer.layers.selection.active is ctrl.scribble_layer

    def shown() -> tuple[int, np.ndarray]:
        """The overview's level and its displayed pixels (what napari sliced for the canvas)."""
        return overview.data_level, np.asarray(overview._slice.image.raw)

    viewer.reset_view()  # the whole 65536² image on the canvas
    qtbot.wait(300)
    level, pixels = shown()
    assert level >= 4 and pixels.size <= 4096 * 4096
    assert (pixels == 2).any()  # the old stroke, 2 px thin, is drawn although it is outside the window
    # A new stroke through the window appears without moving the camera; erasing it removes it.
    row = oy + 1000
    cols = np.arange(1000, 3000)
    ctrl.scribble_layer.data_setitem((np.full(cols.size, 1000), cols), 3)
    qtbot.waitUntil(lambda: (shown()[1] == 3).any(), timeout=3000)
    ctrl.scribble_layer.data_setitem((np.full(cols.size, 1000), cols), 0)
    qtbot.waitUntil(lambda: not (shown()[1] == 3).any(), timeout=3000)
    assert store[row, ox + 1500] == 0
    # Zoomed in at full resolution on the old stroke, the window moves there and holds it.
    viewer.scene.camera.zoom = 1.0
    viewer.scene.camera.center = (60002, 4000)
    qtbot.waitUntil(lambda: ctrl.scribble_layer.data.origin[0] <= 60001 < ctrl.scribble_layer.data.origin[0] + 4096,
                    timeout=3000)
    wy, wx = ctrl.scribble_layer.data.origin
    assert ctrl.scribble_layer.data[60001 - wy, 4000 - wx] == 2
    # At full resolution the window draws it, not the overview (an erased stroke never shows through).
    assert ctrl.overview.hidden == (wy, wy + 4096, wx, wx + 4096)
    assert overview.data[0][60001, 4000] == 0 and overview.data[1][60001 // 2, 2000] == 2
    # A stroke painted at full resolution is drawn once zoomed out again (no stale coarse level).
    ctrl.scribble_layer.data_setitem((np.full(2000, 60100 - wy), np.arange(3000, 5000) - wx), 3)
    qtbot.wait(500)
    viewer.reset_view()
    qtbot.waitUntil(lambda: shown()[0] >= 4 and (shown()[1] == 3).any(), timeout=3000)


def test_a_run_that_used_its_time_budget_ends_with_a_full_progress_bar(make_napari_viewer, qtbot, tmp_path,
                                                                        monkeypatch) -> None:
    import time

    from scribble_unet.training.trainer import Trainer

    checkpoint = Trainer.checkpoint

    def slow_checkpoint(self, *args, **kwargs):
        """The first checkpoint takes the rest of the budget, as a validation or a save on a large image can."""
        if self.step == 1 and not kwargs.get("finished", False):
            time.sleep(2.2)
        return checkpoint(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "checkpoint", slow_checkpoint)
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "nuclei-dsb2018")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    main.data.image_combo.setCurrentText("nuclei (DSB 2018)")
    main.data.folder_edit.setText(str(tmp_path / "project"))
    main.data.open_project()
    paint_nuclei_rows(ctrl.scribble_layer, viewer.layers["nuclei instances"].data, thickness=2)
    train = main.train
    train.model_form.set_value("depth", 2)
    train.model_form.set_value("width", 4)
    train.time_spin.setValue(2)  # "Train for 2 s"
    for key, value in {"batch_size": 2, "checkpoint_every": 1, "validate_every": 0, "device": "cpu",
                       "tile": 64}.items():
        train.train_form.set_value(key, value)
    import gc

    from scribble_unet._napari import _gc

    train.start()
    # while the run is under way the cycle collector leaves the old heap alone (no 150-200 ms GUI pauses)
    assert _gc.holding() and gc.get_freeze_count() > 0
    qtbot.waitUntil(lambda: not ctrl.is_training and ctrl.state.training.message.startswith("Finished"),
                    timeout=120_000)
    assert "time budget used" in ctrl.state.training.message
    assert not _gc.holding() and gc.get_freeze_count() == 0  # given back when the run ends
    # The bar counts seconds: a run that used them all shows them all, not the time of its last step.
    assert train.progress.maximum() == 2 and train.progress.value() == 2
    # Nothing is held out by default: the plot says so instead of showing an empty IoU axis.
    assert not train.plot.held_out and not train.plot.iou and train.plot.title() == "no strokes held out"
