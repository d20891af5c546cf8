"""``scribble-unet demo``: the whole job on the built-in nuclei sample.

Headless, it writes the sample image as OME-Zarr, simulates a user's sparse scribbles from the sample's
hand-made mask, trains a U-Net within a time budget, predicts the whole image into an OME-Zarr label
image and prints the foreground IoU against the hand-made mask. With a display, it opens napari with
the sample and the plugin's widgets instead (:mod:`scribble_unet._napari._demo`, loaded by name).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError
from ..image.nuclei import load_nuclei


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


def run_demo(out: Path, headless: bool = True, budget: float = 60.0, sample: str = "nuclei") -> int:
    """Run the demo; returns an exit status.

    ``sample`` picks what napari opens (``"nuclei"``, ``"small"`` 16384² or ``"large"`` 65536²
    procedural images); the headless pipeline always uses the nuclei image, whose mask is hand-made.
    """
    if budget <= 0:
        raise ScribbleUNetError(f"time budget must be positive, got {budget}")
    if not headless:
        # The GUI is reached by name at run time: the core never imports napari or Qt, and runs
        # without them installed.
        try:
            gui = importlib.import_module("scribble_unet._napari._demo")
            viewer = gui.open_demo_viewer(out, sample=sample)
        except ImportError as e:  # no napari or no Qt binding: fall back to the headless pipeline
            print(f"cannot open napari ({e}); running headless", file=sys.stderr)
        else:
            print(f"napari is open on the {sample} sample; the project folder is {out}")
            gui.run_viewer(viewer)
            return 0
    import zarr
    from tqdm import tqdm

    from ..export.to_zarr import predict_to_zarr
    from ..image.convert import convert_to_ome_zarr
    from ..model.checkpoint import save_checkpoint
    from ..model.unet import ModelConfig
    from ..training import FinishedEvent, StepEvent, TrainConfig, Trainer, ValidationEvent
    from ..training.simulate import simulate_scribbles

    out.mkdir(parents=True, exist_ok=True)
    image, instances = load_nuclei()
    image_path = out / "nuclei.zarr"
    convert_to_ome_zarr(image, image_path, chunk=256, progress=False, overwrite=True)
    scribbles = simulate_scribbles(instances, seed=0)
    scribble_path = out / "scribbles.zarr"
    store = zarr.create_array(store=str(scribble_path), shape=scribbles.shape, chunks=(128, 128),
                              dtype=scribbles.dtype, overwrite=True)
    store[...] = scribbles
    store.attrs["classes"] = ["background", "nucleus"]
    labelled = float((scribbles > 0).mean())
    print(f"sample: 512x512 nuclei (DSB 2018); simulated scribbles cover {labelled:.2%} of the pixels")

    model_path = out / "model.safetensors"
    trainer = Trainer(str(image_path), store, ModelConfig(class_names=("nucleus",)),
                      TrainConfig(steps=None, time_budget=budget, seed=0), out=None)
    bar = tqdm(total=int(budget), unit="s", desc="train", dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}")
    last_iou: float | None = None
    ckpt = None
    t0 = time.perf_counter()
    for ev in trainer.run():
        if isinstance(ev, StepEvent):
            bar.n = min(int(ev.elapsed), int(budget))
            bar.set_postfix_str(f"step {ev.step} loss {ev.loss:.3f}"
                                + (f" IoU on held-out strokes {last_iou:.3f}" if last_iou is not None else ""))
        elif isinstance(ev, ValidationEvent) and ev.iou:
            last_iou = float(np.mean(list(ev.iou.values())))
        elif isinstance(ev, FinishedEvent):
            ckpt = ev.checkpoint
    bar.n = int(budget)
    bar.close()
    if ckpt is None:  # pragma: no cover - the trainer always finishes with a FinishedEvent
        raise RuntimeError("training ended without a model")
    save_checkpoint(model_path, ckpt)
    steps = ckpt.training.get("steps", "?")
    print(f"trained {steps} steps in {time.perf_counter() - t0:.0f} s -> {model_path}")

    pred_path = out / "prediction.zarr"
    predict_to_zarr(ckpt, str(image_path), pred_path, tile=256, overwrite=True, progress=False)
    result: Any = zarr.open_group(str(pred_path), mode="r")
    mask = np.asarray(result["labels/mask/0"][...])
    score = iou(mask > 0, instances > 0)
    print(f"foreground IoU against the hand-made mask: {score:.3f}")
    print("outputs:")
    print(f"  image        {image_path}")
    print(f"  scribbles    {scribble_path}   (0 unlabelled, 1 background, 2 nucleus)")
    print(f"  model        {model_path}")
    print(f"  prediction   {pred_path}/labels/mask   (OME-Zarr label image: 0 background, 1 nucleus)")
    print(f"open them in napari with: napari {image_path} {pred_path}/labels/mask")
    return 0
