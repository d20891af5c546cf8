"""Where to paint next: does a region chosen by uncertainty raise IoU faster than a region chosen at random?

For each development-set image (``benchmarks/devset/``, at 1x) and each ``--seeds`` value:

1. Initial strokes from the project's simulator (``simulate_scribbles`` through ``devset_eval.scribbles_for``,
   ``max_fraction`` = ``--initial-fraction``, the per-image simulator defaults of ``devset_eval``), then a
   U-Net trained ``--steps`` steps on them (``Trainer``, default ``TrainConfig`` apart from ``seed``,
   ``device="cpu"``, ``validate_every=0`` and ``val_share=0``: nothing is held out, so every stroke the
   "user" adds is trained on in both arms). Round 0.
2. ``--rounds`` rounds, each: choose one ``--window`` x ``--window`` region, paint in it, fine-tune.

   * ``uncertain``: :func:`~scribble_unet.inference.uncertainty.most_uncertain_region` on the uncertainty
     (:func:`~scribble_unet.inference.uncertainty.uncertainty_from_probabilities`) of the current model's
     whole-image probabilities, with the painted pixels (every stroke so far) as ``painted`` -- what the
     "next region to check" action passes (at full resolution: these images are 512 px, the action's
     low-resolution level for them is level 0).
   * ``uncertain_new``: the same, with the regions painted in earlier rounds passed as ``exclude`` (they
     count as checked as a whole, not only their stroke pixels), so a region is never proposed twice --
     what the napari action now does.
   * ``random``: a window position drawn uniformly among those not overlapping a region painted in an
     earlier round of the same run (``--random-seeds`` runs per seed).
   * ``none`` (control): no region, no new strokes; only the fine-tuning. It separates what the extra
     training steps alone give from what the strokes give.
   * The simulated user paints in the region what the simulator draws on the ground-truth instances
     cropped to it: ``simulate_scribbles(crop, object_share=0.5, max_objects=4, n_background=2,
     max_fraction=0.03)`` (the per-image ``margin`` of ``devset_eval``), seeded by (seed, round) -- the same
     rule in both arms. Only unpainted pixels are written.
   * Fine-tune: a new ``Trainer`` initialised from the current model (``init=``, as "continue training"
     does), ``--finetune-steps`` steps, same seed.

After every round: foreground IoU of the whole image against the dense mask, the labelled fraction, the
region and its mean uncertainty when chosen. One JSON line per (image, seed, strategy, random seed, round)
is appended to ``--out``; a table, a PNG (``--png``: IoU against labelled fraction, one panel per image,
plus the mean IoU gain per round over all images) and ONE JSON line (summary) end the run.

    python benchmarks/next_region_efficiency.py --threads 1
    python benchmarks/next_region_efficiency.py --images dsb_fluo_dense --seeds 0 --steps 100 --finetune-steps 50
    python benchmarks/next_region_efficiency.py --plot-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import devset_eval as dv

OUT = dv.ROOT / "benchmarks" / "results" / "next_region.jsonl"
PNG = dv.ROOT / "benchmarks" / "results" / "next_region.png"
IMAGES = "dsb_fluo_dense,dsb_brightfield,usiigaci_phase,axondeepseg_sem,isbi2012_em"
# what the simulated user paints inside a region (see the module docstring)
REGION_SIM: dict[str, Any] = {"object_share": 0.5, "max_objects": 4, "n_background": 2, "max_fraction": 0.03}


def train(api: Any, image: np.ndarray, scribbles: np.ndarray, steps: int, seed: int,
          init: Any = None) -> tuple[Any, np.ndarray]:
    """Train (or fine-tune from ``init``) ``steps`` steps; the final checkpoint and object probability (Y, X)."""
    rgb = image.ndim == 3
    src = api.open_image(image, channel_axis=2) if rgb else api.open_image(image)
    model_config = api.ModelConfig(in_channels=image.shape[2] if rgb else 1)
    config = api.TrainConfig(steps=steps, time_budget=None, seed=seed, device="cpu", validate_every=0, val_share=0.0)
    trainer = api.Trainer(src, scribbles, model_config, config, init=init)
    finished = None
    for ev in trainer.run():
        if isinstance(ev, api.FinishedEvent):
            finished = ev
    assert finished is not None
    probs = api.predict_image(trainer.model, trainer.source, trainer.normalization)
    return finished.checkpoint, probs


def iou(prob: np.ndarray, truth: np.ndarray) -> float:
    pred = prob[0] > 0.5
    return float((pred & truth).sum() / max(1, (pred | truth).sum()))


def random_region(shape: tuple[int, int], window: int, visited: list[tuple[int, int, int, int]],
                  rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A window drawn uniformly among positions not overlapping ``visited`` (any position if none is left)."""
    h, w = shape
    ok = np.ones((h - window + 1, w - window + 1), bool)
    for y0, y1, x0, x1 in visited:  # positions whose window would overlap this box
        ok[max(0, y0 - window + 1):y1, max(0, x0 - window + 1):x1] = False
    cand = np.flatnonzero(ok) if ok.any() else np.arange(ok.size)
    y0, x0 = divmod(int(cand[rng.integers(cand.size)]), ok.shape[1])
    return y0, y0 + window, x0, x0 + window


