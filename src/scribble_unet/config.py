"""One configuration: every option of a model and of a training run, with its default, bounds and meaning.

This module is the only place that states a default. The rest is generated from it:

* :class:`~scribble_unet.model.unet.ModelConfig` and :class:`~scribble_unet.training.trainer.TrainConfig`
  add behaviour (derived sizes, the sampler's and the loss's settings) to :class:`ModelOptions` and
  :class:`TrainOptions` and change none of their fields;
* the command line's options (:func:`scribble_unet.cli.options.add_options`): description -> help
  text, default -> "(default ...)", bounds -> the check of the typed value;
* the napari widget's forms: description -> tooltip, bounds -> spin-box range;
* the checkpoint header (``training.train_config``), read back with validation.

Every model is a frozen pydantic model with ``extra="forbid"``. A refused value raises
:class:`~scribble_unet.errors.ScribbleUNetError` with one line naming the option, what it must be and
the value given (``steps must be a positive whole number, got 0``).
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ScribbleUNetError

NormKind = Literal["batch", "none"]
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
LossKind = Literal["ce", "focal"]
ClassWeighting = Literal["inverse", "median", "none"]

WEIGHT_MIN = 0.1
"""Smallest class weight (several classes): a class with many labelled pixels keeps some say."""
MAX_BOTTLENECK_CHANNELS = 2048
"""Largest channel count of the U-Net's deepest level (width x 2^depth): about 300 MB of weights."""
WEIGHT_MAX = 10.0
"""Largest class weight: a class with a handful of labelled pixels does not swamp the loss."""


def option(default: Any, description: str, *, label: str | None = None, must: str | None = None,
           **bounds: Any) -> Any:
    """A field: its default, a plain-language description, bounds; ``label``/``must`` word the error."""
    extra: dict[str, Any] = {k: v for k, v in (("label", label), ("must", must)) if v is not None}
    # Numbers are strict: "3" is not 3 (a header or a caller with the wrong types is refused, not guessed).
    strict = True if set(bounds) & {"ge", "gt", "le", "lt"} else None
    return Field(default, description=description, json_schema_extra=extra or None, strict=strict, **bounds)


class OptionTypeError(ScribbleUNetError, TypeError):
    """An option was given a value of the wrong type (a string for a number, a number for a list)."""


class Options(BaseModel):
    """Base of the configuration models: frozen, no unknown keys, one-line errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            kind = err.errors()[0]["type"]
            wrong_type = kind.endswith(("_type", "_parsing"))
            raise (OptionTypeError if wrong_type else ScribbleUNetError)(error_message(type(self), err)) from None

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` applied, validated like a new object."""
        return type(self)(**{**dict(self), **changes})


def field_label(cls: type[BaseModel], name: str) -> str:
    """How messages name field ``name``: its ``label``, or the name with spaces."""
    extra = cls.model_fields[name].json_schema_extra
    label = extra.get("label") if isinstance(extra, dict) else None
    return str(label) if label else name.replace("_", " ")


def field_bounds(cls: type[BaseModel], name: str) -> dict[str, float]:
    """Bounds of a numeric field as ``{"ge"|"gt"|"le"|"lt": value}``."""
    out: dict[str, float] = {}
    for m in cls.model_fields[name].metadata:
        for key, kind in (("ge", Ge), ("gt", Gt), ("le", Le), ("lt", Lt)):
            if isinstance(m, kind):
                out[key] = getattr(m, key)
    return out


