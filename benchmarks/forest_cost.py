"""What the pixel forest option costs at prediction: whole-image throughput with and without it.

Trains one small model on the built-in nuclei sample (strokes on 8 objects, 8 background strokes),
copies it with and without a pixel forest (the same U-Net weights; the forest filled from the same
strokes), and times tiled prediction of a mosaic of the sample (``--size`` px square) with each, through
the same path the CLI and the live view use (:func:`scribble_unet.inference.predict.predict_lazy`).
A third row predicts again with the forest's outputs kept (as after the next checkpoint of a run, when
only the network changed). Prints a table and one JSON line.

    python benchmarks/forest_cost.py [--size 2048] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="side of the predicted image (a mosaic of the sample)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads and dask threads")
    ap.add_argument("--repeats", type=int, default=2, help="timed rounds after one warm-up round")
    ap.add_argument("--steps", type=int, default=200, help="training steps of the model (its speed does not depend on them)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import dask

    from scribble_unet.image.nuclei import load_nuclei
    from scribble_unet.inference.predict import predict_lazy
    from scribble_unet.model import forest as forest_mod
    from scribble_unet.model.checkpoint import Checkpoint
    from scribble_unet.model.unet import ModelConfig
    from scribble_unet.training.simulate import simulate_scribbles
    from scribble_unet.training.train_config import TrainConfig
    from scribble_unet.training.trainer import FinishedEvent, Trainer

    img, inst = load_nuclei()
    scr = simulate_scribbles(inst, seed=0, max_objects=8, n_background=8)
    trainer = Trainer(img, scr, ModelConfig(pixel_forest=True),
                      TrainConfig(steps=args.steps, validate_every=0, val_share=0.0, seed=0, device="cpu"))
    final = list(trainer.run())[-1]
    assert isinstance(final, FinishedEvent)
    forest = final.checkpoint
    plain = Checkpoint(forest.config.replace(pixel_forest=False),
                       {k: v for k, v in forest.state_dict.items() if not k.startswith("forest.")},
                       forest.normalization, dict(forest.training))
    reps = -(-args.size // img.shape[0])
    big = np.tile(img, (reps, reps))[: args.size, : args.size].astype(np.float32)
    # faint noise makes every window unique: repeated tiles would otherwise hit the forest's output cache
    big += np.random.default_rng(0).normal(0, 0.01 * float(img.std()), big.shape).astype(np.float32)
    rows: list[dict[str, Any]] = []
    cases = (("U-Net", plain, True), ("U-Net x pixel forest", forest, True),
             ("same, forest part kept", forest, False))
    for name, ckpt, cold in cases:
        times = []
        for r in range(args.repeats + 1):
            if cold:
                forest_mod.clear_caches()  # a new image or new strokes: nothing kept
            pred = predict_lazy(ckpt, big, device="cpu")
            t0 = time.perf_counter()
            dask.compute(pred.probabilities, pred.mask, scheduler="threads", num_workers=args.threads)
            if r:
                times.append(time.perf_counter() - t0)
        best = min(times)
        rows.append({"model": name, "seconds": round(best, 2), "mpx_per_s": round(args.size**2 / best / 1e6, 3)})
    ratio = rows[1]["seconds"] / rows[0]["seconds"]
    kept_ratio = rows[2]["seconds"] / rows[0]["seconds"]
    print(f"{'model':<24}{'seconds':>10}{'Mpx/s':>10}")
    for row in rows:
        print(f"{row['model']:<24}{row['seconds']:>10.2f}{row['mpx_per_s']:>10.3f}")
    print(f"pixel forest: {ratio:.2f}x the time, {kept_ratio:.2f}x with its part kept (a checkpoint's refresh; "
          f"{args.size}x{args.size} px, {args.threads} threads)")
    print(json.dumps({"benchmark": "forest_cost", "size": args.size, "threads": args.threads,
                      "rows": rows, "time_ratio": round(ratio, 2), "time_ratio_kept": round(kept_ratio, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