def paint_region(api: Any, scribbles: np.ndarray, inst: np.ndarray, box: tuple[int, int, int, int],
                 margin: int, seed: int) -> int:
    """What the simulated user paints in ``box`` (unpainted pixels only); returns the pixels added."""
    y0, y1, x0, x1 = box
    strokes = api.simulate_scribbles(inst[y0:y1, x0:x1], seed=seed, margin=margin, **REGION_SIM)
    view = scribbles[y0:y1, x0:x1]
    new = (strokes > 0) & (view == 0)
    view[new] = strokes[new]
    return int(new.sum())


def overlap(box: tuple[int, int, int, int], visited: list[tuple[int, int, int, int]], shape: tuple[int, int]) -> float:
    """Share of ``box`` inside the union of ``visited``."""
    if not visited:
        return 0.0
    m = np.zeros(shape, bool)
    for y0, y1, x0, x1 in visited:
        m[y0:y1, x0:x1] = True
    y0, y1, x0, x1 = box
    return float(m[y0:y1, x0:x1].mean())


def run_image(api: Any, name: str, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    # scribble_unet is importable once dv.project_api() has run (it puts src/ on the path)
    from scribble_unet.inference.uncertainty import (
        most_uncertain_region,
        uncertainty_from_probabilities,
    )

    image, inst = dv.load(name)
    truth = inst > 0
    shape = (int(inst.shape[0]), int(inst.shape[1]))
    sim = {**dv.SIM_DEFAULTS.get(name, {}), "max_fraction": args.initial_fraction}
    margin = int(sim.get("margin", 3))
    scr0 = dv.scribbles_for(api, inst, None, seed, sim)
    t0 = time.perf_counter()
    ck0, prob0 = train(api, image, scr0, args.steps, seed)
    base = {"benchmark": "next_region", "image": name, "seed": seed, "steps": args.steps,
            "finetune_steps": args.finetune_steps, "window": args.window, "initial_fraction": args.initial_fraction}
    iou0, frac0 = iou(prob0, truth), float((scr0 > 0).mean())
    print(f"{name} seed {seed}: labelled {frac0:.3%}, IoU after {args.steps} steps {iou0:.3f} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    arms: list[tuple[str, int | None]] = []
    for strategy in ("uncertain", "uncertain_new"):
        if strategy in args.strategies:
            arms.append((strategy, None))
    if "random" in args.strategies:
        arms += [("random", r) for r in args.random_seeds]
    if "none" in args.strategies:
        arms.append(("none", None))
    recs: list[dict[str, Any]] = []
    for strategy, rseed in arms:
        rng = np.random.default_rng([seed, rseed or 0, 7919])
        scr, ck, prob = scr0.copy(), ck0, prob0
        visited: list[tuple[int, int, int, int]] = []
        rec0 = {**base, "strategy": strategy, "random_seed": rseed, "round": 0, "labelled_fraction": round(frac0, 6),
                "iou": round(iou0, 4), "box": None}
        recs.append(rec0)
        for rnd in range(1, args.rounds + 1):
            t1 = time.perf_counter()
            u = uncertainty_from_probabilities(prob)
            if strategy == "none":
                ck, prob = train(api, image, scr, args.finetune_steps, seed, init=ck)
                recs.append({**base, "strategy": strategy, "random_seed": None, "round": rnd,
                             "labelled_fraction": round(frac0, 6), "iou": round(iou(prob, truth), 4), "box": None,
                             "image_uncertainty": round(float(u.mean()), 4)})
                print(f"  {strategy:<10} round {rnd}: no strokes added  IoU {recs[-1]['iou']:.3f}", flush=True)
                continue
            if strategy.startswith("uncertain"):
                box = most_uncertain_region(u, scr > 0, args.window,
                                            exclude=visited if strategy == "uncertain_new" else ())
                if box is None:
                    print(f"  {strategy}: nothing uncertain left after round {rnd - 1}", flush=True)
                    break
            else:
                box = random_region(shape, args.window, visited, rng)
            y0, y1, x0, x1 = box
            info = {"box": list(box), "box_uncertainty": round(float(u[y0:y1, x0:x1].mean()), 4),
                    "image_uncertainty": round(float(u.mean()), 4),
                    "box_fg_share": round(float(truth[y0:y1, x0:x1].mean()), 4),
                    "box_error_share": round(float(((prob[0][y0:y1, x0:x1] > 0.5) != truth[y0:y1, x0:x1]).mean()), 4),
                    "on_border": bool(y0 == 0 or x0 == 0 or y1 == shape[0] or x1 == shape[1]),
                    "overlap_previous": round(overlap(box, visited, shape), 4)}
            added = paint_region(api, scr, inst, box, margin, seed * 1000 + rnd)
            visited.append(box)
            ck, prob = train(api, image, scr, args.finetune_steps, seed, init=ck)
            rec = {**base, "strategy": strategy, "random_seed": rseed, "round": rnd,
                   "labelled_fraction": round(float((scr > 0).mean()), 6), "iou": round(iou(prob, truth), 4),
                   "added_px": added, **info, "wall_s": round(time.perf_counter() - t1, 1),
                   "threads": args.threads, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            recs.append(rec)
            tag = strategy + ("" if rseed is None else f"#{rseed}")
            print(f"  {tag:<10} round {rnd}: box {box} u {info['box_uncertainty']:.3f} "
                  f"(image {info['image_uncertainty']:.3f}) errors {info['box_error_share']:.1%} +{added} px "
                  f"-> labelled {rec['labelled_fraction']:.3%}  IoU {rec['iou']:.3f}"
                  + (f"  overlap {info['overlap_previous']:.0%}" if info["overlap_previous"] else ""), flush=True)
    return recs


# --------------------------------------------------------------------------------------------------
def record_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["image"], r["seed"], r["strategy"], r["random_seed"], r["round"], r["steps"], r["finetune_steps"],
            r["window"], r["initial_fraction"])


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    recs = [r for r in recs if r.get("benchmark") == "next_region"]
    return list({record_key(r): r for r in recs}.values())  # a rerun of the same key: the last one


def summarize(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the table and the per-image comparison; return the summary."""
    runs: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        runs[(r["image"], r["seed"], r["strategy"], r["random_seed"])].append(r)
    print(f"{'image':<18}{'strategy':<12}{'seed':>5}{'round':>6}{'labelled':>10}{'IoU':>8}  box (u, errors)")
    for key in sorted(runs, key=lambda k: (k[0], k[1], k[2], -1 if k[3] is None else k[3])):
        for r in sorted(runs[key], key=lambda r: r["round"]):
            strat = r["strategy"] + ("" if r["random_seed"] is None else f"#{r['random_seed']}")
            extra = (f"  {r['box']} ({r['box_uncertainty']:.2f}, {r['box_error_share']:.0%})"
                     if r.get("box") else "")
            print(f"{r['image']:<18}{strat:<12}{r['seed']:>5}{r['round']:>6}{r['labelled_fraction']:>10.3%}"
                  f"{r['iou']:>8.3f}{extra}")
    # per image and strategy: mean over runs of the IoU gain from round 0 to the last round, and per 0.1 % labelled;
    # border / overlap: share of the chosen regions touching the image border / inside earlier regions;
    # errors: share of wrongly predicted pixels inside the chosen regions when chosen (random: the image's rate)
    out: dict[str, Any] = {}
    print(f"\n{'image':<18}{'strategy':<14}{'runs':>5}{'IoU r0':>8}{'IoU last':>9}{'gain':>8}"
          f"{'+labelled':>10}{'gain/0.1%':>10}{'border':>7}{'overlap':>8}{'errors':>7}")
    images = sorted({k[0] for k in runs})
    gains: dict[str, list[float]] = defaultdict(list)
    for name in images:
        for strategy in ("uncertain", "uncertain_new", "random", "none"):
            rs = [sorted(v, key=lambda r: r["round"]) for k, v in runs.items() if k[0] == name and k[2] == strategy]
            rs = [v for v in rs if len(v) > 1]
            if not rs:
                continue
            g = [v[-1]["iou"] - v[0]["iou"] for v in rs]
            df = [v[-1]["labelled_fraction"] - v[0]["labelled_fraction"] for v in rs]
            border = [r.get("on_border", False) for v in rs for r in v[1:]]
            ov = [r.get("overlap_previous", 0.0) for v in rs for r in v[1:]]
            err = [r["box_error_share"] for v in rs for r in v[1:] if r.get("box_error_share") is not None]
            gains[strategy] += g
            row = {"runs": len(rs), "iou_round0": round(float(np.mean([v[0]["iou"] for v in rs])), 4),
                   "iou_last": round(float(np.mean([v[-1]["iou"] for v in rs])), 4),
                   "gain": round(float(np.mean(g)), 4), "gain_min": round(min(g), 4), "gain_max": round(max(g), 4),
                   "added_fraction": round(float(np.mean(df)), 6),
                   "gain_per_0.1pct": (round(float(np.mean(g) / (np.mean(df) * 1000)), 4)
                                       if np.mean(df) > 0 else None),
                   "border_share": round(float(np.mean(border)), 3), "mean_overlap": round(float(np.mean(ov)), 3),
                   "box_error_share": round(float(np.mean(err)), 4) if err else None}
            out[f"{name}/{strategy}"] = row
            print(f"{name:<18}{strategy:<14}{row['runs']:>5}{row['iou_round0']:>8.3f}{row['iou_last']:>9.3f}"
                  f"{row['gain']:>+8.3f}{row['added_fraction']:>10.3%}"
                  + (f"{row['gain_per_0.1pct']:>+10.3f}" if row["gain_per_0.1pct"] is not None else f"{'-':>10}")
                  + f"{row['border_share']:>7.0%}{row['mean_overlap']:>8.0%}"
                  + (f"{row['box_error_share']:>7.1%}" if row["box_error_share"] is not None else f"{'-':>7}"))
    # what the strokes add beyond the fine-tuning alone (the "none" control of the same image)
    for name in images:
        ctrl = out.get(f"{name}/none")
        for strategy in ("uncertain", "uncertain_new", "random"):
            row = out.get(f"{name}/{strategy}")
            if ctrl is None or row is None:
                continue
            row["gain_over_none"] = round(row["gain"] - ctrl["gain"], 4)
            if row["added_fraction"] > 0:
                row["gain_over_none_per_0.1pct"] = round(row["gain_over_none"] / (row["added_fraction"] * 1000), 4)
    for strategy, g in gains.items():
        out[f"all/{strategy}"] = {"runs": len(g), "gain": round(float(np.mean(g)), 4)}
        print(f"{'all images':<18}{strategy:<14}{len(g):>5}{'':>17}{np.mean(g):>+8.3f}")
    return out


def plot(recs: list[dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = sorted({r["image"] for r in recs})
    n = len(images) + 1
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.9 * rows), squeeze=False)
    colors = {"uncertain": "C3", "uncertain_new": "C1", "random": "C0", "none": "0.5"}
    styles = {"uncertain": "-", "uncertain_new": "-", "random": "--", "none": ":"}
    runs: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        runs[(r["image"], r["seed"], r["strategy"], r["random_seed"])].append(r)
    for ax, name in zip(axes.flat, images, strict=False):
        seen: set[str] = set()
        for key in sorted(runs, key=lambda k: (k[2] != "random", k[1], k[3] or 0)):
            if key[0] != name:
                continue
            v = sorted(runs[key], key=lambda r: r["round"])
            strat = key[2]
            marker = "os^v"[key[1] % 4]
            label = strat if strat not in seen else None
            seen.add(strat)
            ax.plot([100 * r["labelled_fraction"] for r in v], [r["iou"] for r in v],
                    marker=marker, ms=4, lw=2.0 if strat.startswith("uncertain") else 1.0,
                    ls=styles[strat], color=colors[strat], alpha=0.9, label=label)
        ax.set_title(name)
        ax.set_xlabel("labelled pixels (%)")
        ax.set_ylabel("foreground IoU")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    # last panel: mean IoU gain over round 0, per round, all images and runs
    ax = axes.flat[len(images)]
    for strat in ("none", "random", "uncertain", "uncertain_new"):
        by_round: dict[int, list[float]] = defaultdict(list)
        for key, v in runs.items():
            if key[2] != strat:
                continue
            r0 = next((r["iou"] for r in v if r["round"] == 0), None)
            if r0 is None:
                continue
            for r in v:
                by_round[r["round"]].append(r["iou"] - r0)
        if by_round:
            ks = sorted(by_round)
            m = [float(np.mean(by_round[k])) for k in ks]
            s = [float(np.std(by_round[k])) for k in ks]
            ax.errorbar(ks, m, yerr=s, marker="o", capsize=3, color=colors[strat],
                        ls=styles[strat], label=f"{strat} (n={len(by_round[ks[-1]])})")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title("all images: IoU gain over round 0 (mean ± sd)")
    ax.set_xlabel("round (one region painted per round)")
    ax.set_ylabel("IoU - IoU at round 0")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    for extra in axes.flat[len(images) + 1:]:
        extra.axis("off")
    steps = sorted({(r["steps"], r["finetune_steps"], r["window"]) for r in recs})
    fig.suptitle("next region to paint: most uncertain (red; orange: never the same region twice), random (blue), "
                 "fine-tuning only (grey); "
                 + ", ".join(f"{a} steps + {b}/round, {w} px regions" for a, b, w in steps), fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default=IMAGES, help=f"comma-separated devset names (default {IMAGES})")
    p.add_argument("--seeds", default="0,1", help="initial strokes / model seeds (default 0,1)")
    p.add_argument("--random-seeds", default="0,1", help="random-arm runs per seed (default 0,1)")
    p.add_argument("--strategies", default="uncertain,uncertain_new,random,none")
    p.add_argument("--steps", type=int, default=300, help="initial training steps (default 300)")
    p.add_argument("--finetune-steps", type=int, default=150, help="fine-tuning steps per round (default 150)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--window", type=int, default=64, help="region side in px (default 64)")
    p.add_argument("--initial-fraction", type=float, default=0.002, help="max labelled share at round 0")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--png", type=Path, default=PNG)
    p.add_argument("--plot-only", action="store_true", help="table and plot of --out, nothing run")
    args = p.parse_args(argv)
    args.strategies = dv.parse_list(args.strategies)
    args.random_seeds = dv.parse_list(args.random_seeds, int)

    new: list[dict[str, Any]] = []
    if not args.plot_only:
        api = dv.project_api()
        import torch

        torch.set_num_threads(args.threads)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for name in dv.parse_list(args.images):
            for seed in dv.parse_list(args.seeds, int):
                recs = run_image(api, name, seed, args)
                with args.out.open("a") as fh:
                    for r in recs:
                        fh.write(json.dumps(r) + "\n")
                new += recs
    recs = new if new else read_records(args.out)
    if not recs:
        sys.exit(f"error: no next_region records in {args.out}")
    summary = summarize(recs)
    plot(recs, args.png)
    print(f"plot: {args.png}")
    print(json.dumps({"benchmark": "next_region", "out": str(args.out), "png": str(args.png), "records": len(recs),
                      "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