def field_choices(cls: type[BaseModel], name: str) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal`` field (``None`` for other fields)."""
    tp = cls.model_fields[name].annotation
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    for a in typing.get_args(tp):  # Literal[...] | None
        if typing.get_origin(a) is Literal:
            return typing.get_args(a)
    return None


def must_text(cls: type[BaseModel], name: str) -> str:
    extra = cls.model_fields[name].json_schema_extra
    if isinstance(extra, dict) and extra.get("must"):
        return str(extra["must"])
    choices = field_choices(cls, name)
    if choices is not None:
        words = [repr(c) for c in choices]
        return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
    b = field_bounds(cls, name)
    if "ge" in b and "le" in b:
        return f"between {b['ge']:g} and {b['le']:g}"
    if "ge" in b and "lt" in b:
        return f"in [{b['ge']:g}, {b['lt']:g})"
    if b.get("gt") == 0:
        return "positive"
    if b.get("ge") == 1:
        return "at least 1"
    if "ge" in b:
        return f">= {b['ge']:g}"
    return "valid"


def error_message(cls: type[BaseModel], err: ValidationError) -> str:
    """One line for the first error of ``err``: which option, what it must be, what was given."""
    e = err.errors()[0]
    loc = e.get("loc") or ()
    name = str(loc[0]) if loc else ""
    if e["type"] == "extra_forbidden":
        unknown = sorted(str(x["loc"][0]) for x in err.errors() if x["type"] == "extra_forbidden")
        return f"unknown {cls.__name__} options: {', '.join(unknown)}"
    if name not in cls.model_fields:  # a check across fields (a model validator raised ValueError)
        return str(e["msg"]).removeprefix("Value error, ")
    value = e.get("input")
    got = repr(value) if isinstance(value, str) else value
    return f"{field_label(cls, name)} must be {must_text(cls, name)}, got {got}"


class ModelOptions(Options):
    """The U-Net's architecture, stored in every checkpoint."""

    depth: int = option(2, "Number of pooling steps of the U-Net. Tile origins lie on multiples of 2^depth. "
                           "2 (field of view 47 px) suits nuclei-sized objects; 3 or 4 larger ones.",
                        label="model depth", ge=1, le=6)
    width: int = option(16, "Feature channels of the first level; each level below doubles it "
                            "(width x 2^depth is at most 2048, which bounds the memory of the network).",
                        label="model width", must="a whole number from 1 to 512", ge=1, le=512)
    in_channels: int = option(1, "Channels of the input image.", label="input channels",
                              must="a whole number from 1 to 256", ge=1, le=256)
    n_classes: int = option(1, "Number of object classes K (background excluded). K = 1 gives one logit "
                               "(sigmoid); K > 1 gives K + 1 logits (softmax over background and classes).",
                            label="number of classes", must="a whole number from 1 to 1000", ge=1, le=1000)
    class_names: tuple[str, ...] = option(("object",), "Names of the K object classes, in order "
                                                       "(scribble value k + 1 is class k).")
    norm: NormKind = option("batch", "Normalisation layers: 'batch' (BatchNorm, fixed at prediction) "
                                     "or 'none'.")
    filter_bank: bool = option(False, "Feed the network fixed multi-scale image filters (Gaussian smoothing, "
                                      "gradient magnitude, Laplacian and Hessian eigenvalues at several "
                                      "scales, as ilastik's pixel classifier uses) beside the image. They "
                                      "widen the field of view by their reach.", label="filter bank")
    pixel_forest: bool = option(True, "Multiply the network's prediction with that of a small random forest "
                                      "on fixed image filters (as ilastik's pixel classifier), fitted on "
                                      "the same strokes: the forest judges each pixel by its look, the "
                                      "network by its context. Steadier from a few strokes; prediction "
                                      "takes about twice as long.", label="pixel forest")
    prior_shift: float = option(0.5, "With the pixel forest: shift the prediction towards the image's own "
                                     "share of each class, estimated from the prediction on a sample of "
                                     "the image (strokes are class-balanced, so the model otherwise "
                                     "assumes equal shares: fat masks of sparse objects). 1 applies the "
                                     "whole estimated shift, 0 none.", label="prior shift",
                                must="a number from 0 to 1", ge=0.0, le=1.0)
    scale: int = option(1, "Working resolution: the network sees the image binned by this factor (block "
                           "means) and its probabilities are upsampled back. 1 is full resolution; the "
                           "trainer picks a coarser one for large objects.",
                        label="working-resolution scale", must="a whole number from 1 to 64", ge=1, le=64)
    snap_borders: bool = option(True, "Put mask borders on image edges: pixels the network is unsure about "
                                      "(most probable class below 0.9) take the class of the confident "
                                      "region whose flood over the image's gradient reaches them first "
                                      "(a seeded watershed, at most 16 px from the confident pixels). "
                                      "Off: each pixel takes its most probable class.",
                                label="snap borders to edges")

    @model_validator(mode="after")
    def _check_size(self) -> ModelOptions:
        """The deepest level's channels bound the network's memory: a header cannot ask for gigabytes."""
        if self.width * 2**self.depth > MAX_BOTTLENECK_CHANNELS:
            raise ValueError(
                f"model width x 2^depth must be at most {MAX_BOTTLENECK_CHANNELS}, got {self.width} x "
                f"2^{self.depth} = {self.width * 2**self.depth}"
            )
        if any(len(n) > 200 for n in self.class_names):
            raise ValueError("class names must be at most 200 characters long")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_class_names(cls, data: Any) -> Any:
        """Name the classes ``class1..classK`` (or ``object``) when no names, or only the default, are given."""
        if not isinstance(data, dict):
            return data
        n = data.get("n_classes", 1)
        given_names = data.get("class_names", ("object",))
        if not isinstance(given_names, (list, tuple)):
            return data  # the field's own check refuses it in one line
        names = tuple(given_names)
        if isinstance(n, int) and 1 <= n <= 1000 and len(names) != n:
            if len(names) == 0 or names == ("object",):
                names = tuple(f"class{k + 1}" for k in range(n)) if n > 1 else ("object",)
            else:
                listed = ", ".join(str(x) for x in names[:5]) + (", ..." if len(names) > 5 else "")
                raise ValueError(f"{len(names)} class names given for {n} classes: {listed[:300]}")
        return {**data, "class_names": names}


