"""A biologist's session in a real napari: reopen a project, paint zoomed out, correct, open the export.

Needs a display: run under xvfb-run.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import zarr

from helpers import paint_nuclei_rows

pytestmark = pytest.mark.gui
PLUGIN = "napari-scribble-unet"
NUCLEI = "nuclei (DSB 2018)"


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
                       "val_share": 0.2, "device": "cpu", "tile": 64}.items():  # held-out strokes: a figure
        train.train_form.set_value(key, value)


def test_reopened_project_comes_back_whole_and_start_continues_its_model(make_napari_viewer, qtbot, tmp_path,
                                                                          monkeypatch) -> None:
    import torch

    from scribble_unet.model.checkpoint import load_checkpoint
    from scribble_unet.model.unet import build_model
    from scribble_unet.training.trainer import Trainer

    starts: list[dict] = []
    run = Trainer.run

    def recording_run(self, *args, **kwargs):
        """The weights each run starts from, taken just before its first step."""
        starts.append({"init": self.init.token if self.init is not None else None,
                       "weights": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}})
        return (yield from run(self, *args, **kwargs))

    monkeypatch.setattr(Trainer, "run", recording_run)
    folder = tmp_path / "project"
    viewer = make_napari_viewer()
    main = _open(viewer, folder, "nucleus")
    ctrl = main.controller
    paint_nuclei_rows(ctrl.scribble_layer, viewer.layers["nuclei instances"].data)
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
    # The network the second run started its first step from is the saved model, not a new one.
    assert len(starts) == 2 and starts[0]["init"] is None and starts[1]["init"] == saved_token
    saved = load_checkpoint(first).state_dict
    assert set(starts[1]["weights"]) == set(saved)
    learnt = [k for k in saved if not k.startswith("forest.")]  # the pixel forest is refilled from the strokes
    assert all(torch.equal(starts[1]["weights"][k], saved[k].cpu()) for k in learnt)
    fresh = build_model(ctrl2.trainer.model_config, seed=ctrl2.trainer.config.seed).state_dict()
    assert any(not torch.equal(starts[1]["weights"][k], fresh[k]) for k in saved)  # not random weights
    assert first.read_bytes() == first_bytes  # the old model is kept as it was
    meta = json.loads((folder / "project.json").read_text())
    assert len(meta["models"]) == 2 and meta["model"] != str(first.relative_to(folder))
    assert all(re.fullmatch(r"models/model-\d{8}-\d{6}(-\d+)?\.safetensors", m["file"]) for m in meta["models"])
    assert meta["models"][0]["file"] == str(first.relative_to(folder))
    assert meta["models"][-1]["steps"] == 12 and meta["history"]["steps"] == 12
    assert meta["class_names"] == ["nucleus"]  # a second run did not rename the class either
    assert load_checkpoint(folder / meta["model"]).config.class_names == ("nucleus",)
    assert [s for s, _ in main2.train.plot.loss] == list(range(1, 13))  # one curve, steps counted on
    assert "12 steps" in main2.train.models_combo.currentText()
    # The Predict tab counts the model's steps the same way (all runs, not only the last one).
    assert ctrl2.state.prediction.model_steps == 12 and "(12 steps)" in main2.predict.status.text()


def test_starting_weights_generalist_in_advanced_starts_the_new_model_from_the_shipped_generalist(
        make_napari_viewer, qtbot, tmp_path) -> None:
    import torch

    from scribble_unet.model.checkpoint import load_checkpoint
    from scribble_unet.training.start import load_generalist

    viewer = make_napari_viewer()
    main = _open(viewer, tmp_path / "project", "nucleus")
    ctrl = main.controller
    paint_nuclei_rows(ctrl.scribble_layer, viewer.layers["nuclei instances"].data)
    assert main.train.train_form.values()["start"] == "scratch"  # the default
    main.train.time_spin.setValue(0)
    for key, value in {"start": "generalist", "steps": 2, "batch_size": 2, "checkpoint_every": 0,
                       "validate_every": 0, "device": "cpu", "tile": 64}.items():
        main.train.train_form.set_value(key, value)
    main.train.start()
    qtbot.waitUntil(lambda: ctrl.trainer is not None, timeout=60_000)
    assert ctrl.trainer.start == "generalist"
    qtbot.waitUntil(lambda: not ctrl.is_training and ctrl.state.training.model_file is not None, timeout=120_000)
    saved = load_checkpoint(ctrl.checkpoint_path)
    assert saved.training["start"] == "generalist"
    # Two steps move the weights only a little away from the generalist's (not a random start).
    g = load_generalist().state_dict["down.0.0.weight"]
    w = saved.state_dict["down.0.0.weight"].cpu()
    assert not torch.equal(w, g) and float((w - g).abs().max()) < 0.05 < float(g.abs().max())


def test_zoomed_out_the_brush_is_off_with_a_hint_and_zoomed_in_strokes_are_saved(make_napari_viewer, qtbot,
                                                                                  tmp_path) -> None:
    from scribble_unet._napari._layers import ZOOM_IN_HINT, text_overlay

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "rare-objects-64k")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    ctrl.set_image_layer(viewer.layers["rare objects 64k"])
    ctrl.open_project(tmp_path / "big")
    layer = ctrl.scribble_layer
    store = zarr.open_array(tmp_path / "big" / "scribbles.zarr", mode="r")

    def at(zoom: float, y: int, x: int) -> None:
        """Move the camera as the user does; the controller follows from the camera's own events."""
        viewer.scene.camera.zoom = zoom
        viewer.scene.camera.center = (y, x)

        def followed() -> bool:
            oy, ox = layer.data.origin
            h, w = layer.data.shape
            return ctrl.state.session.paintable and oy <= y < oy + h and ox <= x < ox + w

        qtbot.waitUntil(followed, timeout=5_000)

    # Zoomed in with the brush in hand: the stroke (napari's own paint routine) is in the store at once.
    at(1.0, 20000, 50000)
    assert ctrl.state.session.paintable and layer.editable and not text_overlay(viewer).visible
    layer.mode = "paint"
    layer.brush_size = 5
    oy, ox = layer.data.origin
    layer.paint((20000 - oy, 50000 - ox), 2)
    near = (slice(19990, 20011), slice(49990, 50011))
    brushed = np.asarray(layer.data[20000 - oy - 10 : 20000 - oy + 11, 50000 - ox - 10 : 50000 - ox + 11]) == 2
    assert store[20000, 50000] == 2 and brushed.sum() > 1 and np.array_equal(store[near] == 2, brushed)
    # Zoomed out (the brush still selected): the view is larger than the paintable window, so the brush
    # is taken away and the canvas says why; napari refuses to give it back until the user zooms in.
    viewer.reset_view()  # the whole 65536² image
    qtbot.waitUntil(lambda: not ctrl.state.session.paintable, timeout=5_000)
    assert not layer.editable and layer.mode == "pan_zoom"
    assert text_overlay(viewer).visible and text_overlay(viewer).text == ZOOM_IN_HINT
    layer.mode = "paint"
    assert layer.mode == "pan_zoom"
    # Half-way out (one screen pixel = 2 image pixels) the view still fits the window: strokes are kept.
    at(0.5, 40000, 10000)
    assert ctrl.state.session.paintable and layer.editable and not text_overlay(viewer).visible
    layer.mode = "paint"
    assert layer.mode == "paint"
    oy, ox = layer.data.origin
    assert oy <= 40000 < oy + layer.data.shape[0] and ox <= 10000 < ox + layer.data.shape[1]
    layer.paint((40000 - oy, 10000 - ox), 1)
    assert store[40000, 10000] == 1
    assert store[20000, 50000] == 2  # the first stroke survived the window's moves
    # Panned beyond the window with the brush in hand: until the window has followed the view (it waits
    # for the camera to rest), napari would drop a stroke outside it, so the brush is off meanwhile ...
    viewer.scene.camera.center = (60000, 60000)
    oy, ox = layer.data.origin
    h, w = layer.data.shape
    assert not (oy <= 60000 < oy + h and ox <= 60000 < ox + w)
    assert not layer.editable and layer.mode == "pan_zoom"
    # ... and back, as it was, once the window is there.
    qtbot.waitUntil(lambda: layer.data.origin[0] <= 60000 < layer.data.origin[0] + h and layer.editable,
                    timeout=5_000)
    assert layer.mode == "paint" and not text_overlay(viewer).visible
    oy, ox = layer.data.origin
    layer.paint((60000 - oy, 60000 - ox), 2)
    assert store[60000, 60000] == 2


