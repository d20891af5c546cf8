"""The training loop: a Qt-free generator of typed events that can be paused, resumed and stopped.

:class:`Trainer` trains a :class:`~scribble_unet.model.unet.UNet` on the labelled pixels of a scribble array.
:meth:`Trainer.run` is a generator; every step it yields a :class:`StepEvent`, every
``validate_every`` steps a :class:`ValidationEvent` (IoU and Dice per class on held-out strokes), every
``checkpoint_every`` steps a :class:`CheckpointEvent`, and at the end one :class:`FinishedEvent`. A GUI
iterates it in a worker thread and calls :meth:`Trainer.pause`, :meth:`Trainer.resume`,
:meth:`Trainer.stop` and :meth:`Trainer.scribbles_changed` from its own thread; all four only set
flags that the loop reads between steps.

Every user error (shapes, label values, classes, architecture of the initial model, options) is
raised as a one-line :class:`~scribble_unet.errors.ScribbleUNetError` from the constructor, before
anything is written.

Example
-------
>>> trainer = Trainer(image, scribbles, ModelConfig(depth=2, width=8), TrainConfig(steps=200))  # doctest: +SKIP
>>> for event in trainer.run():  # doctest: +SKIP
...     if isinstance(event, ValidationEvent):
...         print(event.step, event.iou)
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from ..classes import FIRST_CLASS, LabelScheme
from ..errors import ScribbleUNetError
from ..image import ImageSource, open_image
from ..image.binned import BinnedLabels, BinnedSource
from ..inference.device import resolve_device
from ..model.checkpoint import Checkpoint, check_model_path, save_checkpoint
from ..model.normalize import Normalization, compute_normalization
from ..model.unet import ModelConfig, UNet, build_model
from .edges import EdgeTerm
from .events import (
    CheckpointEvent,
    FinishedEvent,
    FinishReason,
    StepEvent,
    TrainEvent,
    ValidationEvent,
)
from .forest_fit import ForestRows, fit_forest
from .labels import LabelIndex, Region, StrokeSplit, split_strokes
from .losses import ScribbleLoss
from .optim import AdamW
from .prefetch import Batch, Prefetcher
from .prepare import _load_init, check_classes_painted, check_model_fits, config_for_init  # noqa: F401 (config_for_init: re-exported)
from .prior import PriorEstimator
from .sampler import TileSampler, check_tile, field_of_view
from .scale import ScaleChoice, estimate_diameter, scale_for_diameter
from .start import start_from_generalist
from .teacher import MeanTeacher
from .train_config import TrainConfig, scheduled_lr
from .validate import predict_held_out, scores_per_class


# ---------------------------------------------------------------------- trainer
class Trainer:
    """Train a U-Net on sparse scribbles.

    Parameters
    ----------
    image
        The training image: an :class:`~scribble_unet.image.ImageSource`, or an array/path accepted by
        :func:`~scribble_unet.image.open_image`.
    scribbles
        ``(Y, X)`` label array (numpy, zarr, ...) of the image's size: 0 unlabelled, 1 background,
        ``k + 1`` class ``k``. Read by chunks; it may be edited while training runs (then call
        :meth:`scribbles_changed`).
    model_config
        Architecture and classes. ``in_channels`` must match the image. With ``init``, depth, width
        and norm must match the initial model (see :func:`config_for_init`).
    config
        Training options.
    init
        Checkpoint to fine-tune. Same number of classes: all weights are loaded. Another number of
        classes: everything but the output layer is loaded, the output layer starts fresh.
    out
        Model file to write (intermediate and final checkpoints); None keeps the model in memory only.
    weights
        Optional ``(Y, X)`` per-pixel loss weights (e.g. :func:`~.losses.unet_weight_map` for dense
        instance masks).
    normalization
        Intensity normalisation; by default computed on ``image`` with
        :func:`~scribble_unet.model.normalize.compute_normalization`. Stored in the checkpoint.

    Attributes
    ----------
    model
        The network being trained (train mode during steps, eval mode during validation).
    index, split
        The label index and the current training/validation split.
    step
        Steps done so far.
    device
        The torch device used.
    """

    def __init__(
        self,
        image: Any,
        scribbles: Any,
        model_config: ModelConfig,
        config: TrainConfig,
        init: Checkpoint | None = None,
        out: str | os.PathLike[str] | None = None,
        weights: Any | None = None,
        normalization: Normalization | None = None,
    ) -> None:
        src: ImageSource = open_image(image)
        self.source = src  # full resolution
        self.config = config
        self.init = init
        shape = tuple(int(s) for s in scribbles.shape)
        if shape != tuple(src.shape_yx):
            raise ScribbleUNetError(
                f"scribbles have shape {shape} but the image is {tuple(src.shape_yx)} (Y, X); they must match"
            )
        if weights is not None and tuple(int(s) for s in weights.shape) != tuple(src.shape_yx):
            raise ScribbleUNetError(
                f"loss weights have shape {tuple(weights.shape)} but the image is {tuple(src.shape_yx)}"
            )
        check_model_fits(model_config, init, src.n_channels)
        self.out = check_model_path(out) if out is not None else None
        self.device = resolve_device(config.device)

        index = LabelIndex(scribbles, model_config.class_names)
        check_classes_painted(index.counts, model_config.class_names)
        self._full_norm: Normalization | None = normalization  # computed at most once (for the estimate)
        self.scale_choice = self._choose_scale(src, index, model_config)
        f = self.scale_choice.scale
        self.model_config = model_config = model_config.replace(scale=f)
        self.tile = check_tile(config.tile, model_config)
        if f > 1:  # everything below runs at the working resolution
            self.image: ImageSource = BinnedSource(src, f)
            self.labels: Any = BinnedLabels(scribbles, f)
            index = LabelIndex(self.labels, model_config.class_names)
            weights = None if weights is None else BinnedLabels(weights, f, how="mean")
        else:
            self.image, self.labels = src, scribbles
        self.index = index
        self.split: StrokeSplit = split_strokes(self.index, config.val_share, config.seed)

        if normalization is None and f == 1 and self._full_norm is not None:
            normalization = self._full_norm  # the size estimate already computed it on this image
        self.normalization = normalization or compute_normalization(self.image)
        if self.normalization.n_channels != src.n_channels:
            raise ScribbleUNetError(
                f"normalisation has {self.normalization.n_channels} channel(s) but the image has {src.n_channels}"
            )
        self.sampler = TileSampler(
            self.image, self.labels, self.split, self.tile, self.normalization, config.fg_share, config.augment,
            weights, context=model_config.filter_reach,
        )
        self.loss_fn = ScribbleLoss(model_config.n_classes, config.loss_config, self.index.counts)

        self.model: UNet = build_model(model_config, seed=config.seed)
        self.new_head, self.start = False, "initial model" if init is not None else "scratch"
        if init is not None:
            self.new_head = _load_init(self.model, init)
        elif config.start == "generalist":
            self.start = start_from_generalist(self.model)
        self.model.to(self.device)
        self._forest_stale = self.model.forest is not None  # fitted before the model is next used in eval
        self._forest_rows: ForestRows | None = None
        self._prior = (PriorEstimator(self.image, self.model.config.align, self.model.config.prior_shift, config.seed)
                       if self.model.forest is not None and self.model.config.prior_shift > 0 else None)
        self.optimizer = AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.teacher = MeanTeacher(self.model, config.consistency) if config.consistency > 0 else None
        self.edges = EdgeTerm(config.edge_weight, config.seed) if config.edge_weight > 0 else None
        self.rng = np.random.default_rng(config.seed)
        self.step = 0
        self.elapsed = 0.0
        self.last_validation: ValidationEvent | None = None
        self._losses: deque[float] = deque(maxlen=20)

        self._cond = threading.Condition()
        self._paused = False
        self._stopped = False
        self._pending: list[Region | None] = []
        self._running = False
        self._sampler_lock = threading.Lock()

    def _choose_scale(self, src: ImageSource, index: LabelIndex, model_config: ModelConfig) -> ScaleChoice:
        cfg = self.config
        if self.init is not None:
            return ScaleChoice(self.init.config.scale, None, "initial model")
        if cfg.scale is not None:
            return ScaleChoice(int(cfg.scale), cfg.object_diameter, "fixed")
        fov = field_of_view(model_config.depth)
        if cfg.object_diameter is not None:
            return ScaleChoice(scale_for_diameter(cfg.object_diameter, fov, src.shape_yx), cfg.object_diameter, "user")
        parts = [index.coords(v) for v in sorted(index.counts) if v >= FIRST_CLASS]
        points = np.concatenate(parts or [np.zeros((0, 2), np.int64)])
        if self._full_norm is None:
            self._full_norm = compute_normalization(src)
        d = estimate_diameter(src, self._full_norm, points, np.random.default_rng(cfg.seed))
        if d is None:
            return ScaleChoice(1, None, "default")
        return ScaleChoice(scale_for_diameter(d, fov, src.shape_yx), d, "estimated")

    # ------------------------------------------------------------------ control (any thread)
    def pause(self) -> None:
        """Pause before the next step; :meth:`run` blocks until :meth:`resume` or :meth:`stop`."""
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def resume(self) -> None:
        """Continue after :meth:`pause`."""
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def stop(self) -> None:
        """End the run after the current step (also while paused); the final checkpoint is still made."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` is in effect."""
        with self._cond:
            return self._paused

    def scribbles_changed(self, region: Region | None = None) -> None:
        """Tell the trainer that the scribbles changed in ``region`` ``(y0, y1, x0, x1)`` (None: anywhere).

        Before the next step only the index chunks touching the region are re-read; the split, the
        sampler and the loss weights (``pos_weight`` / class weights) are recomputed from the new counts.
        """
        if region is not None and isinstance(self.labels, BinnedLabels):
            region = self.labels.working_region(tuple(int(v) for v in region))  # type: ignore[arg-type]
        with self._cond:
            self._pending.append(None if region is None else tuple(int(v) for v in region))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ internals
    def _apply_changes(self) -> bool:
        with self._cond:
            pending, self._pending = self._pending, []
        if not pending:
            return False
        if any(r is None for r in pending):
            self.index.update()
        else:
            chunks = [c for r in pending for c in self.index.chunks_in(r)]  # type: ignore[arg-type]
            self.index.update(chunks=chunks)
        check_classes_painted(self.index.counts, self.model_config.class_names)
        split = split_strokes(self.index, self.config.val_share, self.config.seed)
        with self._sampler_lock:  # the prefetch thread may be drawing a batch
            self.split = split
            self.sampler.set_split(split)
        self.loss_fn.set_counts(self.index.counts)
        self._forest_stale = self.model.forest is not None
        return True

    def fit_forest(self) -> None:
        """Refill the model's pixel forest from every stroke if the strokes changed since the last fill."""
        if self._forest_stale and self.model.forest is not None:
            self._forest_rows = fit_forest(self.model.forest, self.image, self.split, self.normalization,
                                           self.config.seed)
            self._forest_stale = False

    def _wait_while_paused(self) -> float:
        """Block while paused (until resumed or stopped); returns the seconds spent waiting."""
        t0 = time.perf_counter()
        with self._cond:
            while self._paused and not self._stopped:
                self._cond.wait()
        return time.perf_counter() - t0

    def learning_rate(self, run_step: int, run_elapsed: float) -> float:
        """Learning rate for the ``run_step``-th step of the current run (0-based), see ``lr_schedule``."""
        return scheduled_lr(self.config, self.step, run_step, run_elapsed)

    def _draw_batch(self) -> Batch:
        with self._sampler_lock:
            return self.sampler.batch(self.config.batch_size, self.rng)

    def _train_step(self, lr: float, batches: Prefetcher | None = None) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images, labels, weights = batches.get() if batches is not None else self._draw_batch()
        x = torch.from_numpy(images).to(self.device)
        y = torch.from_numpy(labels).to(self.device)
        w = torch.from_numpy(weights).to(self.device) if weights is not None else None
        self.model.train()
        if self.config.batchnorm == "frozen":
            for m in self.model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()  # running statistics used and kept; scale and shift still learn
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x, context=self.sampler.context)
        loss = self.loss_fn(logits, y, w)
        extras = (self.teacher.loss(logits, x, y, self.sampler.context, self.step) if self.teacher else None,
                  self.edges.loss(logits, x, self.sampler.context, self.step) if self.edges else None)
        loss = sum((e for e in extras if e is not None), loss)
        loss.backward()
        self.optimizer.step()
        if self.teacher is not None:
            self.teacher.update(self.model)
        return float(loss.detach())

    def class_label_names(self) -> dict[int, str]:
        """Label value -> name: ``1 -> "background"``, ``k + 1 -> class_names[k - 1]``."""
        return LabelScheme(self.model_config.class_names).names()

    def validate(self) -> ValidationEvent | None:
        """IoU and Dice per class on the held-out strokes (None when nothing is held out).

        The network runs in eval mode (BatchNorm uses its running statistics and does not update them)
        and is put back in the mode it was in.
        """
        val = self.split.val_all
        if len(val) == 0:
            return None
        self.fit_forest()
        w = self.index.shape[1]
        a = self.model_config.align
        cell = max(256, -(-self.tile // a) * a)
        ys, xs = val // w, val % w
        truth = np.concatenate([np.full(len(p), v) for v, p in sorted(self.split.val.items())])
        order = np.argsort(np.concatenate([p for _, p in sorted(self.split.val.items())]), kind="stable")
        truth = truth[order]  # aligned with val (= sorted union of the held-out positions)
        with (self._forest_rows.held_out_view(self.model.forest) if self._forest_rows and self.model.forest
              else nullcontext()):  # the forest learnt from these strokes too: validate without them
            pred = predict_held_out(self.model, self.image, self.normalization, ys, xs, cell, self.index.shape,
                                    self.device)
        iou, dice = scores_per_class(pred, truth, self.class_label_names())
        return ValidationEvent(self.step, iou, dice, len(val))

    def checkpoint(self, finished: bool = False, reason: str | None = None) -> Checkpoint:
        """The current weights with normalisation and training notes (a copy; training may go on)."""
        self.fit_forest()
        if self._prior is not None:  # the image's class shares, from the model's prediction on a sample
            self._prior.update(self.model, self.normalization, self.device, self.elapsed, force=finished)
        last = self.last_validation
        notes: dict[str, Any] = {
            "steps": self.step,
            "final_loss": float(np.mean(self._losses)) if self._losses else None,
            "val_iou": last.iou if last else None,
            "val_dice": last.dice if last else None,
            "val_step": last.step if last else None,
            "class_names": list(self.model_config.class_names),
            "elapsed_s": round(self.elapsed, 3),
            "finished": finished,
            "reason": reason,
            "tile": self.tile,
            "batch_size": self.config.batch_size,
            "lr": self.config.lr, "seed": self.config.seed,
            "device": str(self.device),
            "label_counts": {str(v): n for v, n in self.index.counts.items()},
            "held_out_strokes": {str(v): n for v, n in self.split.n_val_strokes.items()},
            "init": self.init.token if self.init is not None else None,
            "scale": self.scale_choice.scale,
            "object_diameter": None if self.scale_choice.diameter is None else round(self.scale_choice.diameter, 1),
            "scale_source": self.scale_choice.source,
            "new_head": self.new_head,
            "start": self.start,
            "train_config": self.config.model_dump(mode="json"),
        }
        return Checkpoint.from_model(self.model, self.normalization, notes)

    # ------------------------------------------------------------------ the loop
    def run(self) -> Iterator[TrainEvent]:
        """Train, yielding events; ends with exactly one :class:`FinishedEvent`.

        Calling ``run()`` again after it finished trains ``steps`` more steps (with a fresh time budget)
        on the same model and optimiser.
        """
        cfg = self.config
        with self._cond:
            if self._running:
                raise RuntimeError("this trainer is already running")
            self._running = True
        try:
            start_step = self.step
            base_elapsed = self.elapsed
            run_start = time.perf_counter()
            paused_s = 0.0

            def clock() -> float:
                # Wall-clock seconds of this run, pauses excluded; validation and checkpoints count.
                return time.perf_counter() - run_start - paused_s

            reason: FinishReason | None = None
            batches = Prefetcher(self._draw_batch, cfg.prefetch) if cfg.prefetch else None
            try:
                while True:
                    paused_s += self._wait_while_paused()
                    with self._cond:
                        if self._stopped:
                            reason = "stopped"
                    if reason:
                        break
                    self._apply_changes()
                    loss = self._train_step(self.learning_rate(self.step - start_step, clock()), batches)
                    self.step += 1
                    self.elapsed = base_elapsed + clock()
                    self._losses.append(loss)
                    yield StepEvent(self.step, loss, self.elapsed)
                    done_steps = cfg.steps is not None and self.step - start_step >= cfg.steps
                    done_time = cfg.time_budget is not None and clock() >= cfg.time_budget
                    if cfg.validate_every and self.step % cfg.validate_every == 0 and not (done_steps or done_time):
                        ev = self.validate()
                        if ev is not None:
                            self.last_validation = ev
                            yield ev
                    if cfg.checkpoint_every and self.out is not None and self.step % cfg.checkpoint_every == 0:
                        ckpt = self.checkpoint(finished=False)
                        save_checkpoint(self.out, ckpt)
                        yield CheckpointEvent(self.step, self.out, ckpt)
                    if done_steps:
                        reason = "steps"
                    elif cfg.time_budget is not None and clock() >= cfg.time_budget:
                        reason = "time"
                    if reason:
                        break
            finally:
                if batches is not None:
                    batches.close()
            trained = self.step > start_step
            if trained and (self.last_validation is None or self.last_validation.step != self.step):
                ev = self.validate()
                if ev is not None:
                    self.last_validation = ev
                    yield ev
            self.elapsed = base_elapsed + clock()
            final = self.checkpoint(finished=True, reason=reason)
            if self.out is not None:
                save_checkpoint(self.out, final)
            yield FinishedEvent(self.step, reason, final, self.out)
        finally:
            with self._cond:
                self._running = False
                self._stopped = False
                self._paused = False
