"""Speed and memory of tiled prediction.

Prints a table and one JSON line (the last line of stdout) with, for one model and one image, in one run:

* output megapixels/s of tiled prediction (``predict_lazy``) for several tile sizes;
* the ratio to ONE untiled forward pass of the whole image (the limit for this model);
* the ratio to MONAI's ``sliding_window_inference`` (overlap 0.25, gaussian blending), when MONAI is
  installed (``pip install 'napari-scribble-unet[bench]'``); MONAI's blended output is approximate, ours
  is exact, and the max |difference| to the whole-image pass is reported for both;
* peak RSS of ``scribble-unet predict`` (zarr in, zarr out) for two image sizes, each in a fresh process.

Usage::

    python benchmarks/predict_speed.py                    # defaults: 2048² throughput, 8192² and 16384² RSS
    python benchmarks/predict_speed.py --quick            # small sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from scribble_unet.inference.predict import logits_to_probabilities, predict_lazy
from scribble_unet.model.checkpoint import Checkpoint, save_checkpoint
from scribble_unet.model.normalize import Normalization
from scribble_unet.model.unet import ModelConfig, build_model


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth blobs plus noise, float32 in about [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 0.1 + 0.05 * rng.standard_normal((h, w)).astype(np.float32)
    for _ in range(max(4, h * w // 20000)):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 15)
        y0, y1 = int(max(0, cy - 3 * r)), int(min(h, cy + 3 * r))
        x0, x1 = int(max(0, cx - 3 * r)), int(min(w, cx + 3 * r))
        img[y0:y1, x0:x1] += np.exp(-((yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2) / (2 * r * r))
    return img


def make_checkpoint(depth: int, width: int) -> Checkpoint:
    model = build_model(ModelConfig(depth=depth, width=width), seed=0)
    return Checkpoint.from_model(model, Normalization((0.0,), (1.0,)), {"kind": "benchmark"})


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def whole_pass(ckpt: Checkpoint, img: np.ndarray) -> np.ndarray:
    """One forward pass of the whole (reflect-padded) image, through the same code as the tiles."""
    return predict_lazy(ckpt, img, tile=0, device="cpu").probabilities.compute(scheduler="synchronous")


def monai_pass(ckpt: Checkpoint, img: np.ndarray, roi: int) -> np.ndarray:
    from monai.inferers import sliding_window_inference

    model = ckpt.build("cpu").to(memory_format=torch.channels_last)
    with torch.inference_mode():
        logits = sliding_window_inference(
            torch.from_numpy(img)[None, None].contiguous(memory_format=torch.channels_last), roi_size=(roi, roi), sw_batch_size=1, predictor=model,
            overlap=0.25, mode="gaussian", padding_mode="reflect",
        )
        return logits_to_probabilities(logits)[0].numpy()


# VmHWM is the peak RSS of this process image; ru_maxrss would also count the parent's peak, which
# Linux carries across fork + exec
RSS_CHILD = r"""
import sys
from scribble_unet.cli import main
model, path, out, tile = sys.argv[1:5]
code = main(["predict", "--model", model, "--image", path, "--out", out, "--tile", tile, "--quiet"])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(int(hwm.split()[1]) / 1024.0)
sys.exit(code)
"""


def write_zarr_image(path: str, side: int, chunk: int = 1024) -> None:
    import zarr

    arr = zarr.create_array(store=path, shape=(side, side), chunks=(chunk, chunk), dtype=np.float32)
    tile = synthetic_image(chunk, chunk, seed=1)
    for y in range(0, side, chunk):
        for x in range(0, side, chunk):
            arr[y : y + chunk, x : x + chunk] = np.roll(tile, (y // 7, x // 5), axis=(0, 1))


def peak_rss(model_path: str, side: int, tile: int, tmp: str) -> tuple[float, float]:
    img = os.path.join(tmp, f"img{side}.zarr")
    write_zarr_image(img, side)
    out = os.path.join(tmp, f"out{side}.zarr")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", RSS_CHILD, model_path, img, out, str(tile)],
                         capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return float(res.stdout.strip().splitlines()[-1]), dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048, help="side of the throughput image")
    p.add_argument("--tiles", default="256,512,1024", help="tile sizes to time")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--rss-sizes", default="8192,16384", help="image sides for the peak-RSS runs ('' to skip)")
    p.add_argument("--rss-tile", type=int, default=1024)
    p.add_argument("--rss-width", type=int, default=4,
                   help="U-Net width for the RSS runs (memory growth does not depend on it; time does)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = p.parse_args()
    if args.quick:
        args.size, args.tiles, args.rss_sizes, args.repeats = 512, "256", "1024,2048", 1

    ckpt = make_checkpoint(args.depth, args.width)
    img = synthetic_image(args.size, args.size)
    mpx = args.size * args.size / 1e6
    rows: list[tuple[str, float, float, str]] = []
    ref = whole_pass(ckpt, img)
    t_whole = best_of(lambda: whole_pass(ckpt, img), args.repeats)
    rows.append(("untiled (one pass)", mpx / t_whole, 1.0, "0 (reference)"))

    result: dict[str, object] = {
        "benchmark": "predict_speed", "image": args.size, "depth": args.depth, "width": args.width,
        "torch_threads": torch.get_num_threads(), "untiled_mpx_s": round(mpx / t_whole, 3),
    }
    tiled: dict[str, float] = {}
    cores = os.cpu_count() or 1
    all_threads = torch.get_num_threads()
    for tile in (int(t) for t in args.tiles.split(",")):
        # as predict_to_zarr runs by default: one chunk per core, one torch thread per chunk
        torch.set_num_threads(max(1, all_threads // cores))
        got = predict_lazy(ckpt, img, tile=tile, device="cpu").probabilities.compute(
            scheduler="threads", num_workers=cores)
        err = float(np.abs(got - ref).max())
        t = best_of(lambda tile=tile: predict_lazy(ckpt, img, tile=tile, device="cpu").probabilities.compute(
            scheduler="threads", num_workers=cores), args.repeats)
        torch.set_num_threads(all_threads)
        tiled[str(tile)] = mpx / t
        rows.append((f"tiled, tile {tile} ({cores} chunks at once)", mpx / t, t_whole / t, f"{err:.1e}"))
    best_tile = max(tiled, key=lambda k: tiled[k])
    result["tiled_mpx_s"] = {k: round(v, 3) for k, v in tiled.items()}
    result["best_tile"] = int(best_tile)
    result["tiled_vs_untiled"] = round(tiled[best_tile] / (mpx / t_whole), 3)

    try:
        import monai  # noqa: F401
    except ImportError:
        result["vs_monai"] = None
    else:
        sw: dict[str, float] = {}
        for roi in (int(t) for t in args.tiles.split(",")):
            mres = monai_pass(ckpt, img, roi)
            err = float(np.abs(mres - ref).max())
            t = best_of(lambda roi=roi: monai_pass(ckpt, img, roi), args.repeats)
            sw[str(roi)] = mpx / t
            rows.append((f"MONAI sliding window, roi {roi}", mpx / t, t_whole / t, f"{err:.1e}"))
            result.setdefault("monai_max_abs_diff", err)
        best_roi = max(sw, key=lambda k: sw[k])
        result["monai_mpx_s"] = {k: round(v, 3) for k, v in sw.items()}
        result["vs_monai_same_tile"] = round(tiled[best_tile] / sw[best_tile], 3)
        result["vs_monai"] = round(tiled[best_tile] / sw[best_roi], 3)  # best against best

    rss: dict[str, float] = {}
    if args.rss_sizes:
        with tempfile.TemporaryDirectory() as tmp:
            model_path = os.path.join(tmp, "m.safetensors")
            save_checkpoint(model_path, make_checkpoint(args.depth, args.rss_width))
            for side in (int(s) for s in args.rss_sizes.split(",")):
                mb, dt = peak_rss(model_path, side, args.rss_tile, tmp)
                rss[str(side)] = mb
                rows.append((f"predict {side}² to zarr (peak RSS {mb:.0f} MB)", side * side / 1e6 / dt,
                             float("nan"), "-"))
        sides = sorted(rss, key=int)
        result["peak_rss_mb"] = {k: round(v, 1) for k, v in rss.items()}
        result["rss_model_width"] = args.rss_width
        result["rss_growth"] = round(rss[sides[-1]] / rss[sides[0]] - 1.0, 4)

    print(f"{'method':45s} {'Mpx/s':>8s} {'vs untiled':>11s} {'max |Δp| vs whole':>18s}")
    for name, speed, ratio, err_s in rows:
        print(f"{name:45s} {speed:8.3f} {ratio:11.3f} {err_s:>18s}")
    print(f"(this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
