"""Opening a large image in a real viewer: the GUI thread reads a bounded number of chunks."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zarr

pytestmark = pytest.mark.gui
PLUGIN = "napari-scribble-unet"


def test_opening_a_large_image_and_a_project_reads_few_chunks_on_the_gui_thread(
        make_napari_viewer, qtbot, tmp_path, monkeypatch) -> None:
    import dask

    from scribble_unet._napari._display import PYRAMID_KEY
    from scribble_unet.image.stored import StoredSource
    from scribble_unet.scribbles.project import Project

    n, c = 16384, 1024  # 256 chunks; only two hold data (the others read as the fill value)
    path = tmp_path / "big.zarr"
    arr = zarr.create_array(path, shape=(n, n), chunks=(c, c), dtype=np.uint16, fill_value=0)
    arr[8192:9216, 8192:9216] = 300  # the central chunk
    arr[0:c, n - c : n] = 900  # a corner chunk
    # A stroke far from the paintable window (which opens at the image's centre).
    store = Project.open(tmp_path / "project").open_scribbles((n, n))
    store[100:103, 200:600] = 2

    reads = {"gui": 0, "worker": 0}
    read_level = StoredSource._read_level

    def counted(self, *args, **kwargs):
        reads["gui" if threading.current_thread() is threading.main_thread() else "worker"] += 1
        return read_level(self, *args, **kwargs)

    monkeypatch.setattr(StoredSource, "_read_level", counted)
    viewer = make_napari_viewer()
    _, main = viewer.window.add_plugin_dock_widget(PLUGIN, "Scribble U-Net")
    ctrl = main.controller
    # dask computes on the calling thread: a read the GUI waits for is counted as a GUI read.
    with dask.config.set(scheduler="synchronous"):
        layer, = viewer.open(str(path), plugin=PLUGIN)
        pyramid = layer.metadata[PYRAMID_KEY]
        ctrl.set_image_layer(layer)
        ctrl.open_project(tmp_path / "project")
        qtbot.waitUntil(pyramid.done.is_set, timeout=120_000)
        qtbot.waitUntil(lambda: tuple(layer.contrast_limits) == (0.0, 900.0), timeout=10_000)
        qtbot.wait(200)  # the final redraw
    # The reader's contrast estimate reads the central chunk; nothing else is read on the GUI
    # thread while the view is zoomed out. Every chunk is read once, in the worker.
    assert reads["gui"] <= 2, reads
    assert reads["worker"] == 256 and pyramid.reads == 256
    assert layer.multiscale and layer.data[0].shape == (n, n) and len(layer.data) == 5
    coarsest = np.asarray(layer.data[-1])
    assert coarsest.shape == (1024, 1024)
    assert coarsest[8192 // 16, 8192 // 16] == 300 and coarsest[0, (n - c) // 16] == 900 and coarsest[0, 0] == 0
    assert np.array_equal(np.asarray(layer.data[2][2048:2304, 2048:2304]), np.full((256, 256), 300, np.uint16))
    # The stroke outside the window is still drawn by the overview.
    assert ctrl.overview is not None and ctrl.overview_layer.data[3][100 // 8, 300 // 8] == 2
