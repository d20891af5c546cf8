"""Peak memory of napari with the 65536² sample: browse, paint at full resolution, predict live.

Run headless under a virtual X server (Qt's xcb backend; ``offscreen`` does not work with napari)::

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1920x1080x24" python benchmarks/gui_memory.py

It opens the demo viewer with the 65536² procedural sample and its scribble project, zooms out to
the whole image, zooms in at full resolution in several places and pans, paints strokes there
through the project's scribble window, and lets the live prediction (an untrained default model)
compute the visible chunks. It records the process's peak RSS (``ru_maxrss`` and a psutil sampler
every 50 ms) and every read of the image, ground truth, scribble store and prediction layers larger
than one full-resolution plane's worth of pixels. Target: < 3 GB peak, no full-resolution plane.
Prints a table, then one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

PLACES = [(20000, 20000), (45000, 12000), (60000, 60000), (32768, 32768), (5000, 50000)]


class PeakSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` s (a daemon thread)."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)


class ReadWatch:
    """Records the largest read (in pixels) of the plugin's display arrays, per class and level."""

    def __init__(self, full_pixels: int) -> None:
        self.full_pixels = full_pixels
        self.largest: dict[str, int] = {}
        self.full_plane_reads: list[str] = []

    def watch(self, cls: type) -> None:
        original = cls.__getitem__
        watch = self

        def getitem(arr: Any, key: Any) -> Any:
            out = original(arr, key)
            n = int(np.size(out))
            tag = f"{cls.__name__}[level {arr.level}]"
            watch.largest[tag] = max(watch.largest.get(tag, 0), n)
            if arr.level == 0 and n >= watch.full_pixels:
                watch.full_plane_reads.append(tag)
            return out

        cls.__getitem__ = getitem  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", default="/tmp/gui_memory_large.png")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds to rest at each place")
    args = parser.parse_args()

    sampler = PeakSampler()
    sampler.start()
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from scribble_unet._napari import open_demo_viewer
    from scribble_unet.image.procedural import ProceduralSample
    from scribble_unet.inference.live import CachedMaskLevel
    from scribble_unet.model.checkpoint import Checkpoint
    from scribble_unet.model.unet import ModelConfig, build_model
    from scribble_unet.scribbles.project import ScribbleOverviewLevel

    def spin(seconds: float, cond: Any = None) -> None:
        loop = QEventLoop()
        t0 = time.monotonic()
        poll = QTimer()
        poll.setInterval(50)
        poll.timeout.connect(lambda: loop.quit() if (cond and cond()) or time.monotonic() - t0 > seconds else None)
        poll.start()
        loop.exec()
        poll.stop()

    # Watch the sample's renders: a full-resolution plane would be one render of 65536² pixels.
    renders: list[tuple[int, int]] = []
    orig_render = ProceduralSample.render_image

    def render_image(self: Any, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        renders.append((level, (y1 - y0) * (x1 - x0)))
        return orig_render(self, level, y0, y1, x0, x1)

    ProceduralSample.render_image = render_image  # type: ignore[method-assign]

    work = Path(tempfile.mkdtemp(prefix="scribble-unet-gui-mem-"))
    t_open = time.perf_counter()
    viewer = open_demo_viewer(work, sample="large", show=True)
    viewer.window._qt_window.resize(1920 + 450, 1080 + 120)
    ctrl = viewer.window._dock_widgets["Scribble U-Net (napari-scribble-unet)"].widget().controller
    spin(1.0)
    open_s = time.perf_counter() - t_open
    h, w = ctrl.source.shape_yx
    full = h * w
    watch = ReadWatch(full)
    watch.watch(CachedMaskLevel)
    watch.watch(ScribbleOverviewLevel)
    rss_open = sampler.peak

    # An untrained default model predicts live (the widget's default architecture).
    from scribble_unet.model.normalize import Normalization

    lo, hi = ctrl.image_layer.contrast_limits
    # an untrained model, as the recorded runs used: no pixel forest (an untrained one is empty but widens the halo)
    ckpt = Checkpoint.from_model(build_model(ModelConfig(pixel_forest=False), seed=0),
                                 Normalization(low=(float(lo),), high=(float(hi),)))
    ctrl.set_checkpoint(ckpt)

    steps: list[dict[str, Any]] = []

    def record(what: str, t0: float) -> None:
        steps.append({"what": what, "s": round(time.perf_counter() - t0, 2), "rss_peak_mb": round(sampler.peak / 2**20),
                      "chunks": ctrl.live.computed if ctrl.live else 0})

    t0 = time.perf_counter()
    viewer.reset_view()
    spin(args.settle)
    record("zoom out to the whole image", t0)
    painted = 0
    for i, (cy, cx) in enumerate(PLACES):
        t0 = time.perf_counter()
        viewer.scene.camera.zoom = 1.0
        viewer.scene.camera.center = (cy, cx)
        spin(0.3)
        # Wait for the window to follow and the visible chunks to be computed (or 60 s).
        spin(60, lambda: ctrl.live is not None and ctrl.live.pending() == 0)
        layer = ctrl.scribble_layer
        oy, ox = layer.data.origin
        assert oy <= cy < oy + layer.data.shape[0] and ox <= cx < ox + layer.data.shape[1], "window did not follow"
        cols = np.arange(cx - 300, cx + 300) - ox
        for k, value in enumerate((2, 1)):
            rows = np.full(cols.size, cy - oy + 40 * k)
            layer.data_setitem((np.r_[rows, rows + 1], np.r_[cols, cols]), value)
            painted += 2 * cols.size
        record(f"zoom in at {cy},{cx}, predict, paint", t0)
        if i == 0 and args.screenshot:
            viewer.screenshot(args.screenshot, canvas_only=True)
        # Pan by about a screen.
        t0 = time.perf_counter()
        for _ in range(5):
            c = viewer.scene.camera.center
            viewer.scene.camera.center = (c[-2] + 150, c[-1] + 300)
            spin(0.05)
        spin(args.settle)
        record("pan", t0)
    t0 = time.perf_counter()
    viewer.scene.camera.zoom = 0.12
    viewer.scene.camera.center = (32768, 32768)
    spin(args.settle)
    record("zoom to a mid level", t0)
    t0 = time.perf_counter()
    viewer.reset_view()
    spin(args.settle)
    record("zoom out again (scribbles drawn by the overview)", t0)
    ov = ctrl.overview_layer
    ov_pixels = np.asarray(ov._slice.image.raw)
    overview_shows = int((ov_pixels > 0).sum())

    store = ctrl.store
    in_store = sum(int((store[cy - 1 : cy + 42, cx - 300 : cx + 300] > 0).sum()) for cy, cx in PLACES)
    chunks = ctrl.live.computed
    ctrl.shutdown()
    viewer.close()
    napari.Viewer.close_all()
    sampler.stop_flag.set()
    sampler.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    largest_render = max((n for _, n in renders), default=0)
    full_plane = largest_render >= full or bool(watch.full_plane_reads)
    res = {
        "bench": "gui_memory", "shape": [h, w], "open_s": round(open_s, 2), "rss_after_open_mb": round(rss_open / 2**20),
        "peak_rss_psutil_mb": round(sampler.peak / 2**20), "ru_maxrss_mb": round(maxrss / 2**20),
        "pixels_painted": painted, "painted_pixels_in_store": in_store, "prediction_chunks_computed": chunks,
        "overview_pixels_drawn_zoomed_out": overview_shows,
        "largest_image_render_px": largest_render, "image_renders": len(renders),
        "largest_layer_reads_px": watch.largest, "full_resolution_plane_loaded": full_plane, "steps": steps,
    }
    res["targets"] = {"peak_lt_3GB": max(sampler.peak, maxrss) < 3 * 2**30, "no_full_plane": not full_plane}
    rows = [(s["what"], f"{s['s']} s, peak RSS so far {s['rss_peak_mb']} MB, {s['chunks']} chunks predicted")
            for s in steps]
    rows += [
        ("image", f"{h} x {w} (a full uint16 plane would be {full * 2 / 2**30:.0f} GiB)"),
        ("RSS after opening", f"{res['rss_after_open_mb']} MB"),
        ("peak RSS (psutil, 50 ms) / ru_maxrss", f"{res['peak_rss_psutil_mb']} MB / {res['ru_maxrss_mb']} MB"),
        ("largest image render (px)", f"{largest_render} ({len(renders)} renders)"),
        ("largest layer reads (px)", json.dumps(watch.largest)),
        ("painted px / found in the store", f"{painted} / {in_store}"),
        ("overview pixels drawn zoomed out", overview_shows),
        ("full-resolution plane loaded", full_plane),
    ]
    for k, v in res["targets"].items():
        rows.append((f"target {k}", "met" if v else "NOT met"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