class TrainOptions(Options):
    """Options of a training run, shared by the command line, the napari widget and the checkpoint."""

    steps: int | None = option(500, "Number of optimisation steps; none for no step limit (then the time "
                                    "budget or a stop ends the run).", must="a positive whole number", ge=1)
    time_budget: float | None = option(None, "Wall-clock seconds of training (validation and checkpoints "
                                             "included, pauses excluded). With steps too, whichever comes "
                                             "first ends the run.", label="time budget",
                                       must="a positive number of seconds", gt=0, allow_inf_nan=False)
    tile: int | None = option(None, "Side of the square training tiles (px), rounded up to a multiple of "
                                    "2^depth; it must cover the network's field of view. Auto: the smallest "
                                    "such side of at least 64.", label="tile size", gt=0)
    batch_size: int = option(4, "Tiles per optimisation step.", label="batch size", ge=1)
    lr: float = option(1e-3, "Peak learning rate of the Adam optimiser.", label="learning rate", gt=0,
                       allow_inf_nan=False)
    lr_schedule: Literal["cosine", "constant"] = option(
        "cosine", "'cosine': linear warm-up, then cosine decay to zero at the end of the run (by steps or "
                  "time, whichever is further); 'constant': the peak rate throughout.",
        label="learning-rate schedule")
    warmup_steps: int = option(20, "Steps of linear learning-rate warm-up (0 for none).",
                               label="warmup steps", ge=0)
    weight_decay: float = option(0.0, "Decoupled weight decay (AdamW).", label="weight decay", ge=0)
    batchnorm: Literal["frozen", "batch"] = option(
        "frozen", "How BatchNorm layers train. 'frozen': they keep their running statistics and learn only "
                  "scale and shift, so training computes what prediction computes. 'batch': the usual "
                  "batch statistics.")
    fg_share: float = option(0.5, "Share of training tiles centred on object pixels (the rest on background).",
                             label="foreground share", ge=0, le=1)
    val_share: float = option(0.0, "Share of the strokes of each label value held out from training to "
                                   "measure the IoU on them (whole strokes). 0: every stroke trains, and "
                                   "no held-out figure is shown (with a few strokes each one counts).",
                              label="validation share", ge=0, lt=1)
    flips: bool = option(True, "Random flips of the training tiles.")
    rot90: bool = option(True, "Random 90-degree rotations of the training tiles.")
    intensity_jitter: float = option(0.1, "Amplitude of a random per-channel gain and offset on the "
                                          "normalised image (0 disables it).", label="intensity jitter", ge=0)
    elastic: bool = option(False, "Elastic deformation of the training tiles (U-Net paper style).")
    elastic_sigma: float = option(10.0, "Standard deviation (px) of the elastic displacements.",
                                  label="elastic sigma", ge=0)
    noise: float = option(0.1, "Largest standard deviation of Gaussian noise added to the normalised tiles "
                               "(0 disables it); fresh noise keeps the network from learning the few "
                               "labelled pixels by heart.", ge=0)
    consistency: float = option(0.0, "Weight of learning from unpainted pixels: an averaged copy of the "
                                     "network (mean teacher) labels the pixels it is confident about, "
                                     "and the network is trained to agree there (0 turns it off).",
                                label="consistency weight", ge=0, le=100)
    edge_weight: float = option(0.0, "Weight of a term on every pixel that keeps neighbouring pixels of "
                                     "similar intensity in the same class, so mask borders settle on image "
                                     "edges rather than in the unpainted band around objects (0 turns it "
                                     "off).", label="edge weight", ge=0, le=100)
    loss: LossKind = option("ce", "'ce': binary cross-entropy with a positive weight for one class, "
                                  "class-weighted cross-entropy for several; 'focal': focal loss.")
    dice_weight: float = option(0.0, "Weight of an added soft Dice term on labelled pixels (0 for none).",
                                label="Dice weight", ge=0)
    focal_gamma: float = option(2.0, "Focusing parameter of the focal loss.", label="focal gamma", ge=0)
    class_weighting: ClassWeighting = option("inverse", "Loss weights from the labelled pixel counts of the "
                                                        "whole label set: 'inverse' or 'median' frequency "
                                                        "(one class: pos_weight = background / object "
                                                        "pixels), or 'none'.",
                                             label="class weighting")
    weight_clip: tuple[float, float] = option((WEIGHT_MIN, WEIGHT_MAX), "Range the class weights are "
                                                                        "clipped to.",
                                              label="weight clip range")
    start: Literal["generalist", "scratch"] = option(
        "scratch", "Weights a new model starts from: 'scratch', random weights; 'generalist', the project's "
                   "U-Net pretrained on public microscopy images with hand-made masks (nuclei, phase-contrast "
                   "cells, electron microscopy), then fine-tuned on your strokes. On test images it helped most on "
                   "bright field, phase contrast and EM and made masks less fat, but did a little worse on "
                   "large fluorescent nuclei (docs/quality.md). A model being fine-tuned starts from itself; a model "
                   "of another depth, width or normalisation starts from scratch.",
        label="starting weights", must="generalist or scratch")
    seed: int = option(0, "Seed of the model initialisation, tile sampling, augmentation and split.", ge=0)
    validate_every: int = option(100, "Validate every this many steps (0: only at the end).", ge=0)
    checkpoint_every: int = option(0, "Write the model every this many steps (0: only at the end).", ge=0)
    device: DeviceName = option("auto", "Where to train: 'auto' (CUDA, else Apple MPS, else CPU), 'cpu', "
                                        "'cuda' or 'mps'.", must="auto, cpu, cuda or mps")
    prefetch: int = option(2, "Batches read and augmented ahead of the step on a background thread "
                              "(0: read in the step).", ge=0, le=16)
    object_diameter: float | None = option(None, "Typical object diameter in pixels, e.g. measured with a "
                                                 "line in napari. Auto: estimated from the image under the "
                                                 "object strokes. Sets the working resolution.",
                                           label="object diameter", must="between 1 and 10000 px",
                                           ge=1, le=10_000, allow_inf_nan=False)
    scale: int | None = option(None, "Working resolution: train and predict on the image binned by this "
                                     "factor. Auto: chosen from the object diameter so that objects span "
                                     "at most about three quarters of the field of view; fine-tuning keeps the initial "
                                     "model's.", label="working-resolution scale",
                               must="a whole number from 1 to 64", ge=1, le=64)

    @model_validator(mode="after")
    def _check_weight_clip(self) -> TrainOptions:
        lo, hi = self.weight_clip
        if not 0 < lo <= hi:
            raise ValueError(f"weight clip range must satisfy 0 < low <= high, got {self.weight_clip}")
        return self


INTERACTIVE_TRAINING: dict[str, Any] = {"steps": None, "time_budget": 120.0, "validate_every": 50,
                                        "checkpoint_every": 20}
"""What the napari widget changes for interactive work: no step limit (a time budget, which the user can
change or stop early, ends a run), validation often enough to plot, and a checkpoint every 20 steps so
that the live prediction follows the training."""
