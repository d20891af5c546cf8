"""The live view in a real napari viewer: uncertainty and objects layers, the pause control, the
zoomed-out view and the scheduler's priority (needs a display: run under xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from scribble_unet._napari import _live_view as live_view_module
from scribble_unet.export.instances import instances_to_zarr
from scribble_unet.export.to_zarr import predict_to_zarr
from scribble_unet.image import open_image
from scribble_unet.inference.instances import instance_labels
from scribble_unet.inference.live import quantise_uncertainty
from scribble_unet.inference.predict import predict_array
from scribble_unet.inference.uncertainty import uncertainty_from_probabilities
from scribble_unet.model.checkpoint import Checkpoint
from scribble_unet.model.normalize import Normalization
from scribble_unet.model.unet import ModelConfig, build_model

pytestmark = pytest.mark.gui
PLUGIN = "napari-scribble-unet"


class FakeTrainer:
    def __init__(self) -> None:
        self.paused = False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


def _checkpoint_with_objects(image: np.ndarray) -> Checkpoint:
    """A small untrained model whose head is shifted so that about 15 % of the image is foreground."""
    import torch

    model = build_model(ModelConfig(depth=2, width=4, norm="none"), seed=0)
    norm = Normalization(low=(float(np.percentile(image, 1)),), high=(float(np.percentile(image, 99.5)),))
    prob, _ = predict_array(Checkpoint.from_model(model, norm), image)
    p = np.clip(prob[0], 1e-6, 1 - 1e-6)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.bias -= float(np.percentile(np.log(p / (1 - p)), 85))
    return Checkpoint.from_model(model, norm)


def _assert_same_objects(a: np.ndarray, b: np.ndarray) -> None:
    """``a`` and ``b`` label the same objects, whatever numbers they give them."""
    assert np.array_equal(a > 0, b > 0)
    pairs = np.unique(np.stack([a[a > 0], b[a > 0]]), axis=1)
    assert pairs.shape[1] == np.unique(a[a > 0]).size == np.unique(b[b > 0]).size


def test_uncertainty_and_objects_layers_match_the_core_functions(make_napari_viewer, qtbot, tmp_path,
                                                                 monkeypatch) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "nuclei-dsb2018")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    ctrl.set_image_layer(viewer.layers["nuclei (DSB 2018)"])
    ctrl.open_project(tmp_path / "p")
    image = np.asarray(viewer.layers["nuclei (DSB 2018)"].data)
    ckpt = _checkpoint_with_objects(image)
    ctrl.set_live_tile(128)
    viewer.reset_view()
    ctrl.set_checkpoint(ckpt)
    qtbot.waitUntil(lambda: ctrl.live.pending() == 0 and len(ctrl.live.wanted) == 16, timeout=60_000)
    prob, mask = predict_array(ckpt, image)

    main.predict.uncertainty_check.setChecked(True)
    layer = viewer.layers["uncertainty"]
    shown = np.asarray(layer.data[:, :])
    assert np.array_equal(shown, quantise_uncertainty(uncertainty_from_probabilities(prob)))
    assert np.abs(shown / 255 - uncertainty_from_probabilities(prob)).max() <= 0.5 / 255 + 1e-6

    main.predict.diameter_spin.setValue(12.0)
    main.predict.split_check.setChecked(True)
    main.predict.objects_check.setChecked(True)
    qtbot.waitUntil(lambda: "objects" in viewer.layers and "split" in ctrl.state.prediction.objects,
                    timeout=60_000)
    objects = np.asarray(viewer.layers["objects"].data)
    assert objects.max() > 10
    assert np.array_equal(objects, instance_labels(mask, split=True, object_diameter=12.0))
    # The same objects as the export's instance labels (chunked, merged across chunk borders).
    out = tmp_path / "export.zarr"
    predict_to_zarr(ckpt, open_image(image), out, tile=128, progress=False, device="cpu")
    instances_to_zarr(out, split=True, object_diameter=12.0, progress=False)
    exported = zarr.open_group(out, mode="r")
    assert np.array_equal(exported["labels/mask/0"][:], mask)
    _assert_same_objects(objects, exported["labels/instances/0"][:])

    # "Next region to check": the camera goes to the most uncertain unpainted region.
    box = main.predict.next_region()
    y0, y1, x0, x1 = box
    cy, cx = viewer.scene.camera.center[-2:]
    assert y0 <= cy <= y1 and x0 <= cx <= x1
    u = uncertainty_from_probabilities(prob)
    assert u[y0:y1, x0:x1].mean() >= u.mean()

    # Asked again, it goes elsewhere: a region proposed before is not proposed again (issue 9)
    monkeypatch.setattr(live_view_module, "NEXT_REGION_SIDE", 128)
    ctrl.live_view.proposed = []
    first = main.predict.next_region()
    second = main.predict.next_region()
    (a0, a1, b0, b1), (c0, c1, d0, d1) = first, second
    assert a1 <= c0 or c1 <= a0 or b1 <= d0 or d1 <= b0  # no overlap
    assert u[a0:a1, b0:b1].mean() >= u[c0:c1, d0:d1].mean()


def test_pause_zoom_out_and_priority_on_a_large_image(make_napari_viewer, qtbot, tmp_path) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "rare-objects-64k")
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    ctrl.set_image_layer(viewer.layers["rare objects 64k"])
    ctrl.open_project(tmp_path / "big")
    trainer = FakeTrainer()
    ctrl.scheduler.attach_trainer(trainer)  # as training does once its trainer is built
    viewer.scene.camera.center = (40000, 30000)
    viewer.scene.camera.zoom = 4.0
    ckpt = Checkpoint.from_model(build_model(ModelConfig(depth=2, width=4, norm="none"), seed=0),
                                 Normalization(low=(400.0,), high=(4200.0,)))
    ctrl.set_checkpoint(ckpt)
    live = ctrl.live
    # Priority: the view's chunks are computed first, nearest the centre first, training yielding.
    qtbot.waitUntil(lambda: live.computed >= 1, timeout=60_000)
    assert trainer.paused or live.missing() == 0
    first = live.requested[0]
    wanted = live.grid.chunks_touching(*ctrl.visible_region())
    assert first in wanted
    qtbot.waitUntil(lambda: live.missing() == 0, timeout=120_000)
    assert set(live.requested) <= set(wanted) and ctrl.scheduler.holds >= 1
    qtbot.waitUntil(lambda: not trainer.paused, timeout=5_000)  # view complete: training runs again

    # Pausing the live view stops chunk requests, even after a pan.
    main.predict.pause_button.setChecked(True)
    assert ctrl.state.prediction.live_paused and "paused" in main.predict.status.text()
    qtbot.waitUntil(lambda: not ctrl.live_job.running or live.running.is_set(), timeout=1000)
    n = len(live.requested)
    viewer.scene.camera.center = (20000, 10000)
    qtbot.waitUntil(lambda: live.missing() > 0, timeout=5_000)  # the new view is wanted ...
    qtbot.wait(1500)
    assert len(live.requested) == n and not trainer.paused  # ... but nothing is computed
    main.predict.pause_button.setChecked(False)
    qtbot.waitUntil(lambda: len(live.requested) > n, timeout=60_000)

    # Zoomed out to the whole image: nothing off screen (the last small view) is queued.
    viewer.reset_view()
    qtbot.waitUntil(lambda: ctrl.state.prediction.zoomed_out, timeout=5_000)
    assert live.wanted == [] and live.pending() == 0
    n = len(live.requested)
    qtbot.wait(1000)
    assert len(live.requested) <= n + 1  # at most the chunk that was in flight
    assert "zoom in" in main.predict.status.text()


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="thread niceness is Linux's")
def test_job_threads_run_below_the_gui_thread(qtbot) -> None:
    # training and prediction threads must not take the cores from napari's painting
    import os
    import threading

    from scribble_unet._napari._workers import BACKGROUND_NICE, Job

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    gui_before = niceness()
    seen: list[int] = []

    def work():
        yield niceness()

    job: Job[int, None] = Job("probe")
    job.start(work, on_yield=seen.append)
    qtbot.waitUntil(lambda: not job.running and bool(seen), timeout=10000)
    assert seen == [max(BACKGROUND_NICE, gui_before)]
    assert niceness() == gui_before  # the GUI thread itself is untouched
