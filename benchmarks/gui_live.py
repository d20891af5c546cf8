"""Training and the live view together in napari: steps/s with the live view on and paused, how fast
a panned view fills, how soon the first prediction shows, GUI stalls and peak memory.

Run under a virtual X server (Qt's xcb backend) with PyQt6::

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1920x1080x24" \\
        python benchmarks/gui_live.py --image IMG.zarr --scribbles SCR.zarr --duration 90

IMG is any 2D zarr image (opened through the plugin's reader), SCR a scribble array of the same shape
(0 unlabelled, 1 background, 2.. classes); it is copied into a fresh project. The camera is put at
full resolution (one screen pixel per image pixel, a 1920x1080 canvas) on the scribbles' centre;
Train is pressed with the widget's defaults (no step limit); during the first 60 % of the run the
live view is on and, half-way through it, the camera pans once to a place not predicted yet (before
Train, the same pan the other way and back measures napari's own stall on a pan: ``idle_pan_stall_ms``);
during the last 40 % the live view is paused (the "Pause live view" button).

``--make-demo DIR`` writes a 4096 x 4096 (16.8 Mpx) test pair into DIR and prints the two paths:
the real DSB 2018 nuclei image tiled 8 x 8 (alternate tiles mirrored), with object and background
strokes drawn from its hand-made instance mask in the central 1024 x 1024 px only.

Prints a table, then one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gui_responsiveness import HandlerTimer, StallMeter, _run_until, plugin_viewer

PLUGIN = "napari-scribble-unet"
CANVAS = (1080, 1920)


def make_demo(folder: Path) -> tuple[Path, Path]:
    """The tiled nuclei image and its scribbles (see the module docstring)."""
    import zarr
    from scipy import ndimage as ndi

    from scribble_unet.image.nuclei import load_nuclei

    image, instances = load_nuclei()
    rows_img, rows_ins = [], []
    for i in range(8):
        ri, rl = [], []
        for j in range(8):
            a, b = image, instances
            if i % 2:
                a, b = a[::-1], b[::-1]
            if j % 2:
                a, b = a[:, ::-1], b[:, ::-1]
            ri.append(a)
            rl.append(b)
        rows_img.append(np.concatenate(ri, axis=1))
        rows_ins.append(np.concatenate(rl, axis=1))
    big, truth = np.concatenate(rows_img), np.concatenate(rows_ins)
    scr = np.zeros(big.shape, np.uint8)
    y0, x0 = 1536, 1536
    sub = truth[y0 : y0 + 1024, x0 : x0 + 1024] > 0
    inner, near = ndi.binary_erosion(sub, iterations=2), ndi.binary_dilation(sub, iterations=4)
    view = scr[y0 : y0 + 1024, x0 : x0 + 1024]
    for row in range(24, 1024 - 3, 48):
        for value, where in ((2, inner[row]), (1, ~near[row] & ((np.arange(1024) // 64) % 4 == 0))):
            cols = np.flatnonzero(where)
            for dr in range(3):
                view[row + dr, cols] = value
    folder.mkdir(parents=True, exist_ok=True)
    img_path, scr_path = folder / "nuclei_tiled_4096.zarr", folder / "nuclei_tiled_4096_scribbles.zarr"
    zarr.create_array(img_path, shape=big.shape, chunks=(512, 512), dtype=big.dtype, overwrite=True)[:] = big
    zarr.create_array(scr_path, shape=scr.shape, chunks=(512, 512), dtype=np.uint8, overwrite=True)[:] = scr
    return img_path, scr_path


class GcPauses:
    """Python's garbage collections on the GUI thread that took over ``min_ms`` (a full collection of
    napari's and torch's objects can take a few hundred ms, in whatever handler allocates then)."""

    def __init__(self, min_ms: float = 20.0) -> None:
        import gc
        import threading

        self.min_ms, self.main = min_ms, threading.get_ident()
        self.pauses: list[tuple[float, int, float]] = []  # (start, generation, ms)
        self._t0 = 0.0
        self._gc, self._threading = gc, threading
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if self._threading.get_ident() != self.main:
            return
        if phase == "start":
            self._t0 = time.perf_counter()
        elif (ms := 1000 * (time.perf_counter() - self._t0)) >= self.min_ms:
            self.pauses.append((self._t0, int(info.get("generation", -1)), ms))

    def stop(self) -> None:
        if self._callback in self._gc.callbacks:
            self._gc.callbacks.remove(self._callback)


def _copy_scribbles(src: Any, dst: Any, block: int = 4096) -> tuple[float, float]:
    """Copy ``src`` into ``dst`` block by block; returns the centre of the labelled pixels."""
    h, w = src.shape
    total, sy, sx = 0, 0.0, 0.0
    for y in range(0, h, block):
        for x in range(0, w, block):
            a = np.asarray(src[y : y + block, x : x + block])
            if a.any():
                dst[y : y + block, x : x + block] = a
                ys, xs = np.nonzero(a)
                total += ys.size
                sy += float((ys + y).sum())
                sx += float((xs + x).sum())
    if total == 0:
        raise SystemExit("the scribble array has no labelled pixel")
    return sy / total, sx / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image")
    parser.add_argument("--scribbles")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of training measured")
    parser.add_argument("--tick-ms", type=int, default=15)
    parser.add_argument("--no-gc-hold", action="store_true",
                        help="let Python's full collections scan the old heap during training (as before the "
                             "ninth session), to measure what holding them off changes")
    parser.add_argument("--make-demo", default=None, help="write a test image and scribbles here and exit")
    args = parser.parse_args()
    if args.make_demo:
        for p in make_demo(Path(args.make_demo)):
            print(p)
        return
    if not (args.image and args.scribbles):
        parser.error("--image and --scribbles are needed")

    import napari
    import zarr

    from scribble_unet.scribbles.project import Project

    if args.no_gc_hold:
        from scribble_unet._napari import _gc

        _gc.hold = lambda owner: None  # type: ignore[assignment]
    work = Path(tempfile.mkdtemp(prefix="scribble-unet-gui-live-"))
    viewer, main_widget, ctrl = plugin_viewer(1.0)
    # A canvas of 1920x1080 next to the dock (use an Xvfb screen larger than that, e.g. 2560x1440).
    win = viewer.window._qt_window
    ch0, cw0 = (int(v) for v in viewer.canvas.size)
    win.resize(win.width() + CANVAS[1] - cw0, win.height() + CANVAS[0] - ch0)
    _run_until(lambda: False, 1.0)
    meter = StallMeter(args.tick_ms)
    meter.start()
    gc_pauses = GcPauses()
    t_open = time.perf_counter()
    layers = viewer.open(args.image, plugin=PLUGIN)
    image_layer = layers[0]
    ctrl.set_image_layer(image_layer)
    shape = ctrl.source.shape_yx
    src = zarr.open_array(args.scribbles, mode="r")
    if tuple(src.shape) != tuple(shape):
        raise SystemExit(f"scribbles {tuple(src.shape)} and image {tuple(shape)} differ in shape")
    store = Project.open(work / "project").open_scribbles(shape)
    cy, cx = _copy_scribbles(src, store)
    ctrl.open_project(work / "project")
    _run_until(lambda: False, 1.0)
    open_stall = meter.summary()
    open_s = time.perf_counter() - t_open
    canvas = tuple(int(v) for v in viewer.canvas.size)
    cam = viewer.scene.camera
    scale = ctrl.placement.scale
    cam.zoom = 1.0 / scale[0]
    cam.center = ctrl.placement.world((cy, cx))
    _run_until(lambda: False, 0.5)
    region = ctrl.visible_region()

    # where the pan measured while training goes: a place not predicted yet
    ch, cw = canvas
    h, w = shape
    ny, nx = cy, cx + 1.5 * cw if cx + 2 * cw < w else cx - 1.5 * cw
    if not (cw / 2 <= nx <= w - cw / 2):
        ny, nx = (cy + 1.5 * ch if cy + 2 * ch < h else cy - 1.5 * ch), cx
    # napari's own cost of a pan on this machine, before anything trains or predicts: the same distance
    # the other way (kept inside the image), then back
    meter.lateness.clear()
    meter.worst = 0.0
    by = min(max(2 * cy - ny, ch / 2), h - ch / 2)
    bx = min(max(2 * cx - nx, cw / 2), w - cw / 2)
    cam.center = ctrl.placement.world((by, bx))
    _run_until(lambda: False, 1.5)
    cam.center = ctrl.placement.world((cy, cx))
    _run_until(lambda: False, 1.5)
    idle_pan = meter.summary()

    # the main thread's view of the run
    steps: list[tuple[float, int]] = []
    ctrl.state.training.events.step.connect(lambda s: steps.append((time.perf_counter(), s)))
    redraws: list[tuple[float, int, int]] = []  # (time, computed, missing) at each prediction redraw
    refresh = ctrl.prediction.refresh

    def timed_refresh() -> None:
        refresh()
        live = ctrl.live
        redraws.append((time.perf_counter(), live.computed if live else 0, live.missing() if live else -1))

    ctrl.prediction.refresh = timed_refresh  # type: ignore[method-assign]
    handlers = HandlerTimer()
    for name in ("_on_train_event", "_on_live_chunk", "refresh_view", "set_checkpoint"):
        handlers.wrap(ctrl, name)
    handlers.wrap(ctrl.live_view, "redraw")
    handlers.wrap(ctrl.live_view, "_redraw_uncertainty")

    meter.lateness.clear()
    meter.big.clear()
    meter.worst = 0.0
    train = main_widget.train
    train.train_form.set_value("steps", None)
    t_train, t_train_epoch = time.perf_counter(), time.time()
    train.start_button.click()
    _run_until(lambda: bool(steps), 120.0)
    t_first_step = steps[0][0] if steps else time.perf_counter()
    live_phase = 0.6 * args.duration
    _run_until(lambda: False, live_phase / 2)

    # pan once, to a place not predicted yet, while training
    t_pan = time.perf_counter()
    cam.center = ctrl.placement.world((ny, nx))
    _run_until(lambda: any(t > t_pan + 0.15 and m == 0 for t, _, m in redraws), 60.0)
    filled = [t for t, _, m in redraws if t > t_pan + 0.15 and m == 0]
    view_fill_s = filled[0] - t_pan if filled else None
    pan_region = ctrl.visible_region()
    _run_until(lambda: False, max(0.0, t_first_step + live_phase - time.perf_counter()))
    t_live_end = time.perf_counter()

    main_widget.predict.pause_button.setChecked(True)
    t_pause = time.perf_counter()
    _run_until(lambda: False, 0.4 * args.duration)
    t_end = time.perf_counter()
    meter.stop()
    gc_pauses.stop()
    busy = meter.summary()

    def rate(t0: float, t1: float) -> float | None:
        inside = [s for t, s in steps if t0 <= t <= t1]
        return None if len(inside) < 2 else (inside[-1] - inside[0]) / (t1 - t0)

    live_rate = rate(t_first_step, t_live_end)
    paused_rate = rate(t_pause + 1.0, t_end)  # the step in flight when pausing is not counted
    first = [t for t, c, _ in redraws if c > 0]
    live = ctrl.live
    ctrl.stop_training()
    viewer.close()
    napari.Viewer.close_all()
    res = {
        "bench": "gui_live", "image": str(args.image), "shape": list(shape), "canvas_hw": list(canvas),
        "duration_s": args.duration, "tile": ctrl.state.prediction.tile,
        "view_region": list(region) if region else None, "pan_region": list(pan_region) if pan_region else None,
        "view_chunks": len(live.grid.chunks_touching(*pan_region)) if live and pan_region else None,
        "steps": steps[-1][1] if steps else 0, "chunks_computed": live.computed if live else 0,
        "training_yields": ctrl.scheduler.holds,
        "live_chunk_s": {k: round(v, 2) for k, v in ctrl.scheduler.chunk_seconds.items()},
        "refresh_change": None if ctrl.scheduler.change is None else round(ctrl.scheduler.change, 4), "open_s": round(open_s, 2), "open_stall_max_ms": round(open_stall["max_ms"], 1),
        "first_step_s": round(t_first_step - t_train, 2),
        "train_steps_per_s_live": None if live_rate is None else round(live_rate, 3),
        "train_steps_per_s_paused": None if paused_rate is None else round(paused_rate, 3),
        "live_over_paused": None if not (live_rate and paused_rate) else round(live_rate / paused_rate, 3),
        "view_fill_s": None if view_fill_s is None else round(view_fill_s, 2),
        "first_prediction_s": round(first[0] - t_train, 2) if first else None,
        "idle_pan_stall_ms": round(idle_pan["max_ms"], 1),
        "max_stall_ms": round(busy["max_ms"], 1), "p99_stall_ms": round(busy["p99_ms"], 1),
        "stalls_over_100ms": busy["over_100ms"], "worst_stall_at_s": busy["worst_at_s"],
        "handlers": handlers.summary(),
        "stalls": [{"at_s": round(a - t_train, 2), "ms": round(1000 * late), "during": handlers.during(a, b)}
                   for a, b, late in meter.big[:10]],
        "gc_pauses_ms": [{"at_s": round(t - t_train, 2), "generation": g, "ms": round(ms, 1)}
                         for t, g, ms in gc_pauses.pauses[:20]],
        "train_click_epoch_s": round(t_train_epoch, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    res["targets"] = {
        "live_over_paused_ge_0.8": bool(res["live_over_paused"] and res["live_over_paused"] >= 0.8),
        "view_fill_le_3s": view_fill_s is not None and view_fill_s <= 3,
        "first_prediction_le_10s": bool(first) and first[0] - t_train <= 10,
        "max_stall_lt_100ms": busy["max_ms"] < 100,
    }
    width = max(len(k) for k in res)
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
