"""Masks with borders snapped to image edges, measured on saved development-set runs.

``devset_eval.py --save DIR`` keeps each run's U-Net checkpoint. This script predicts each saved model's
probabilities once (whole image, as ``predict --tile 0``), computes the image's gradient as
:meth:`ChunkPredictor.outputs` does, and scores the plain mask (each pixel's most probable class) and the
snapped mask (:func:`scribble_unet.inference.borders.snap_to_edges`) for several confidence thresholds
and reaches, against the hand-made masks. One JSON line per run goes to ``--out``; ``--table`` prints
the per-case table (mean over the stroke seeds) against the ilastik-style forest's records.

Usage::

    python benchmarks/devset_eval.py --methods unet --seeds 0,1,2 --steps 1700 --threads 1 \\
        --variant-name defaults_1700 --save runs/
    python benchmarks/snap_variants.py runs/ --out snap.jsonl
    python benchmarks/snap_variants.py --table snap.jsonl --ilastik benchmarks/results/devset_session5.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import devset_eval as de

VARIANTS = [(0.9, 8), (0.9, 16), (0.9, 24), (0.9, 32), (0.8, 16), (0.8, 32), (0.95, 16)]
"""(confidence, reach) pairs scored; the product uses borders.CONFIDENT and borders.REACH."""


def score(dirs: list[Path], out: Path, variant: str) -> None:
    de.project_api()  # puts src/ on the path
    from scribble_unet.image import open_image
    from scribble_unet.inference.borders import snap_to_edges
    from scribble_unet.inference.predict import ChunkPredictor, predict_array
    from scribble_unet.model.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    done = set()
    if out.exists():
        done = {(r["case"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}
    for d in dirs:
        for f in sorted(d.glob(f"*_unet_{variant}.safetensors")):
            m = re.match(r"(.+)_(\d)x_s(\d+)_unet_", f.name)
            if m is None or (f"{m[1]}@{m[2]}x", int(m[3])) in done:
                continue
            case, seed = f"{m[1]}@{m[2]}x", int(m[3])
            done.add((case, seed))
            image, instances, _ = de.case_data({"case": case, "image": m[1], "scale": int(m[2])})
            truth = instances > 0
            src = open_image(image, channel_axis=2) if image.ndim == 3 else open_image(image)
            ckpt = load_checkpoint(str(f))
            prob, plain = predict_array(ckpt, src, tile=0, device="cpu", snap=False)
            h, w = src.shape_yx
            grad = ChunkPredictor(ckpt, src, tile=0, device="cpu").window_gradient(0, h, 0, w)

            def iou(mask: np.ndarray, truth: np.ndarray = truth) -> float:
                return round(float((mask & truth).sum() / max(1, (mask | truth).sum())), 4)

            rec = {"case": case, "seed": seed, "plain": iou(plain > 0),
                   "plain_ratio": round(float((plain > 0).mean() / truth.mean()), 3)}
            for conf, reach in VARIANTS:
                mask = snap_to_edges(prob, grad, confident=conf, reach=reach) > 0
                rec[f"c{conf}_r{reach}"] = iou(mask)
                rec[f"c{conf}_r{reach}_ratio"] = round(float(mask.mean() / truth.mean()), 3)
            with out.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)


def table(path: Path, forest_files: list[Path], key: str) -> None:
    runs: dict[str, dict[int, dict]] = defaultdict(dict)
    for line in path.read_text().splitlines():
        r = json.loads(line)
        runs[r["case"]][r["seed"]] = r
    forest: dict[str, dict[int, dict]] = defaultdict(dict)
    for f in forest_files:
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r.get("method") == "ilastik":
                forest[r["case"]][r["seed"]] = r
    mean = statistics.mean
    print(f"| case | seeds | U-Net, plain mask | U-Net, snapped ({key}) | change (worst seed) | ilastik-style | "
          "snapped - ilastik-style | pred/true fg: plain -> snapped | ilastik-style pred/true fg |")
    print("|---|---|---|---|---|---|---|---|---|")
    cols: dict[str, list[float]] = defaultdict(list)
    wins = {"plain": 0, "snap": 0}
    for case in sorted(runs):
        seeds = sorted(set(runs[case]) & set(forest[case]))
        if not seeds:
            continue
        pl = mean(runs[case][s]["plain"] for s in seeds)
        sn = mean(runs[case][s][key] for s in seeds)
        worst = min(runs[case][s][key] - runs[case][s]["plain"] for s in seeds)
        il = mean(forest[case][s]["iou"] for s in seeds)
        rp = mean(runs[case][s]["plain_ratio"] for s in seeds)
        rs = mean(runs[case][s][key + "_ratio"] for s in seeds)
        ri = mean(forest[case][s]["share_ratio"] for s in seeds)
        for k, v in (("pl", pl), ("sn", sn), ("il", il), ("rp", rp), ("rs", rs), ("ri", ri)):
            cols[k].append(v)
        wins["plain"] += pl > il
        wins["snap"] += sn > il

        def bold(x: float, il: float = il) -> str:
            return f"**{x:.3f}**" if x > il else f"{x:.3f}"

        print(f"| {case} | {len(seeds)} | {bold(pl)} | {bold(sn)} | {sn - pl:+.3f} ({worst:+.3f}) | {il:.3f} | "
              f"{sn - il:+.3f} | {rp:.2f} -> {rs:.2f} | {ri:.2f} |")
    n = len(cols["pl"])

    def within(k: str) -> int:
        return sum(abs(x - 1) <= 0.15 for x in cols[k])

    print(f"| **mean of {n} cases** | | {mean(cols['pl']):.3f} | {mean(cols['sn']):.3f} | "
          f"{mean(cols['sn']) - mean(cols['pl']):+.3f} | {mean(cols['il']):.3f} | {mean(cols['sn']) - mean(cols['il']):+.3f} | "
          f"within 15 %: {within('rp')} -> {within('rs')} | {within('ri')} |")
    print(json.dumps({"benchmark": "snap_variants", "key": key, "cases": n, "plain": round(mean(cols["pl"]), 4),
                      "snapped": round(mean(cols["sn"]), 4), "ilastik": round(mean(cols["il"]), 4),
                      "wins_plain": wins["plain"], "wins_snapped": wins["snap"],
                      "share_within_15_plain": within("rp"), "share_within_15_snapped": within("rs")}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="*", type=Path, help="folders written by devset_eval.py --save")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/snap_variants.jsonl"))
    p.add_argument("--variant", default="defaults_1700", help="the U-Net variant name of the saved runs")
    p.add_argument("--table", type=Path, help="print the table of this file and exit")
    p.add_argument("--ilastik", type=Path, nargs="*", default=sorted(Path("benchmarks/results").glob("devset*.jsonl")),
                   help="devset_eval records holding the ilastik-style forest's runs")
    p.add_argument("--key", default="c0.9_r16", help="the snapped variant the table shows")
    args = p.parse_args()
    if args.table:
        table(args.table, args.ilastik, args.key)
    else:
        score(args.dirs, args.out, args.variant)


if __name__ == "__main__":
    main()
