"""Speed and memory of tiled prediction.

Prints a table and one JSON line (the last line of stdout) with, for one model and one image, in one run:

* output megapixels/s of tiled prediction (``predict_lazy``) for several tile sizes;
* the ratio to ONE untiled forward pass of the whole image;
* the previous tiled path (the zero-padded training network on every chunk + halo window), for the
  speed-up of the window network (:mod:`scribble_unet.inference.window_net`) in the same run;
* the ratio to MONAI's ``sliding_window_inference`` (overlap 0.25, gaussian blending), when MONAI is
  installed (``pip install 'napari-scribble-unet[bench]'``); MONAI's blended output is approximate, ours
  is exact, and the max |difference| to the whole-image pass is reported for both;
* output megapixels per CPU-second of this process (all its threads), which a shared machine's load
  changes much less than the wall-clock rate;
* the 1-minute load average before and after (the machine may be shared);
* peak RSS of ``scribble-unet predict`` (zarr in, zarr out) for two image sizes, each in a fresh process.

All variants are timed once per round, rounds interleaved (A B C A B C ...), best of ``--repeats``
rounds, so that a change in the machine's load hits them alike; compare ratios within one run only.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from scribble_unet.inference.predict import ChunkPredictor, logits_to_probabilities, predict_lazy
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
    # the network's tiling against MONAI's: no pixel forest (an untrained one is empty but widens the halo);
    # benchmarks/forest_cost.py measures what the forest adds
    model = build_model(ModelConfig(depth=depth, width=width, pixel_forest=False), seed=0)
    return Checkpoint.from_model(model, Normalization((0.0,), (1.0,)), {"kind": "benchmark"})


def whole_pass(ckpt: Checkpoint, img: np.ndarray) -> np.ndarray:
    """One forward pass of the whole (reflect-padded) image, through the same code as the tiles."""
    return predict_lazy(ckpt, img, tile=0, device="cpu", snap=False).probabilities.compute(scheduler="synchronous")


def tiled_pass(ckpt: Checkpoint, img: np.ndarray, tile: int, cores: int) -> np.ndarray:
    """Tiled prediction as ``predict_to_zarr`` runs it by default: one chunk per core, one torch thread each."""
    return predict_lazy(ckpt, img, tile=tile, device="cpu", snap=False).probabilities.compute(
        scheduler="threads", num_workers=cores)


def stretched(ckpt: Checkpoint, img: np.ndarray) -> Checkpoint:
    """The model with its logit centred and stretched on ``img`` (10th-90th percentile to -4..4), so
    that its map has sure and unsure regions as a trained model's has: the border flood has work."""
    prob = predict_lazy(ckpt, img[:512, :512], tile=0, device="cpu", snap=False).probabilities.compute()
    z = np.log(prob[0] / (1 - prob[0]))
    lo, mid, hi = np.percentile(z, [10, 50, 90])
    state = dict(ckpt.state_dict)
    gain = 8.0 / max(hi - lo, 1e-6)
    state["head.weight"] = state["head.weight"] * gain
    state["head.bias"] = (state["head.bias"] - float(mid)) * gain
    return Checkpoint(ckpt.config, state, ckpt.normalization, {})


def tiled_mask(ckpt: Checkpoint, img: np.ndarray, tile: int, cores: int, snap: bool) -> np.ndarray:
    """The mask, tiled as above, with or without borders snapped to image edges."""
    return predict_lazy(ckpt, img, tile=tile, device="cpu", snap=snap).mask.compute(
        scheduler="threads", num_workers=cores)


