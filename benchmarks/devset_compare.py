"""Compare two U-Net variants of the development set over stroke seeds, as the landing rule asks.

A default change lands only if no development image gets worse by more than 0.02 IoU (issue 8). One
training run is noisy (one stroke more or fewer moves a network a lot), so this script compares the
*mean over stroke seeds* of each case (image at a scale), over the seeds both variants and the
ilastik-style forest were run on, and reports:

* per case: the seeds used, the mean IoU of each variant and of the forest, and the difference;
* the mean difference, the cases worse by more than the rule's 0.02, and how many cases each variant
  wins against the forest.

Records are the JSON lines of ``devset_eval.py`` (every ``benchmarks/results/devset*.jsonl`` by default).
A variant is named by its ``variant`` field; ``snap:COLUMN`` takes the column of
``benchmarks/results/snap_variants.jsonl`` instead (masks of the fifth session's models re-snapped).
``--protocol sparse`` keeps records whose strokes were simulated with ``max_objects`` (the issue's
protocol: strokes on 8 objects and 8 background strokes), ``default`` the simulator's defaults.

    python benchmarks/devset_compare.py --a sparse8_forest_val0 --b sparse8 --protocol sparse

Prints a table and ONE JSON line last.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
RULE = 0.02


def _is_sparse(rec: dict) -> bool:
    return bool(rec.get("sim")) and "max_objects" in rec["sim"]


def load(paths: list[str], name: str, protocol: str) -> dict[tuple[str, int], float]:
    """``(case, seed) -> IoU`` of the variant ``name`` (``ilastik`` for the forest) in ``protocol``."""
    out: dict[tuple[str, int], float] = {}
    if name.startswith("snap:"):
        column = name[5:]
        for line in open(RESULTS / "snap_variants.jsonl"):
            r = json.loads(line)
            out[(r["case"], int(r["seed"]))] = float(r[column])
        return out
    for path in paths:
        for line in open(path):
            r = json.loads(line)
            if _is_sparse(r) != (protocol == "sparse"):
                continue
            if (name == "ilastik" and r["method"] == "ilastik") or (r["method"] == "unet" and r.get("variant") == name):
                out[(r["case"], int(r["seed"]))] = float(r["iou"])  # a later record of a run wins
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", required=True, help="candidate variant")
    p.add_argument("--b", required=True, help="variant it is compared with (the defaults)")
    p.add_argument("--protocol", choices=["sparse", "default"], default="sparse")
    p.add_argument("--records", nargs="*", default=None, help="JSON-line files (default: results/devset*.jsonl)")
    args = p.parse_args(argv)
    paths = args.records or sorted(glob.glob(str(RESULTS / "devset*.jsonl")))
    a, b, forest = (load(paths, n, args.protocol) for n in (args.a, args.b, "ilastik"))
    runs = sorted(set(a) & set(b) & set(forest))
    if not runs:
        raise SystemExit("no (case, seed) was run by both variants and the forest")
    cases = sorted({c for c, _ in runs})
    print(f"{'case':24s} {'seeds':>6s} {args.a[:14]:>14s} {args.b[:14]:>14s} {'forest':>7s} {'a - b':>7s}")
    diffs, a_wins, b_wins, worse = [], 0, 0, []
    for case in cases:
        seeds = [s for c, s in runs if c == case]
        ma, mb, mf = (float(np.mean([d[(case, s)] for s in seeds])) for d in (a, b, forest))
        diffs.append(ma - mb)
        a_wins += ma > mf
        b_wins += mb > mf
        flag = "  worse" if ma - mb < -RULE else ""
        if flag:
            worse.append(case)
        print(f"{case:24s} {','.join(map(str, seeds)):>6s} {ma:14.3f} {mb:14.3f} {mf:7.3f} {ma - mb:+7.3f}{flag}")
    mean_a = float(np.mean([a[r] for r in runs]))
    mean_b = float(np.mean([b[r] for r in runs]))
    mean_f = float(np.mean([forest[r] for r in runs]))
    print(f"mean over {len(runs)} runs: {mean_a:.3f} / {mean_b:.3f} / forest {mean_f:.3f}; mean case difference "
          f"{np.mean(diffs):+.3f}; worse by more than {RULE}: {len(worse)} of {len(cases)}; above the forest: "
          f"{a_wins} / {b_wins}")
    print(json.dumps({"benchmark": "devset_compare", "a": args.a, "b": args.b, "protocol": args.protocol,
                      "cases": len(cases), "runs": len(runs), "mean_a": round(mean_a, 4), "mean_b": round(mean_b, 4),
                      "mean_forest": round(mean_f, 4), "mean_case_diff": round(float(np.mean(diffs)), 4),
                      "worse_than_rule": worse, "a_above_forest": a_wins, "b_above_forest": b_wins}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
