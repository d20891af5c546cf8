"""Does training cost grow with the image size? Steps/s on one frame against a 16x larger mosaic.

Issue 8 asks that a 15-megapixel image train at >= 0.8x the steps/s of one of its ~0.8-megapixel frames
with the same strokes. The frame is the built-in nuclei image mirrored 2 x 2 (1024 x 1024, 1.05 MP); the
mosaic is that frame tiled 4 x 4 (4096 x 4096, 16.8 MP). Both are zarr arrays on disk (256 px chunks),
as a user's images are, and the scribbles (simulated on the first frame only) are the same pixels.
Rounds alternate frame and mosaic so that a change in the machine's load hits both alike.

Prints a table and one JSON line (the last line): steps/s per size and round, the ratio mosaic/frame
(median over rounds), the set-up seconds (label index, normalisation, object-size estimate) per size,
and the share of step time spent waiting for batches with and without prefetching.

Usage::

    python benchmarks/train_scaling.py [--steps 200] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from scribble_unet.image.nuclei import load_nuclei
from scribble_unet.model.unet import ModelConfig
from scribble_unet.training.simulate import simulate_scribbles
from scribble_unet.training.trainer import TrainConfig, Trainer


def make_data(folder: Path) -> dict[str, tuple[Any, Any]]:
    img, inst = load_nuclei()
    frame = np.block([[img, img[:, ::-1]], [img[::-1], img[::-1, ::-1]]])
    frame_inst = np.zeros(frame.shape, np.uint16)
    frame_inst[: img.shape[0], : img.shape[1]] = inst  # strokes on the top-left quarter only
    scr_frame = simulate_scribbles(frame_inst, seed=0)
    mosaic = np.tile(frame, (4, 4))
    scr_mosaic = np.zeros(mosaic.shape, np.uint8)
    scr_mosaic[: frame.shape[0], : frame.shape[1]] = scr_frame
    out: dict[str, tuple[Any, Any]] = {}
    for name, im, sc in (("frame", frame, scr_frame), ("mosaic", mosaic, scr_mosaic)):
        zi = zarr.create_array(str(folder / f"{name}.zarr"), shape=im.shape, chunks=(256, 256), dtype=im.dtype)
        zi[:] = im
        zs = zarr.create_array(str(folder / f"{name}_scr.zarr"), shape=sc.shape, chunks=(256, 256), dtype=sc.dtype)
        zs[:] = sc
        out[name] = (zi, zs)
    return out


def run(image: Any, scribbles: Any, steps: int, prefetch: int) -> dict[str, float]:
    t0 = time.perf_counter()
    trainer = Trainer(image, scribbles, ModelConfig(), TrainConfig(steps=steps, val_share=0.0, validate_every=0,
                                                                  device="cpu", prefetch=prefetch))
    setup = time.perf_counter() - t0
    waited = [0.0]
    draw = trainer._draw_batch

    def timed_draw() -> Any:  # without prefetching the step waits for the whole draw
        t = time.perf_counter()
        try:
            return draw()
        finally:
            waited[0] += time.perf_counter() - t

    if not prefetch:
        trainer._draw_batch = timed_draw  # type: ignore[method-assign]
    t0 = time.perf_counter()
    for _ in trainer.run():
        pass
    train = time.perf_counter() - t0
    return {"setup_s": setup, "steps_per_s": steps / train,
            "batch_wait_share": waited[0] / train if not prefetch else float("nan")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp))
        rows: list[dict[str, Any]] = []
        for r in range(args.rounds):
            for name in ("frame", "mosaic"):
                for pf in (2, 0):
                    res = run(*data[name], args.steps, pf)
                    rows.append({"round": r, "size": name, "prefetch": pf, **res})
                    print(f"round {r}  {name:6s}  prefetch {pf}  {res['steps_per_s']:6.1f} steps/s  "
                          f"set-up {res['setup_s']:5.2f} s  waiting for batches "
                          f"{100 * res['batch_wait_share']:4.1f} %", flush=True)

    def med(size: str, pf: int, key: str) -> float:
        return statistics.median(x[key] for x in rows if x["size"] == size and x["prefetch"] == pf)

    ratio = med("mosaic", 2, "steps_per_s") / med("frame", 2, "steps_per_s")
    summary = {
        "benchmark": "train_scaling",
        "frame_mp": 1.05, "mosaic_mp": 16.8, "steps": args.steps, "rounds": args.rounds, "threads": args.threads,
        "frame_steps_per_s": round(med("frame", 2, "steps_per_s"), 2),
        "mosaic_steps_per_s": round(med("mosaic", 2, "steps_per_s"), 2),
        "mosaic_over_frame": round(ratio, 3),
        "frame_setup_s": round(med("frame", 2, "setup_s"), 2),
        "mosaic_setup_s": round(med("mosaic", 2, "setup_s"), 2),
        "prefetch_speedup_frame": round(med("frame", 2, "steps_per_s") / med("frame", 0, "steps_per_s"), 3),
        "prefetch_speedup_mosaic": round(med("mosaic", 2, "steps_per_s") / med("mosaic", 0, "steps_per_s"), 3),
        "batch_wait_share_without_prefetch": round(med("mosaic", 0, "batch_wait_share"), 3),
        "meets_0.8": ratio >= 0.8,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
