"""The plugin's manifest, reader, writer, sample data and Qt-free pieces (no display needed)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

pytest.importorskip("napari")

from scribble_unet.inference.live import CachedMaskLevel, LivePrediction
from scribble_unet.inference.predict import predict_lazy
from scribble_unet.model.checkpoint import Checkpoint
from scribble_unet.model.normalize import Normalization
from scribble_unet.model.unet import ModelConfig, build_model
from scribble_unet.scribbles.project import Project, WriteThroughWindow


def _tiny_checkpoint(seed: int = 0) -> Checkpoint:
    model = build_model(ModelConfig(depth=2, width=4, norm="none"), seed=seed)
    return Checkpoint.from_model(model, Normalization(low=(0.0,), high=(4000.0,)))


def test_manifest_is_valid_and_every_contribution_imports() -> None:
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-scribble-unet")
    assert pm.name == "napari-scribble-unet"
    keys = {s.key for s in pm.contributions.sample_data}
    assert keys == {"rare-objects-16k", "rare-objects-64k", "nuclei-dsb2018"}
    assert [w.display_name for w in pm.contributions.widgets] == ["Scribble U-Net"]  # one widget, tabs inside
    pm.validate_imports()


def test_sample_data_layers() -> None:
    from scribble_unet._napari._sample_data import large_sample, nuclei_sample

    (img, img_kw, kind), (truth, _truth_kw, tkind) = large_sample()
    assert kind == "image" and tkind == "labels" and img_kw["multiscale"]
    assert img[0].shape == (65536, 65536) and truth[0].shape == (65536, 65536)
    assert img_kw["metadata"]["scribble_unet_source"].shape_yx == (65536, 65536)
    (nuc, nuc_kw, _), (inst, _, _) = nuclei_sample()
    assert nuc.shape == (512, 512) and inst.max() > 100
    assert "Data Science Bowl" in nuc_kw["metadata"]["attribution"]


def test_writer_then_reader_round_trip(tmp_path) -> None:
    from scribble_unet._napari._reader import get_reader
    from scribble_unet._napari._writer import write_labels

    labels = np.zeros((3000, 2100), np.uint8)
    labels[100:200, 50:900] = 2
    labels[2500:, 2000:] = 1
    out = str(tmp_path / "labels.zarr")
    paths = write_labels(out, labels, {"name": "scribbles", "metadata": {"class_names": ["a", "b"]}})
    assert paths == [out]
    group = zarr.open_group(out + "/labels/scribbles", mode="r")
    assert group.attrs["image-label"]["properties"][2]["class"] == "b"
    assert [d["path"] for d in group.attrs["multiscales"][0]["datasets"]] == ["0", "1", "2"]
    reader = get_reader(out)
    assert reader is not None
    layers = reader(out)
    (data, kwargs, kind), = layers
    assert kind == "labels" and kwargs["multiscale"]
    assert np.array_equal(np.asarray(data[0]), labels)
    assert np.array_equal(np.asarray(data[1]), labels[::2, ::2])


def test_reader_opens_large_zarr_as_multiscale_and_ignores_other_files(tmp_path) -> None:
    from scribble_unet._napari._reader import get_reader

    arr = zarr.create_array(tmp_path / "big.zarr", shape=(5000, 4500), chunks=(1000, 1000), dtype=np.uint16)
    arr[:1000, :1000] = 7
    layers = get_reader(str(tmp_path / "big.zarr"))(str(tmp_path / "big.zarr"))
    (data, kwargs, kind), = layers
    assert kind == "image" and kwargs["multiscale"] and data[0].shape == (5000, 4500)
    assert data[1].shape == (2500, 2250) and int(data[1][0, 0]) == 7
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None


def test_write_through_window_puts_every_edit_in_the_store(tmp_path) -> None:
    project = Project.open(tmp_path / "proj")
    store = project.open_scribbles((2000, 3000))
    seen = []
    win = WriteThroughWindow.load(store, 512, 1536, 1024, 2048, on_write=seen.append)
    assert isinstance(win, np.ndarray) and win.origin == (512, 1024)
    win[(np.array([3, 4, 5]), np.array([10, 11, 900]))] = 2  # what napari's data_setitem does
    win[100:110, 200:220] = 1  # what undo of a fill does
    reopened = zarr.open_array(project.scribbles_path, mode="r")
    assert reopened[515, 1034] == 2 and reopened[517, 1924] == 2 and reopened[516, 1034] == 0
    assert (reopened[612:622, 1224:1244] == 1).all()
    assert int((reopened[:] > 0).sum()) == 3 + 200
    assert seen[0] == (515, 518, 1034, 1925)
    view = win[:10]
    view[0, 0] = 1  # a view does not write through
    assert reopened[512, 1024] == 0
    # Reopening the project finds the same store.
    assert np.array_equal(Project.open(tmp_path / "proj").open_scribbles((2000, 3000))[:], reopened[:])


def test_project_refuses_scribbles_of_another_shape(tmp_path) -> None:
    from scribble_unet.errors import ScribbleUNetError

    project = Project.open(tmp_path)
    project.open_scribbles((100, 100))
    with pytest.raises(ScribbleUNetError, match="shape"):
        project.open_scribbles((100, 200))


def test_live_prediction_computes_only_wanted_chunks_and_matches_lazy() -> None:
    image = (np.random.default_rng(0).random((300, 260)) * 4000).astype(np.uint16)
    ckpt = _tiny_checkpoint()
    from scribble_unet.image import open_image
    from scribble_unet.inference.schedule import MachineScheduler

    live = LivePrediction(open_image(image), tile=64, scheduler=MachineScheduler(refresh_every_s=0))
    live.set_checkpoint(ckpt)
    live.request(70, 100, 130, 140)  # touches chunks (1, 2) and (1, 2)... only row 1, col 2
    gen = live.run()
    first = next(gen)
    assert first == (1, 2)
    assert live.pending() == 0 and live.computed == 1
    expected = predict_lazy(ckpt, image, tile=64).mask.compute(scheduler="synchronous")
    view = CachedMaskLevel(live, 0)
    got = view[64:128, 128:192]
    assert np.array_equal(got, expected[64:128, 128:192])
    assert not view[0:64, 0:64].any()  # not computed: shown empty
    coarse = CachedMaskLevel(live, 1)
    assert coarse.shape == (150, 130)
    assert np.array_equal(coarse[32:64, 64:96], expected[64:128:2, 128:192:2])
    # A new model makes the cached chunk stale: it is computed again.
    live.set_checkpoint(_tiny_checkpoint(seed=1))
    assert live.pending() == 1
    assert next(gen) == (1, 2) and live.computed == 2
    live.stop()
    with pytest.raises(StopIteration):
        next(gen)


def _max_pool(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape
    pad = np.zeros((-(-h // f) * f, -(-w // f) * f), a.dtype)
    pad[:h, :w] = a
    return pad.reshape(pad.shape[0] // f, f, pad.shape[1] // f, f).max(axis=(1, 3))


def test_scribble_overview_max_pools_only_scribbled_chunks_and_follows_writes(tmp_path) -> None:
    from scribble_unet.scribbles.project import ScribbleOverview

    store = Project.open(tmp_path / "p").open_scribbles((3000, 5000))
    store[2001, 100:2100] = 3  # a 1 px stroke across 5 chunks of 512²
    store[10:12, 4990:5000] = 2  # at the image's ragged corner
    overview = ScribbleOverview(store, n_levels=4)
    assert overview.chunks == {(3, 0), (3, 1), (3, 2), (3, 3), (3, 4), (0, 9)}
    levels = overview.levels()
    assert [lv.shape for lv in levels] == [(3000, 5000), (1500, 2500), (750, 1250), (375, 625)]
    full = store[:]
    for lvl, arr in enumerate(levels):
        assert np.array_equal(arr[:, :], _max_pool(full, 2**lvl)), lvl
    assert overview.reads == 4 * 6  # one read per scribbled chunk and level, never the whole plane
    assert levels[3][250, 12:263].min() == 3  # the thin stroke is still there 8x zoomed out
    assert np.array_equal(levels[2][498:502:2, 20:40], _max_pool(full, 4)[498:502:2, 20:40])
    assert levels[3][1, 624] == 2 and levels[3][250, 20] == 3
    # Writes through the paintable window reach the overview (no stale pooled chunk).
    win = WriteThroughWindow.load(store, 1536, 2560, 0, 1024, on_write=overview.invalidate)
    win[2001 - 1536, 100:1024] = 0  # erase the first part of the stroke
    win[(np.array([100]), np.array([700]))] = 2  # one painted pixel, as data_setitem does
    assert levels[3][250, 12:128].max() == 0 and levels[3][250, 128:263].min() == 3
    assert levels[3][(1536 + 100) // 8, 700 // 8] == 2
    # At level 0 the window's box is left to the window layer.
    overview.hidden = (1536, 2560, 0, 1024)
    assert levels[0][1636, 700] == 0 and levels[1][1636 // 2, 350] == 2
    assert levels[0][2001, 1500] == 3  # outside the window: still drawn


def test_core_messages_speak_of_widget_fields_not_command_line_options() -> None:
    from scribble_unet._napari._notify import gui_words

    message = gui_words("scribbles contain label value 3; declare more classes (--classes) or erase value 3")
    assert "--" not in message and "Object classes field" in message


def test_the_cycle_collector_is_held_off_the_old_heap_while_any_run_holds_it() -> None:
    import gc

    from scribble_unet._napari import _gc

    a, b = object(), object()
    assert not _gc.holding() and gc.get_freeze_count() == 0
    _gc.hold(a)
    frozen = gc.get_freeze_count()
    assert _gc.holding() and frozen > 0
    _gc.hold(b)  # a second run (another viewer): nothing frozen twice
    assert gc.get_freeze_count() == frozen
    _gc.release(a)
    assert _gc.holding() and gc.get_freeze_count() == frozen  # b still runs
    _gc.release(b)
    assert not _gc.holding() and gc.get_freeze_count() == 0
    _gc.release(b)  # released twice (finished, then closed): harmless
    assert gc.get_freeze_count() == 0
