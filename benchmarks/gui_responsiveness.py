"""GUI responsiveness of the napari plugin while it trains and predicts live.

Run headless under a virtual X server (Qt's xcb backend; ``offscreen`` does not work with napari)::

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1920x1080x24" python benchmarks/gui_responsiveness.py
    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1920x1080x24" python benchmarks/gui_responsiveness.py --sample small

It opens the demo viewer (the nuclei sample, or the 16384² procedural sample zoomed in to full
resolution), paints scribbles programmatically through the scribble layer (as the brush does),
presses Train with the widget's default model and settings, and measures

(a) the GUI thread's stalls: a QTimer fires every ``--tick-ms`` ms on the main thread; lateness =
    actual interval - nominal interval, over ``--duration`` s of training (target: max < 100 ms);
(b) Train pressed -> first prediction chunk shown in the field of view (target <= 20 s);
(c) checkpoint received on the main thread -> every visible chunk recomputed with it and the layer
    refreshed, on a 1920x1080 canvas at full resolution (target <= 2 s);
(d) viewer closed -> every worker stopped, and no worker thread left (target <= 2 s).

The main-thread handlers of the controller are timed too, to say what a stall came from.
Prints a table, then one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CANVAS = (1080, 1920)  # (height, width) of the field of view measured in (c)


def plugin_viewer(settle_s: float) -> tuple[Any, Any, Any]:
    """A shown napari viewer sized for a 1920x1080 canvas beside the plugin's dock widget, after
    ``settle_s`` seconds of event loop: ``(viewer, main_widget, controller)``."""
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920 + 450, 1080 + 120)
    _, main_widget = viewer.window.add_plugin_dock_widget("napari-scribble-unet", "Scribble U-Net")
    _run_until(lambda: False, settle_s)
    return viewer, main_widget, main_widget.controller


def _run_until(cond: Callable[[], bool], timeout: float) -> bool:
    """Run the Qt event loop (a real one, not a processEvents loop) until ``cond()`` or timeout."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    t0 = time.monotonic()
    result = {"ok": False}

    def check() -> None:
        if cond():
            result["ok"] = True
            loop.quit()
        elif time.monotonic() - t0 > timeout:
            loop.quit()

    poll = QTimer()
    poll.setInterval(50)
    poll.timeout.connect(check)
    poll.start()
    check()
    if not result["ok"] and time.monotonic() - t0 <= timeout:
        loop.exec()
    poll.stop()
    return result["ok"]


class StallMeter:
    """A main-thread QTimer that records how late each of its ticks is."""

    def __init__(self, tick_ms: int) -> None:
        from qtpy.QtCore import Qt, QTimer

        self.tick = tick_ms / 1000
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(tick_ms)
        self.timer.timeout.connect(self._on_tick)
        self.last: float | None = None
        self.lateness: list[float] = []
        self.big: list[tuple[float, float, float]] = []  # (start, end, lateness) of stalls over 100 ms
        self.worst = 0.0
        self.worst_at = 0.0
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.last = None
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _on_tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            late = now - self.last - self.tick
            self.lateness.append(late)
            if late > 0.1:
                self.big.append((now - late - self.tick, now, late))
            if late >= self.worst:
                self.worst, self.worst_at = late, now - self.t0
        self.last = now

    def summary(self) -> dict[str, float]:
        a = np.maximum(np.asarray(self.lateness or [0.0]), 0.0) * 1000
        return {"ticks": len(self.lateness), "max_ms": float(a.max()), "p99_ms": float(np.percentile(a, 99)),
                "p50_ms": float(np.percentile(a, 50)), "over_100ms": int((a > 100).sum()),
                "worst_at_s": round(self.worst_at, 2)}


