"""Annotation efficiency: foreground IoU against the labelled fraction, U-Net vs the ilastik-style forest.

On a few development-set images (``benchmarks/devset/``), the simulator draws more or fewer strokes
(``object_share`` and ``n_background`` scaled together); each level is evaluated with the methods of
``benchmarks/devset_eval.py`` (same code: ``unet`` with ``--steps``, ``ilastik``). Writes JSON lines to
``--out`` and a PNG plot (``--png``), prints a table and one JSON line.

    python benchmarks/annotation_efficiency.py --steps 300 --threads 1
    python benchmarks/annotation_efficiency.py --images dsb_fluo_dense --levels 0.05,0.3 --steps 100
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import devset_eval as dv

OUT = dv.ROOT / "benchmarks" / "results" / "annotation_efficiency.jsonl"
PNG = dv.ROOT / "benchmarks" / "results" / "annotation_efficiency.png"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="dsb_fluo_dense,dsb_brightfield,dsb_he_tissue")
    p.add_argument("--levels", default="0.05,0.1,0.2,0.4,0.8",
                   help="object_share levels; n_background = max(1, round(20 * level))")
    p.add_argument("--methods", default="ilastik,unet")
    p.add_argument("--steps", type=int, default=300, help="U-Net steps (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="U-Net overrides, as devset_eval")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--png", type=Path, default=PNG)
    p.add_argument("--plot-only", action="store_true", help="plot --out without running anything")
    args = p.parse_args(argv)
    args.budget = None  # train_unet reads args.steps / args.budget / args.set / args.save
    args.save = None

    if not args.plot_only:
        api = dv.project_api()
        import torch

        torch.set_num_threads(args.threads)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for name in dv.parse_list(args.images):
            image, inst = dv.load(name)
            truth = inst > 0
            for level in dv.parse_list(args.levels, float):
                sim = {**dv.SIM_DEFAULTS.get(name, {}), "object_share": level,
                       "n_background": max(1, round(20 * level)) * (5 if name == "isbi2012_em" else 1)}
                scr = dv.scribbles_for(api, inst, None, args.seed, sim)
                frac = float((scr > 0).mean())
                for method in dv.parse_list(args.methods):
                    t0 = time.perf_counter()
                    if method == "unet":
                        pred, _ = dv.train_unet(api, image, scr, args, args.seed)
                    else:
                        pred, _ = dv.run_ilastik(image, scr, args.seed, args.threads)
                    iou = float((pred & truth).sum() / max(1, (pred | truth).sum()))
                    rec = {"benchmark": "annotation_efficiency", "image": name, "level": level, "method": method,
                           "labelled_fraction": round(frac, 5), "iou": round(iou, 4), "steps": args.steps,
                           "overrides": args.set, "seed": args.seed, "wall_s": round(time.perf_counter() - t0, 1)}
                    print(f"{name} object_share {level}: labelled {frac:.3%}  {method:<8} IoU {iou:.3f}", flush=True)
                    with args.out.open("a") as fh:
                        fh.write(json.dumps(rec) + "\n")

    recs = [json.loads(line) for line in args.out.read_text().splitlines() if line.startswith("{")]
    recs = [r for r in recs if r["steps"] == args.steps]  # one run's setting (the file keeps older runs too)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = sorted({r["image"] for r in recs})
    fig, axes = plt.subplots(1, len(images), figsize=(4.5 * len(images), 4), squeeze=False)
    summary: dict[str, Any] = {}
    for ax, name in zip(axes[0], images, strict=False):
        for method, style in (("unet", "o-"), ("ilastik", "s--")):
            rs = sorted((r for r in recs if r["image"] == name and r["method"] == method),
                        key=lambda r: r["labelled_fraction"])
            if rs:
                x = [100 * r["labelled_fraction"] for r in rs]
                y = [r["iou"] for r in rs]
                ax.plot(x, y, style, label=f"{method}" + (f" ({rs[0]['steps']} steps)" if method == "unet" else ""))
                summary[f"{name}/{method}"] = [[round(a, 3), b] for a, b in zip(x, y, strict=False)]
        ax.set_xscale("log")
        from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

        xs = sorted({round(100 * r["labelled_fraction"], 2) for r in recs if r["image"] == name})
        ax.xaxis.set_major_locator(FixedLocator(xs))  # the measured fractions themselves
        ax.xaxis.set_major_formatter(FormatStrFormatter("%.2g"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("labelled pixels (%)")
        ax.set_ylabel("foreground IoU")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=80)
    print(f"plot: {args.png}")
    print(json.dumps({"benchmark": "annotation_efficiency", "out": str(args.out), "png": str(args.png),
                      "points": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
