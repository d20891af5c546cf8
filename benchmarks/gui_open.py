"""How long opening a large image blocks napari's GUI thread: the plugin's reader, the layers, a project.

Run under a virtual X server (Qt's xcb backend) with PyQt6::

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 2560x1440x24" \\
        python benchmarks/gui_open.py --image IMG.zarr [--scribbles SCR.zarr] [--profile OUT.prof]

Opens IMG with the plugin's reader (``viewer.open``), chooses it in the widget, copies SCR (or, without
it, a few strokes spread over the image) into a fresh project and opens that project, then lets the
viewer draw for ``--settle`` s. A main-thread QTimer (``--tick-ms``) records how late each tick is;
the phases are timed on the main thread and the image's chunk reads are counted (on the main thread
and on others). ``--profile`` writes a cProfile of the main thread over the whole sequence.

Prints a table, then one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gui_responsiveness import StallMeter, _run_until, plugin_viewer

PLUGIN = "napari-scribble-unet"


def _strokes(store: Any, n: int = 12) -> None:
    """A few short strokes spread over the image (each in its own store chunk)."""
    h, w = store.shape
    for i in range(n):
        y, x = (i * 7919) % (h - 64), (i * 104729) % (w - 256)
        store[y : y + 3, x : x + 200] = 2 if i % 2 else 1


def _count_reads() -> tuple[dict[str, int], Any]:
    """Count ``zarr.Array.__getitem__`` calls per thread kind (main / other)."""
    import zarr

    counts = {"main": 0, "other": 0}
    orig = zarr.Array.__getitem__

    def counted(self: Any, key: Any) -> Any:
        main = threading.current_thread() is threading.main_thread()
        counts["main" if main else "other"] += 1
        return orig(self, key)

    zarr.Array.__getitem__ = counted  # type: ignore[method-assign]
    return counts, lambda: setattr(zarr.Array, "__getitem__", orig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--scribbles", default=None)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds the viewer draws after opening")
    parser.add_argument("--tick-ms", type=int, default=10)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--warm", action="store_true",
                        help="first open a small image and a project (then remove every layer), so that "
                             "first-time imports and napari's first layers are not measured")
    args = parser.parse_args()

    import zarr

    from scribble_unet.scribbles.project import Project

    work = Path(tempfile.mkdtemp(prefix="scribble-unet-gui-open-"))
    viewer, _, ctrl = plugin_viewer(1.5)

    if args.warm:
        small = work / "warm.zarr"
        zarr.create_array(small, shape=(512, 512), chunks=(256, 256), dtype=np.uint16)[:] = 7
        warm_layers = viewer.open(str(small), plugin=PLUGIN)
        ctrl.set_image_layer(warm_layers[0])
        ctrl.open_project(work / "warm-project")
        _run_until(lambda: False, 1.0)
        viewer.layers.clear()
        _run_until(lambda: False, 1.0)

    counts, restore = _count_reads()
    meter = StallMeter(args.tick_ms)
    prof = cProfile.Profile() if args.profile else None
    phases: dict[str, float] = {}
    before = set(sys.modules)
    meter.start()
    _run_until(lambda: False, 0.3)
    if prof is not None:
        prof.enable()
    t0 = time.perf_counter()
    layers = viewer.open(args.image, plugin=PLUGIN)
    phases["viewer.open"] = time.perf_counter() - t0
    after_open = set(sys.modules)
    t = time.perf_counter()
    _run_until(lambda: False, 0.5)
    phases["draw after open (0.5 s loop)"] = time.perf_counter() - t
    reads_open = dict(counts)
    t = time.perf_counter()
    ctrl.set_image_layer(layers[0])
    phases["set_image_layer"] = time.perf_counter() - t
    shape = ctrl.source.shape_yx
    store = Project.open(work / "project").open_scribbles(shape)  # not timed: the test data
    if args.scribbles:
        store[:] = zarr.open_array(args.scribbles, mode="r")[:]
    else:
        _strokes(store)
    t = time.perf_counter()
    ctrl.open_project(work / "project")
    phases["open_project"] = time.perf_counter() - t
    t = time.perf_counter()
    _run_until(lambda: False, args.settle)
    phases[f"settle ({args.settle} s loop)"] = time.perf_counter() - t
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)
    meter.stop()
    restore()
    imported = sorted({m.split(".")[0] for m in after_open - before})
    imported_later = sorted({m.split(".")[0] for m in set(sys.modules) - after_open})
    s = meter.summary()
    stalls = [(round(a - t0, 2), round(1000 * late)) for a, _, late in meter.big]
    load = os.getloadavg()
    rows = [(k, f"{v * 1000:.0f} ms") for k, v in phases.items()]
    rows += [("longest stall", f"{s['max_ms']:.0f} ms"), ("stalls over 100 ms", str(s["over_100ms"])),
             ("stalls (s after open, ms)", str(stalls)),
             ("zarr reads main / other (open)", f"{reads_open['main']} / {reads_open['other']}"),
             ("zarr reads main / other (all)", f"{counts['main']} / {counts['other']}"),
             ("packages first imported (viewer.open)", ", ".join(imported)),
             ("packages first imported (later)", ", ".join(imported_later)),
             ("load average", " ".join(f"{v:.2f}" for v in load))]
    for k, v in rows:
        print(f"{k:40s} {v}")
    out = {"image": args.image, "shape": list(shape), "phases_ms": {k: round(v * 1000) for k, v in phases.items()},
           "open_stall_max_ms": round(s["max_ms"], 1), "stalls_over_100ms": s["over_100ms"], "stalls": stalls,
           "reads": counts, "reads_open": reads_open, "load": [round(v, 2) for v in load], "imported": imported, "imported_later": imported_later,
           "layers": [(ly.name, type(ly).__name__, bool(getattr(ly, "multiscale", False))) for ly in viewer.layers]}
    viewer.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