class HandlerTimer:
    """Wraps controller methods that run on the main thread and records their durations."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.calls: list[tuple[str, float, float]] = []

    def wrap(self, obj: Any, name: str) -> None:
        fn = getattr(obj, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.perf_counter()
                self.times[name].append(end - t)
                self.calls.append((name, t, end))

        setattr(obj, name, timed)

    def during(self, t0: float, t1: float) -> list[str]:
        """Handlers (with their duration) that ran between ``t0`` and ``t1``."""
        return [f"{n} {1000 * (b - a):.0f} ms" for n, a, b in self.calls if a < t1 and b > t0 and b - a > 0.005]

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: {"calls": len(v), "max_ms": round(max(v) * 1000, 1), "mean_ms": round(float(np.mean(v)) * 1000, 1)}
                for k, v in self.times.items()}


def _truth_window(viewer: Any, sample: str, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    if sample == "nuclei":
        return np.asarray(viewer.layers["nuclei instances"].data)[y0:y1, x0:x1]
    truth = next(ly for ly in viewer.layers if ly.name.endswith("ground truth"))
    return np.asarray(truth.data[0][y0:y1, x0:x1])


def paint(layer: Any, truth: np.ndarray, oy: int, ox: int, step: int = 48) -> int:
    """Paint object strokes (2) inside objects and background strokes (1) away from them, row by row.

    ``truth`` covers window rows/cols ``oy..``, ``ox..`` of the scribble layer; returns pixels painted.
    """
    from scipy import ndimage as ndi

    near = ndi.binary_dilation(truth > 0, iterations=4)
    inner = ndi.binary_erosion(truth > 0, iterations=2)
    painted = 0
    for row in range(step // 2, truth.shape[0] - 3, step):
        for value, where in ((2, inner[row]), (1, ~near[row])):
            cols = np.flatnonzero(where)
            if value == 1:
                cols = cols[(cols // 64) % 4 == 0]  # background: dashes, like short brush strokes
            rows = np.full(cols.size, row)
            layer.data_setitem((oy + np.r_[rows, rows + 1, rows + 2], ox + np.r_[cols, cols, cols]), value)
            painted += 3 * cols.size
    # On a sparse image, rows miss most objects: also a short stroke through every object's centre.
    labels, _ = ndi.label(inner)
    for sl in ndi.find_objects(labels)[:200]:
        if sl is None:
            continue
        cy = (sl[0].start + sl[0].stop) // 2
        cols = np.flatnonzero(inner[cy, sl[1]]) + sl[1].start
        layer.data_setitem((oy + np.full(cols.size, cy), ox + cols), 2)
        painted += cols.size
    return painted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", choices=["nuclei", "small"], default="nuclei")
    parser.add_argument("--duration", type=float, default=45.0, help="seconds of training measured")
    parser.add_argument("--tick-ms", type=int, default=15)
    parser.add_argument("--screenshot", default=None, help="write a screenshot of the canvas here")
    args = parser.parse_args()

    import napari
    from qtpy.QtCore import QThreadPool

    from scribble_unet._napari import open_demo_viewer

    work = Path(tempfile.mkdtemp(prefix="scribble-unet-gui-bench-"))
    threads_before = {t.ident for t in threading.enumerate()}
    t_open = time.perf_counter()
    viewer = open_demo_viewer(work, sample=args.sample, show=True)
    main_widget = viewer.window._dock_widgets["Scribble U-Net (napari-scribble-unet)"].widget()
    ctrl = main_widget.controller
    # A canvas of 1920x1080 (plus the dock): Xvfb has no window manager to clamp the window.
    qt_window = viewer.window._qt_window
    qt_window.resize(1920 + 450, 1080 + 120)
    _run_until(lambda: False, 1.0)
    canvas = tuple(int(v) for v in viewer.canvas.size)
    open_s = time.perf_counter() - t_open

    # Paint in the scribble window, then look at it at full resolution (zoom 1: one screen pixel per
    # image pixel) for the sample whose field of view is smaller than the image.
    layer = ctrl.scribble_layer
    oy, ox = layer.data.origin
    wh, ww = layer.data.shape
    side = min(wh, ww, 2048)
    ry0, rx0 = (wh - side) // 2, (ww - side) // 2
    truth = _truth_window(viewer, args.sample, oy + ry0, oy + ry0 + side, ox + rx0, ox + rx0 + side)
    t_paint = time.perf_counter()
    painted = paint(layer, truth, ry0, rx0)
    paint_s = time.perf_counter() - t_paint
    if args.sample == "nuclei":
        viewer.reset_view()
    else:
        viewer.scene.camera.zoom = 1.0
        viewer.scene.camera.center = (oy + ry0 + side / 2, ox + rx0 + side / 2)
    _run_until(lambda: False, 0.5)
    region = ctrl.visible_region()

    timer = HandlerTimer()
    for name in ("_on_train_event", "_on_live_chunk", "refresh_view", "set_checkpoint"):
        timer.wrap(ctrl, name)

    # Events on the main thread.
    t: dict[str, float] = {}
    first_chunk: list[float] = []
    first_nonzero: list[float] = []
    refresh: list[dict[str, Any]] = []  # one per checkpoint: when it arrived, when its view was complete
    n_ckpt = [0]

    def on_checkpoint(token: str | None) -> None:  # a new model (a checkpoint of the run)
        n_ckpt[0] += 1
        refresh.append({"token": token, "t": time.perf_counter(), "done": None,
                        "chunks": len(ctrl.live.wanted) if ctrl.live else 0})

    def on_chunk(computed: int) -> None:
        iy, ix = ctrl.state.prediction.last_chunk or (0, 0)
        now = time.perf_counter()
        if not first_chunk:
            first_chunk.append(now)
        if not first_nonzero and ctrl.live is not None:
            mask = ctrl.live.cache.get((iy, ix), (None, None))[1]
            if mask is not None and mask.any():
                first_nonzero.append(now)
        if refresh and refresh[-1]["done"] is None and ctrl.live is not None:
            r = refresh[-1]
            if ctrl.live.token == r["token"] and ctrl.live.pending() == 0:
                r["done"] = now
                r["chunks"] = len(ctrl.live.wanted)

    ctrl.state.prediction.events.model_token.connect(on_checkpoint)
    ctrl.state.prediction.events.computed.connect(on_chunk)

    meter = StallMeter(args.tick_ms)
    meter.start()
    _run_until(lambda: False, 2.0)  # idle baseline: the first 2 s of ticks
    idle = meter.summary()
    meter.lateness.clear()
    meter.big.clear()
    meter.worst = 0.0

    # Press Train with the widget's defaults.
    train = main_widget.train
    main_widget.tabs.setCurrentIndex(1)
    t["train_pressed"] = time.perf_counter()
    train.start_button.click()
    t["train_returned"] = time.perf_counter()
    started = ctrl.is_training
    _run_until(lambda: not ctrl.is_training, args.duration)
    meter.stop()
    busy = meter.summary()
    steps = len(train.plot.loss)
    screenshot = None
    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=True)
        screenshot = args.screenshot

    # (d) close the viewer while training and prediction run.
    still_training = ctrl.is_training
    t_close = time.perf_counter()
    viewer.close()
    close_s = time.perf_counter() - t_close
    stopped = all(job.done.is_set() for job in (ctrl.training_job, ctrl.live_job, ctrl.export_job))
    _run_until(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, 5.0)
    all_stopped_s = time.perf_counter() - t_close
    pool_active = QThreadPool.globalInstance().activeThreadCount()
    extra_threads = [th.name for th in threading.enumerate()
                     if th.ident not in threads_before and th.is_alive() and not th.daemon]
    napari.Viewer.close_all()

    first_s = first_chunk[0] - t["train_pressed"] if first_chunk else None
    first_nz_s = first_nonzero[0] - t["train_pressed"] if first_nonzero else None
    done = [r["done"] - r["t"] for r in refresh if r["done"] is not None]
    superseded = sum(1 for r in refresh[:-1] if r["done"] is None)
    view_chunks = max((r["chunks"] for r in refresh), default=0)
    res = {
        "bench": "gui_responsiveness", "sample": args.sample, "canvas_hw": list(canvas),
        "visible_region": list(region) if region else None, "view_chunks": view_chunks,
        "duration_s": args.duration, "tick_ms": args.tick_ms, "train_started": started, "steps": steps,
        "checkpoints": n_ckpt[0], "pixels_painted": painted, "paint_s": round(paint_s, 3),
        "open_s": round(open_s, 2),
        "stall_idle": idle, "stall_training": busy,
        "train_click_ms": round((t["train_returned"] - t["train_pressed"]) * 1000, 1),
        "first_prediction_s": None if first_s is None else round(first_s, 2),
        "first_nonzero_prediction_s": None if first_nz_s is None else round(first_nz_s, 2),
        "refresh_s": [round(v, 2) for v in done],
        "refresh_max_s": round(max(done), 2) if done else None,
        "refresh_median_s": round(float(np.median(done)), 2) if done else None,
        "refresh_superseded": superseded,
        "close_s": round(close_s, 3), "all_workers_stopped_s": round(all_stopped_s, 3),
        "workers_stopped": bool(stopped), "pool_active_after": pool_active, "threads_left": extra_threads,
        "training_still_running_at_close": still_training,
        "handlers": timer.summary(), "screenshot": screenshot,
        "stalls_over_100ms": [{"at_s": round(a - t["train_pressed"], 2), "ms": round(1000 * late),
                               "during": timer.during(a, b)} for a, b, late in meter.big[:20]],
    }
    res["targets"] = {
        "stall_max_lt_100ms": busy["max_ms"] < 100,
        "first_prediction_le_20s": first_s is not None and first_s <= 20,
        "refresh_le_2s": bool(done) and max(done) <= 2,
        "stop_le_2s": all_stopped_s <= 2 and stopped and pool_active == 0 and not extra_threads,
    }

    rows = [
        ("sample / canvas (h, w)", f"{args.sample} / {canvas}"),
        ("visible chunks at full resolution", view_chunks),
        ("training steps / checkpoints in the run", f"{steps} / {n_ckpt[0]}"),
        ("idle GUI stall max / p99 / p50 (ms)", f"{idle['max_ms']:.1f} / {idle['p99_ms']:.1f} / {idle['p50_ms']:.1f}"),
        ("(a) GUI stall max / p99 / p50 (ms)", f"{busy['max_ms']:.1f} / {busy['p99_ms']:.1f} / {busy['p50_ms']:.1f}"
                                               f"  ({busy['ticks']} ticks, {busy['over_100ms']} over 100 ms)"),
        ("(b) Train -> first chunk shown (s)", res["first_prediction_s"]),
        ("    Train -> first non-empty chunk (s)", res["first_nonzero_prediction_s"]),
        ("(c) checkpoint -> view refreshed max / median (s)", f"{res['refresh_max_s']} / {res['refresh_median_s']}"
                                                          f"  ({len(done)} complete, {superseded} superseded)"),
        ("(d) close -> all workers stopped (s)", f"{all_stopped_s:.3f} (close() {close_s:.3f}; "
                                                 f"pool active {pool_active}; threads left {extra_threads})"),
    ]
    for name, s in res["handlers"].items():
        rows.append((f"main-thread {name} max / mean (ms)", f"{s['max_ms']} / {s['mean_ms']} ({s['calls']} calls)"))
    for st in res["stalls_over_100ms"]:
        rows.append((f"  stall {st['ms']} ms at {st['at_s']} s after Train", ", ".join(st["during"]) or "-"))
    for k, v in res["targets"].items():
        rows.append((f"target {k}", "met" if v else "NOT met"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
