"""``scribble-unet train``: train (or fine-tune) a model on an image and its scribbles, headless.

The command is wired into the main parser by :mod:`scribble_unet.cli` through :func:`add_train_parser`
and :func:`run_train`. It runs the :class:`~scribble_unet.training.trainer.Trainer` with a progress
bar that shows the loss and the validation IoU, and writes the model file atomically at the end (and
every ``--checkpoint-every`` steps). Ctrl-C stops training cleanly: the model trained so far is
written, marked ``reason: stopped`` in its training notes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelOptions, TrainOptions
from ..errors import ScribbleUNetError
from .inputs import open_cli_image
from .options import add_options, default_text, given

MODEL_OPTIONS = ("depth", "width", "filter_bank", "pixel_forest", "prior_shift")
"""Architecture options of ``train`` (the rest comes from the image, ``--classes`` or ``--init``)."""
TRAIN_OPTIONS = ("steps", "time_budget", "tile", "batch_size", "lr", "seed", "device", "fg_share",
                 "val_share", "validate_every", "checkpoint_every", "elastic", "object_diameter", "scale",
                 "consistency", "edge_weight", "start")
"""The :class:`~scribble_unet.config.TrainOptions` fields offered on the command line."""


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    t = subparsers.add_parser(
        "train",
        help="train or fine-tune a U-Net on scribbles",
        description=(
            "Train a U-Net on the labelled pixels of SCRIBBLES (0 unlabelled, 1 background, "
            "2.. object classes) over IMAGE and write the model to MODEL. Ctrl-C stops and still "
            "writes the model trained so far."
        ),
    )
    t.add_argument("--image", required=True, help="image: zarr array, OME-Zarr image, TIFF or .npy")
    t.add_argument("--scribbles", required=True, help="scribbles: zarr array, TIFF or .npy, same Y, X size")
    t.add_argument("--out", required=True, metavar="MODEL", help="model file to write (e.g. model.safetensors)")
    t.add_argument("--init", default=None, metavar="MODEL", help="fine-tune this model instead of starting fresh")
    t.add_argument("--classes", default=None, metavar="NAMES",
                   help="comma-separated object class names (value 2 is the first); default: one class "
                        "'object', or the classes of --init")
    add_options(t, ModelOptions, MODEL_OPTIONS,
                defaults={n: f"{default_text(ModelOptions, n)}, or that of --init" for n in MODEL_OPTIONS})
    add_options(t, TrainOptions, TRAIN_OPTIONS,
                defaults={"steps": f"{default_text(TrainOptions, 'steps')}, or unlimited with --time-budget",
                          "tile": "the smallest that covers the field of view"})
    t.add_argument("--dice", action="store_true", help="add a soft Dice term (weight 1) to the loss")
    t.add_argument("--channel-axis", type=int, default=None, help="channel axis of a 3D image")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return t


def open_scribbles(path: str | Path) -> Any:
    """Open a scribble array ``(Y, X)`` lazily: a zarr array (or an OME-Zarr label image), TIFF or ``.npy``."""
    p = Path(path)
    if not p.exists():
        raise ScribbleUNetError(f"scribbles {p} do not exist")
    suffix = p.suffix.lower()
    arr: Any
    if suffix == ".npy":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise ScribbleUNetError(f"scribbles {p} are not a readable .npy array ({e})") from e
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            try:
                arr = tifffile.memmap(p, mode="r")
            except ValueError:  # compressed or tiled: read it (scribbles are small integers)
                arr = tifffile.imread(p)
        except (tifffile.TiffFileError, OSError) as e:
            raise ScribbleUNetError(f"scribbles {p} are not a readable TIFF ({e})") from e
    elif p.is_dir():
        import zarr

        try:
            node = zarr.open(str(p), mode="r")
        except Exception as e:
            raise ScribbleUNetError(f"scribbles {p} are not a zarr array ({e})") from e
        if isinstance(node, zarr.Group):
            attrs: dict[str, Any] = dict(node.attrs)
            ms: Any = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
            if not ms:
                raise ScribbleUNetError(f"scribbles {p} are a zarr group, not an array; give the array's path")
            node = node[str(ms[0]["datasets"][0]["path"])]
        arr = node
    else:
        raise ScribbleUNetError(f"scribbles {p}: expected a zarr array folder, a .tif/.tiff or a .npy file")
    while len(arr.shape) > 2 and arr.shape[0] == 1:  # (1, Y, X) or (1, 1, Y, X) from label exporters
        arr = arr[0]
    if len(arr.shape) != 2:
        raise ScribbleUNetError(f"scribbles {p} have shape {tuple(arr.shape)}; a 2D (Y, X) array is needed")
    return arr


def _object_iou(iou: dict[str, float], names: tuple[str, ...]) -> float | None:
    vals = [iou[n] for n in names if n in iou]
    return float(np.mean(vals)) if vals else None


def run_train(args: argparse.Namespace) -> int:
    """Run ``scribble-unet train`` from parsed arguments; returns the exit status (0 on success)."""
    from tqdm import tqdm

    from ..model.checkpoint import load_checkpoint
    from ..model.unet import ModelConfig
    from ..training.trainer import (
        FinishedEvent,
        StepEvent,
        TrainConfig,
        Trainer,
        ValidationEvent,
        config_for_init,
    )

    image = open_cli_image(args.image, args.channel_axis)
    scribbles = open_scribbles(args.scribbles)
    names = tuple(n.strip() for n in args.classes.split(",")) if args.classes else None
    if names is not None and (not names or any(not n for n in names)):
        raise ScribbleUNetError(f"--classes must be comma-separated non-empty names, got {args.classes!r}")
    init = load_checkpoint(args.init) if args.init else None
    if init is not None:
        model_config = config_for_init(init, names)
        if args.depth is not None and args.depth != model_config.depth:
            raise ScribbleUNetError(f"--depth {args.depth} differs from the depth {model_config.depth} of --init")
        if args.width is not None and args.width != model_config.width:
            raise ScribbleUNetError(f"--width {args.width} differs from the width {model_config.width} of --init")
        if args.filter_bank is not None and args.filter_bank != model_config.filter_bank:
            raise ScribbleUNetError("--filter-bank differs from the filter bank of --init "
                                    f"({'on' if model_config.filter_bank else 'off'})")
        if args.pixel_forest is not None:  # not learned by the network: may be switched when fine-tuning
            model_config = model_config.replace(pixel_forest=args.pixel_forest)
        if args.prior_shift is not None:  # nor is the shift: it is estimated again at the end of the run
            model_config = model_config.replace(prior_shift=args.prior_shift)
    else:
        names = names or ("object",)
        model_config = ModelConfig(
            **given(args, MODEL_OPTIONS),
            in_channels=image.n_channels,
            n_classes=len(names),
            class_names=names,
        )
    options: dict[str, Any] = given(args, TRAIN_OPTIONS)
    if args.steps is None and args.time_budget:
        options["steps"] = None  # a time budget alone: no step limit
    if args.dice:
        options["dice_weight"] = 1.0
    config = TrainConfig(**options)
    steps = config.steps
    trainer = Trainer(image, scribbles, model_config, config, init=init, out=args.out)

    if steps is not None:
        bar = tqdm(total=steps, unit="step", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
    else:
        bar = tqdm(total=math.ceil(args.time_budget), unit="s", disable=args.quiet, file=sys.stderr,
                   dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt}s [{elapsed}{postfix}]")
    postfix: dict[str, str] = {}
    finished: FinishedEvent | None = None
    events = trainer.run()
    interrupted = False
    try:
        while True:
            try:
                ev = next(events)
            except StopIteration:
                break
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                # The interrupted step is lost; stop and let the generator write what it has.
                trainer.stop()
                events = trainer.run()
                continue
            if isinstance(ev, StepEvent):
                postfix["loss"] = f"{ev.loss:.3f}"
                if steps is not None:
                    bar.update(1)
                else:
                    bar.n = min(ev.elapsed, bar.total)
                    bar.refresh()
                bar.set_postfix(postfix, refresh=False)
            elif isinstance(ev, ValidationEvent):
                iou = _object_iou(ev.iou, model_config.class_names)
                if iou is not None:
                    postfix["stroke_iou"] = f"{iou:.3f}"
                bar.set_postfix(postfix)
            elif isinstance(ev, FinishedEvent):
                finished = ev
    finally:
        bar.close()
    if finished is None:  # pragma: no cover - the generator always ends with one
        raise ScribbleUNetError("training ended without writing a model")
    notes = finished.checkpoint.training
    val = notes.get("val_iou") or {}
    iou = _object_iou(val, model_config.class_names)
    msg = (f"wrote {args.out} ({finished.step} steps from {trainer.start}, ended by {finished.reason}; "
           f"{trainer.scale_choice.describe()}")
    if notes.get("final_loss") is not None:
        msg += f"; loss {notes['final_loss']:.3f}"
    if iou is not None:
        # Held-out strokes lie inside objects and away from them, never on edges: this figure is
        # higher than the mask's real IoU (docs/quality.md measures by how much).
        msg += f"; IoU on held-out strokes {iou:.3f} (inside/away from objects, not at edges)"
    print(msg + ")")
    print(json.dumps(run_summary(trainer, finished, iou)))
    return 130 if interrupted else 0


def run_summary(trainer: Any, finished: Any, stroke_iou: float | None) -> dict[str, Any]:
    """The one JSON line ``train`` ends with (for scripts and benchmarks)."""
    notes = finished.checkpoint.training
    seconds = float(notes.get("elapsed_s") or 0.0)
    choice = trainer.scale_choice
    return {
        "event": "trained",
        "model": str(finished.path) if finished.path is not None else None,
        "steps": int(finished.step),
        "seconds": round(seconds, 2),
        "steps_per_s": round(finished.step / seconds, 2) if seconds > 0 else None,
        "reason": finished.reason,
        "start": trainer.start,
        "object_diameter_px": None if choice.diameter is None else round(choice.diameter, 1),
        "diameter_source": choice.source,
        "scale": choice.scale,
        "field_of_view_px": trainer.model_config.field_of_view * choice.scale,
        "tile": trainer.tile,
        "final_loss": notes.get("final_loss"),
        "held_out_stroke_iou": None if stroke_iou is None else round(stroke_iou, 4),
        "labelled_pixels": int(trainer.index.n_labelled),
    }
