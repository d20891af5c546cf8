"""Quality from sparse scribbles: our U-Net vs a random-forest pixel classifier vs a dense-label ceiling.

On a real fluorescence image of nuclei (DSB 2018, 512 x 512, with its dense hand-made instance mask),
the script simulates the scribbles a user would paint (:func:`scribble_unet.training.simulate_scribbles`,
seeded, well under 1 % of the pixels) and measures the foreground IoU against the dense mask of:

* ``unet``: our U-Net trained on the scribbles for a fixed wall-clock budget on the CPU;
* ``random_forest``: scikit-image's pixel classifier (``skimage.future.fit_segmenter`` on
  ``skimage.feature.multiscale_basic_features``, a scikit-learn ``RandomForestClassifier``), trained
  on the same scribbles, the usual baseline of interactive pixel classification (ilastik-style);
* ``ceiling``: the same U-Net trained on the dense mask (every pixel labelled) with the same budget.

Targets: the U-Net beats the random forest and reaches at least 90 % of the ceiling's IoU.

It prints a table and one JSON line. Run from the repository root::

    python benchmarks/quality.py                # 60 s per U-Net, data from ../shared/data/
    python benchmarks/quality.py --budget 120 --data path/to/dsb2018_nuclei_512.npz

The data file (keys ``image`` and ``instances``) is looked up at ``--data``, then at
``../shared/data/`` next to the repository, then in the package's built-in sample.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_NAME = "dsb2018_nuclei_512.npz"


def find_data(path: str | None) -> Path:
    """The nuclei file: ``--data``, else ``../shared/data``, else the package sample."""
    candidates = [Path(path)] if path else []
    candidates += [ROOT.parent / "shared" / "data" / DATA_NAME, ROOT / "src" / "scribble_unet" / "data" / DATA_NAME]
    for c in candidates:
        if c.is_file():
            return c
    sys.exit(f"error: {DATA_NAME} not found (tried {', '.join(map(str, candidates))}); pass --data PATH")


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    return float((pred & truth).sum() / max(1, (pred | truth).sum()))


def train_unet(
    image: np.ndarray, labels: np.ndarray, args: argparse.Namespace, val_share: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train our U-Net on ``labels`` for ``args.budget`` seconds; return foreground mask and stats."""
    from scribble_unet.model.unet import ModelConfig
    from scribble_unet.training.infer import predict_image
    from scribble_unet.training.trainer import FinishedEvent, TrainConfig, Trainer

    model_config = ModelConfig(depth=args.depth, width=args.width, norm=args.norm)
    config = TrainConfig(
        steps=None,
        time_budget=args.budget,
        tile=args.tile,
        batch_size=args.batch_size,
        lr=args.lr,
        batchnorm=args.batchnorm,
        noise=args.noise,
        val_share=val_share,
        validate_every=0,
        seed=args.seed,
        device="cpu",
    )
    trainer = Trainer(image, labels, model_config, config)
    finished = None
    for ev in trainer.run():
        if isinstance(ev, FinishedEvent):
            finished = ev
    assert finished is not None
    t0 = time.perf_counter()
    probs = predict_image(trainer.model, trainer.source, trainer.normalization)
    stats = {
        "steps": finished.step,
        "train_s": round(trainer.elapsed, 1),
        "steps_per_s": round(finished.step / trainer.elapsed, 2),
        "predict_s": round(time.perf_counter() - t0, 2),
        "tile": trainer.tile,
        "val_iou": (finished.checkpoint.training.get("val_iou") or {}).get("object"),
    }
    return probs[0] > 0.5, stats


