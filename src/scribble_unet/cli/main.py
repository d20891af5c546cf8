"""The ``scribble-unet`` command line.

Every user error (a :class:`~scribble_unet.errors.ScribbleUNetError`) is printed as one line,
``error: <what is wrong>``, with exit status 2; nothing that looks complete is left behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ..config import ModelOptions
from ..errors import ScribbleUNetError
from .argtypes import non_negative_int as _non_negative_int
from .argtypes import positive_float as _positive_float
from .argtypes import positive_int as _positive_int
from .options import add_options, given

INIT_MODEL_OPTIONS = ("depth", "width", "in_channels", "norm")


def _cmd_init_model(args: argparse.Namespace) -> int:
    from ..model.checkpoint import Checkpoint, save_checkpoint
    from ..model.normalize import Normalization, compute_normalization
    from ..model.unet import ModelConfig, build_model

    names = tuple(n.strip() for n in args.class_names.split(",")) if args.class_names else ()
    classes = args.classes or (len(names) if names else 1)
    config = ModelConfig(**given(args, INIT_MODEL_OPTIONS), n_classes=classes, class_names=names)
    if args.image:
        from ..image import open_image

        src = open_image(args.image, channel_axis=args.channel_axis)
        if src.n_channels != config.in_channels:
            raise ScribbleUNetError(
                f"--image has {src.n_channels} channel(s) but --channels is {config.in_channels}"
            )
        norm = compute_normalization(src)
    else:
        norm = Normalization.identity(config.in_channels)
    model = build_model(config, seed=args.seed)
    save_checkpoint(args.out, Checkpoint.from_model(model, norm, {"kind": "untrained", "seed": args.seed}))
    print(f"wrote an untrained model ({config.depth} levels, width {config.width}, halo {config.halo} px) to {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..export.to_zarr import predict_to_zarr
    from ..model.checkpoint import load_checkpoint
    from .inputs import open_cli_image

    ckpt = load_checkpoint(args.model)
    if args.workers is not None and args.scheduler:
        raise ScribbleUNetError("give either --workers or --scheduler, not both")
    diameter = _instance_diameter(args, ckpt.training)  # checked before the long prediction
    image = open_cli_image(args.image, channel_axis=args.channel_axis)
    res = predict_to_zarr(
        ckpt, image, args.out, tile=args.tile, probabilities=args.probabilities, workers=args.workers,
        scheduler=args.scheduler, threads=args.threads, nan_policy=args.nan_policy, device=args.device,
        overwrite=args.overwrite, progress=not args.quiet, snap=False if args.no_snap else None,
    )
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    if res.skipped:
        print(f"resumed: {res.skipped} of {res.n_chunks} chunks were already done", file=sys.stderr)
    print(f"wrote {res.path} (mask at {res.path}/labels/mask"
          + (f", probabilities at {res.path}/probabilities" if args.probabilities else "") + ")")
    if args.instances and "cancelled" not in res.notes:
        _write_instances(args, res.path, diameter)
    return 0


# --- instance labels (issue 9): a pass after the mask, see docs/instances.md ---------------------


def _instance_diameter(args: argparse.Namespace, training: dict[str, object]) -> float | None:
    """The object diameter the split uses: --object-diameter, else the one the model was trained with."""
    if not args.instances:
        if args.no_split or args.object_diameter is not None:
            raise ScribbleUNetError("--no-split and --object-diameter go with --instances")
        return None
    if args.no_split:
        return None
    if args.object_diameter is not None:
        return float(args.object_diameter)
    known = training.get("object_diameter") if isinstance(training, dict) else None
    if isinstance(known, (int, float)) and known >= 1:
        return float(known)
    raise ScribbleUNetError("--instances splits touching objects by their size: give --object-diameter PX "
                            "(the model does not record one), or --no-split")


def _write_instances(args: argparse.Namespace, out: str, diameter: float | None) -> None:
    from ..export.instances import instances_to_zarr

    res = instances_to_zarr(out, split=diameter is not None, object_diameter=diameter,
                            threads=args.threads, progress=not args.quiet)
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {res.n_objects} instances at {res.path}")


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..image.convert import convert_to_ome_zarr

    path = convert_to_ome_zarr(args.input, args.output, chunk=args.chunk, channel_axis=args.channel_axis,
                               progress=not args.quiet, overwrite=args.overwrite)
    print(f"wrote OME-Zarr image {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    headless = args.headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return run_demo(Path(args.out), headless=headless, budget=args.time_budget, sample=args.sample)


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog.split()[-1] if ' ' in self.prog else self.prog}: {message} "
              f"(see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = _Parser(
        prog="scribble-unet",
        description="Train a U-Net from sparse scribbles and predict on huge images, exactly and lazily.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    d = sub.add_parser("demo", help="run the whole job on the built-in nuclei sample")
    d.add_argument("--headless", action="store_true", help="do not open napari even if a display is present")
    d.add_argument("--out", default="scribble-unet-demo", help="folder for the demo's outputs")
    d.add_argument("--time-budget", type=float, default=60.0, help="training time in seconds (default 60)")
    d.add_argument("--sample", choices=["nuclei", "small", "large"], default="nuclei",
                   help="image napari opens: the real nuclei image or a 16384²/65536² procedural one")
    d.set_defaults(func=_cmd_demo)

    m = sub.add_parser("init-model", help="write an untrained model to predict with")
    m.add_argument("--out", required=True, help="model file to write (e.g. model.safetensors)")
    add_options(m, ModelOptions, ("depth", "width", "in_channels"), flags={"in_channels": "--channels"})
    m.add_argument("--classes", type=_positive_int, default=None, help="number of object classes K")
    m.add_argument("--class-names", default="", help="comma-separated object class names")
    add_options(m, ModelOptions, ("norm",))
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--image", help="compute normalisation statistics from this image")
    m.add_argument("--channel-axis", type=int, default=None)
    m.set_defaults(func=_cmd_init_model)

    pr = sub.add_parser("predict", help="predict the mask of a whole image into an OME-Zarr group")
    pr.add_argument("--model", required=True)
    pr.add_argument("--image", required=True, help="zarr array, OME-Zarr image, TIFF or .npy")
    pr.add_argument("--out", required=True, help="output zarr group (resumed if it exists)")
    pr.add_argument("--tile", type=_non_negative_int, default=512,
                    help="output chunk side in px, rounded to the model's grid; 0 = one whole-image pass")
    pr.add_argument("--probabilities", action="store_true", help="also write per-class probabilities")
    pr.add_argument("--workers", type=_positive_int, default=None, help="run on a local dask cluster")
    pr.add_argument("--scheduler", default=None, help="address of a dask scheduler, tcp://HOST:PORT")
    pr.add_argument("--threads", type=_positive_int, default=None,
                    help="chunks predicted at once locally (default: one per core, one torch thread each)")
    pr.add_argument("--channel-axis", type=int, default=None)
    pr.add_argument("--nan-policy", choices=["error", "zero"], default="error",
                    help="NaN/inf pixels: refuse (default) or predict them as normalised 0")
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing output")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.add_argument("--no-snap", action="store_true",
                    help="mask = each pixel's most probable class; by default pixels the model is unsure "
                         "about take the class of the confident region whose flood over the image's "
                         "gradient reaches them first (borders on image edges)")
    pr.add_argument("--instances", action="store_true",
                    help="also write instance labels (labels/instances): connected objects, touching ones "
                         "split by a distance-transform watershed, exact across chunks")
    pr.add_argument("--no-split", action="store_true",
                    help="with --instances: connected regions only, no watershed split")
    pr.add_argument("--object-diameter", type=_positive_float, default=None, metavar="PX",
                    help="with --instances: typical object diameter in px for the split "
                         "(default: the one the model was trained with)")
    pr.set_defaults(func=_cmd_predict)

    c = sub.add_parser("convert", help="convert a TIFF (or any readable image) to an OME-Zarr pyramid")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--chunk", type=_positive_int, default=1024)
    c.add_argument("--channel-axis", type=int, default=None)
    c.add_argument("--overwrite", action="store_true")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_cmd_convert)

    try:
        from .train import add_train_parser, run_train
    except ImportError:  # training not installed in this build
        pass
    else:
        add_train_parser(sub)
        sub.choices["train"].set_defaults(func=run_train)
    return p


MAX_ERROR_CHARS = 400
"""An error line is one line of at most this many characters, whatever a file made it say."""


def _capped(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ScribbleUNetError as e:
        print(f"error: {_capped(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # a disk full, a permission lost mid-run: still one line, no traceback
        text = f"{e.strerror or e} ({e.filename})" if e.filename else str(e)
        print(f"error: {_capped(text)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished chunks are kept and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
