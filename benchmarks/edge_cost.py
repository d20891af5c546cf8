"""What the edge term (``TrainOptions.edge_weight``) costs per training step.

Trains the default model on the built-in nuclei sample (simulated strokes) for ``--steps`` steps with the
edge term off and on, rounds interleaved (off, on, off, on, ...) so that a change in the machine's load
hits both alike. Prints a table and one JSON line (the last line): steps/s per setting and round, and the
median ratio on/off.

Usage::

    python benchmarks/edge_cost.py [--steps 300] [--rounds 3] [--threads 1] [--weight 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from scribble_unet.image.nuclei import load_nuclei
from scribble_unet.model import ModelConfig
from scribble_unet.training.simulate import simulate_scribbles
from scribble_unet.training.trainer import FinishedEvent, TrainConfig, Trainer


def steps_per_s(image, scribbles, steps: int, weight: float) -> float:
    cfg = TrainConfig(steps=steps, time_budget=None, validate_every=0, device="cpu", seed=0, edge_weight=weight)
    trainer = Trainer(image, scribbles, ModelConfig(), cfg)
    for ev in trainer.run():
        if isinstance(ev, FinishedEvent):
            return ev.step / trainer.elapsed
    raise RuntimeError("training did not finish")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weight", type=float, default=2.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    image, mask = load_nuclei()
    scribbles = simulate_scribbles(mask, seed=0, max_fraction=0.0099)
    rows = []
    for r in range(args.rounds):
        off = steps_per_s(image, scribbles, args.steps, 0.0)
        on = steps_per_s(image, scribbles, args.steps, args.weight)
        rows.append((r, off, on))
    print(f"{'round':>5} {'off steps/s':>12} {'on steps/s':>11} {'on/off':>7}")
    for r, off, on in rows:
        print(f"{r:>5} {off:>12.2f} {on:>11.2f} {on / off:>7.3f}")
    ratio = statistics.median(on / off for _, off, on in rows)
    print(json.dumps({"benchmark": "edge_cost", "steps": args.steps, "threads": args.threads, "weight": args.weight,
                      "off_steps_per_s": [round(o, 2) for _, o, _ in rows],
                      "on_steps_per_s": [round(o, 2) for _, _, o in rows], "on_over_off": round(ratio, 3)}))


if __name__ == "__main__":
    main()