def random_forest(image: np.ndarray, labels: np.ndarray, seed: int, threads: int) -> tuple[np.ndarray, dict[str, Any]]:
    """scikit-image's random-forest pixel classifier trained on the scribbles."""
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    features = multiscale_basic_features(image.astype(np.float32), intensity=True, edges=True, texture=True,
                                         sigma_min=1, sigma_max=16)
    clf = RandomForestClassifier(n_estimators=100, max_depth=10, n_jobs=threads, random_state=seed)
    clf = fit_segmenter(labels, features, clf)
    result = predict_segmenter(features, clf)
    return result == 2, {"seconds": round(time.perf_counter() - t0, 1), "n_features": int(features.shape[-1])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help=f"path of {DATA_NAME}")
    p.add_argument("--budget", type=float, default=60.0, help="training seconds per U-Net (default 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scribbles, the model and the sampling")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--norm", choices=["batch", "none"], default="batch")
    p.add_argument("--tile", type=int, default=None, help="training tile (default: the trainer's)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batchnorm", choices=["frozen", "batch"], default="frozen",
                   help="how BatchNorm trains (TrainConfig.batchnorm)")
    p.add_argument("--noise", type=float, default=0.1, help="Gaussian noise augmentation (TrainConfig.noise)")
    p.add_argument("--threads", type=int, default=None, help="torch/sklearn threads (default: all cores)")
    p.add_argument("--skip-ceiling", action="store_true", help="do not train the dense-label ceiling")
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    import torch

    from scribble_unet.training.simulate import simulate_scribbles

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    path = find_data(args.data)
    data = np.load(path)
    image, instances = data["image"], data["instances"]
    truth = instances > 0
    scribbles = simulate_scribbles(instances, seed=args.seed)
    labelled = float((scribbles > 0).mean())

    rows: list[tuple[str, float, str]] = []
    unet_mask, unet = train_unet(image, scribbles, args, val_share=0.0)
    rows.append(("U-Net, scribbles", iou(unet_mask, truth), f"{unet['steps']} steps, {unet['steps_per_s']} steps/s"))
    rf_mask, rf = random_forest(image, scribbles, args.seed, threads)
    rows.append(("random forest, scribbles", iou(rf_mask, truth), f"{rf['seconds']} s, {rf['n_features']} features"))
    ceiling: dict[str, Any] | None = None
    if not args.skip_ceiling:
        dense = (1 + truth).astype(np.uint8)
        ceil_mask, ceiling = train_unet(image, dense, args, val_share=0.0)
        rows.append(("U-Net, dense mask (ceiling)", iou(ceil_mask, truth),
                     f"{ceiling['steps']} steps, {ceiling['steps_per_s']} steps/s"))

    unet_iou, rf_iou = rows[0][1], rows[1][1]
    ceil_iou = rows[2][1] if ceiling else None
    print(f"data: {path.name} {image.shape}, scribbles {labelled:.2%} of pixels "
          f"({int((scribbles == 1).sum())} background, {int((scribbles >= 2).sum())} object px)")
    print(f"U-Net depth {args.depth}, width {args.width}, norm {args.norm} ({args.batchnorm}), tile {unet['tile']}, "
          f"batch {args.batch_size}, lr {args.lr}, noise {args.noise}; budget {args.budget:g} s on {threads} "
          "CPU thread(s)")
    print(f"{'method':<30} {'foreground IoU':>15}  notes")
    for name, value, note in rows:
        print(f"{name:<30} {value:>15.3f}  {note}")
    beats_rf = unet_iou > rf_iou
    share = unet_iou / ceil_iou if ceil_iou else None
    print(f"U-Net beats random forest: {'yes' if beats_rf else 'NO'}"
          + (f"; U-Net / ceiling = {share:.1%} ({'>=' if share >= 0.9 else '<'} 90 %)" if share else ""))
    record = {
        "benchmark": "quality",
        "data": path.name,
        "budget_s": args.budget,
        "threads": threads,
        "labelled_fraction": round(labelled, 5),
        "unet_iou": round(unet_iou, 4),
        "random_forest_iou": round(rf_iou, 4),
        "ceiling_iou": round(ceil_iou, 4) if ceil_iou is not None else None,
        "unet_over_ceiling": round(share, 4) if share else None,
        "unet_steps_per_s": unet["steps_per_s"],
        "unet_steps": unet["steps"],
        "ceiling_steps_per_s": ceiling["steps_per_s"] if ceiling else None,
        "random_forest_s": rf["seconds"],
        "model": {"depth": args.depth, "width": args.width, "norm": args.norm, "batchnorm": args.batchnorm,
                  "tile": unet["tile"], "batch_size": args.batch_size, "lr": args.lr, "noise": args.noise},
        "seed": args.seed,
        "beats_random_forest": beats_rf,
        "reaches_90pct_of_ceiling": bool(share and share >= 0.9),
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