def test_corrections_of_the_prediction_become_scribbles_the_trainer_uses_and_undo(make_napari_viewer, qtbot,
                                                                                 tmp_path) -> None:
    viewer = make_napari_viewer()
    main = _open(viewer, tmp_path / "p", "nucleus")
    ctrl = main.controller
    paint_nuclei_rows(ctrl.scribble_layer, viewer.layers["nuclei instances"].data)
    _small_run(main.train, 100_000)
    main.train.start()
    qtbot.waitUntil(lambda: ctrl.live is not None and ctrl.live.computed >= 1 and ctrl.trainer is not None,
                    timeout=120_000)
    before = dict(ctrl.trainer.index.counts)
    main.train.correct_button.click()  # "Correct here"
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
    main.train.apply_button.click()  # "Add to scribbles"
    assert ctrl.correction_layer is None and "correction" not in [ly.name for ly in viewer.layers]
    store = zarr.open_array(tmp_path / "p" / "scribbles.zarr", mode="r")
    assert (store[:][missed[0] + y0, missed[1] + x0] == 2).all()
    assert (store[:][false[0] + y0, false[1] + x0] == 1).all()

    def counted() -> bool:
        counts = ctrl.trainer.index.counts
        return counts.get(2, 0) + counts.get(1, 0) == before.get(2, 0) + before.get(1, 0) + changed

    qtbot.waitUntil(counted, timeout=60_000)  # the trainer re-read the corrected region between two steps
    trainer = ctrl.trainer
    assert trainer.labels is not None and trainer.scale_choice.scale == 1

    def split_holds_corrections() -> bool:
        # the split the sampler draws training (and held-out) pixels from holds every corrected pixel;
        # the trainer recounts first and installs the new split just after, before its next step
        split = trainer.sampler.split
        for value, (ys, xs) in ((2, missed), (1, false)):
            drawn_from = np.concatenate([split.train.get(value, np.zeros(0, np.int64)),
                                         split.val.get(value, np.zeros(0, np.int64))])
            if not np.isin((ys + y0) * split.width + (xs + x0), drawn_from).all():
                return False
        return True

    qtbot.waitUntil(split_holds_corrections, timeout=60_000)
    split = trainer.sampler.split
    assert sum(len(v) for v in split.train.values()) > 0
    step_after_apply = ctrl.state.training.step
    qtbot.waitUntil(lambda: ctrl.state.training.step > step_after_apply, timeout=60_000)  # and it goes on
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