def previous_tiled_pass(ckpt: Checkpoint, model: torch.nn.Module, img: np.ndarray, tile: int,
                        cores: int) -> np.ndarray:
    """The tiled path before the window network: per chunk, the zero-padded training network on the
    whole chunk + halo window, cropped to the chunk (same reads, same threading)."""
    pred = ChunkPredictor(ckpt, img, tile, device="cpu")
    halo = pred.grid.halo
    out = np.empty((ckpt.config.n_classes, *img.shape), np.float32)

    def one(chunk: tuple[int, int]) -> None:
        y0, y1, x0, x1 = pred.grid.chunk_bounds(*chunk)
        with torch.inference_mode():
            t = torch.from_numpy(pred.window(*chunk))[None].contiguous(memory_format=torch.channels_last)
            prob = logits_to_probabilities(model(t))[0, :, halo : halo + y1 - y0, halo : halo + x1 - x0]
        out[:, y0:y1, x0:x1] = prob.numpy()

    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(one, pred.grid))
    return out


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
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    p.add_argument("--previous-tile", type=int, default=256, help="tile of the previous-path row")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = p.parse_args()
    if args.quick:
        args.size, args.tiles, args.rss_sizes, args.repeats = 512, "256", "1024,2048", 1

    ckpt = make_checkpoint(args.depth, args.width)
    img = synthetic_image(args.size, args.size)
    mpx = args.size * args.size / 1e6
    cores = os.cpu_count() or 1
    all_threads = torch.get_num_threads()
    per_chunk = max(1, all_threads // cores)  # as predict_to_zarr: torch threads per concurrent chunk
    tiles = [int(t) for t in args.tiles.split(",")]
    load_before = os.getloadavg()

    # (name, function, torch threads); every variant is timed once per round, rounds interleaved, so
    # that a change of the machine's load hits all of them alike; best of the rounds
    variants: list[tuple[str, Callable[[], np.ndarray], int]] = [
        ("untiled (one pass)", lambda: whole_pass(ckpt, img), all_threads)]
    for tile in tiles:
        variants.append((f"tiled, tile {tile} ({cores} chunks at once)",
                         lambda tile=tile: tiled_pass(ckpt, img, tile, cores), per_chunk))
    prev_model = ckpt.build("cpu").to(memory_format=torch.channels_last)
    prev_tile = int(args.previous_tile)
    variants.append((f"previous tiled path, tile {prev_tile}",
                     lambda: previous_tiled_pass(ckpt, prev_model, img, prev_tile, cores), per_chunk))
    # the mask's cost with borders snapped to edges (inference/borders.py) against the plain mask
    sharp = stretched(ckpt, img)
    mask_tile = 512 if 512 in tiles else tiles[0]
    mask_refs = {snap: predict_lazy(sharp, img, tile=0, device="cpu", snap=snap).mask.compute() for snap in (False, True)}
    p_fg = predict_lazy(sharp, img, tile=0, device="cpu", snap=False).probabilities.compute()[0]
    unsure_share = float(np.mean(np.maximum(p_fg, 1 - p_fg) < 0.9))  # pixels the flood decides
    for snap in (False, True):
        variants.append((f"tiled mask, tile {mask_tile}, borders {'snapped' if snap else 'plain'}",
                         lambda snap=snap: tiled_mask(sharp, img, mask_tile, cores, snap), per_chunk))
    try:
        import monai  # noqa: F401
    except ImportError:
        have_monai = False
    else:
        have_monai = True
        # all torch threads on one window, and one thread: on a shared machine OpenMP's threads can wait
        # on each other (measured 10x slower per window at load 6 on 2 cores); MONAI's best counts
        for roi in tiles:
            for threads in sorted({all_threads, 1}, reverse=True):
                variants.append((f"MONAI sliding window, roi {roi}, {threads} thread(s)",
                                 lambda roi=roi: monai_pass(ckpt, img, roi), threads))

    ref = None
    errors: dict[str, float] = {}
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    cpu_times: dict[str, list[float]] = {name: [] for name, _, _ in variants}  # this process, all threads
    for rnd in range(args.repeats + 1):  # round 0 warms up and measures the difference to the reference
        for name, fn, threads in variants:
            torch.set_num_threads(threads)
            t0, c0 = time.perf_counter(), time.process_time()
            got = fn()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            torch.set_num_threads(all_threads)
            if rnd == 0:
                if name.startswith("tiled mask"):  # share of pixels unlike the whole-image mask
                    errors[name] = float((got != mask_refs["snapped" in name]).mean())
                    continue
                if ref is None:
                    ref = got
                errors[name] = float(np.abs(got - ref).max())
            else:
                times[name].append(dt)
                cpu_times[name].append(dc)
    speed = {name: mpx / min(ts) for name, ts in times.items()}
    # output Mpx per CPU-second: what the work costs, whatever share of the cores the run got
    per_cpu_s = {name: mpx / min(ts) for name, ts in cpu_times.items()}
    untiled = speed["untiled (one pass)"]
    rows: list[tuple[str, float, float, float, str]] = []
    for name, _, _ in variants:
        err = "0 (reference)" if name.startswith("untiled") else f"{errors[name]:.1e}"
        if name.startswith("tiled mask"):
            err = f"{errors[name]:.1e} of px"
        rows.append((name, speed[name], per_cpu_s[name], speed[name] / untiled, err))

    tiled = {str(t): speed[f"tiled, tile {t} ({cores} chunks at once)"] for t in tiles}
    best_tile = max(tiled, key=lambda k: tiled[k])
    previous = speed[f"previous tiled path, tile {prev_tile}"]
    result: dict[str, object] = {
        "benchmark": "predict_speed", "image": args.size, "depth": args.depth, "width": args.width,
        "torch_threads": all_threads, "repeats": args.repeats, "untiled_mpx_s": round(untiled, 3),
        "tiled_mpx_s": {k: round(v, 3) for k, v in tiled.items()}, "best_tile": int(best_tile),
        "tiled_max_abs_diff": max(errors[f"tiled, tile {t} ({cores} chunks at once)"] for t in tiles),
        "tiled_vs_untiled": round(tiled[best_tile] / untiled, 3),
        "previous_tiled_mpx_s": {str(prev_tile): round(previous, 3)},
        "vs_previous_same_tile": round(tiled[str(prev_tile)] / previous, 3) if str(prev_tile) in tiled else None,
        "mask_tile": mask_tile,
        "mask_plain_mpx_s": round(speed[f"tiled mask, tile {mask_tile}, borders plain"], 3),
        "mask_snapped_mpx_s": round(speed[f"tiled mask, tile {mask_tile}, borders snapped"], 3),
        "mask_snapped_vs_plain": round(speed[f"tiled mask, tile {mask_tile}, borders snapped"]
                                       / speed[f"tiled mask, tile {mask_tile}, borders plain"], 3),
        "mask_tiled_differs": max(errors[n] for n in errors if n.startswith("tiled mask")),
        "mask_unsure_share": round(unsure_share, 3),
    }
    if have_monai:
        monai_rows = {name: v for name, v in speed.items() if name.startswith("MONAI")}
        sw = {str(r): max(v for name, v in monai_rows.items() if f"roi {r}," in name) for r in tiles}
        best_roi = max(sw, key=lambda k: sw[k])
        result["monai_max_abs_diff"] = max(errors[name] for name in monai_rows)
        result["monai_mpx_s"] = {name.removeprefix("MONAI sliding window, "): round(v, 3)
                                 for name, v in monai_rows.items()}
        result["best_roi"] = int(best_roi)
        result["vs_monai_same_tile"] = round(tiled[best_tile] / sw[best_tile], 3)
        result["vs_monai"] = round(tiled[best_tile] / sw[best_roi], 3)  # best against best
        tiled_cpu = max(per_cpu_s[f"tiled, tile {t} ({cores} chunks at once)"] for t in tiles)
        result["vs_monai_per_cpu_s"] = round(tiled_cpu / max(per_cpu_s[name] for name in monai_rows), 3)
    else:
        result["vs_monai"] = None
    result["load_avg_1min"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]

    rss: dict[str, float] = {}
    if args.rss_sizes:
        with tempfile.TemporaryDirectory() as tmp:
            model_path = os.path.join(tmp, "m.safetensors")
            save_checkpoint(model_path, make_checkpoint(args.depth, args.rss_width))
            for side in (int(s) for s in args.rss_sizes.split(",")):
                mb, dt = peak_rss(model_path, side, args.rss_tile, tmp)
                rss[str(side)] = mb
                rows.append((f"predict {side}² to zarr (peak RSS {mb:.0f} MB)", side * side / 1e6 / dt,
                             float("nan"), float("nan"), "-"))
        sides = sorted(rss, key=int)
        result["peak_rss_mb"] = {k: round(v, 1) for k, v in rss.items()}
        result["rss_model_width"] = args.rss_width
        result["rss_growth"] = round(rss[sides[-1]] / rss[sides[0]] - 1.0, 4)

    print(f"{'method':55s} {'Mpx/s':>8s} {'Mpx/CPU-s':>10s} {'vs untiled':>11s} {'max |Δp| vs whole':>18s}")
    for name, mps, mpc, ratio, err_s in rows:
        print(f"{name:55s} {mps:8.3f} {mpc:10.3f} {ratio:11.3f} {err_s:>18s}")
    print(f"(this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
