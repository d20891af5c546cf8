"""The options of a training run, with the sampler's and the loss's views of them."""

from __future__ import annotations

import math

from ..config import TrainOptions
from .losses import LossConfig
from .sampler import Augment


class TrainConfig(TrainOptions):
    """Options of a training run; shared by the CLI, the napari widget and the checkpoint header.

    The fields, their defaults, bounds and meanings are those of
    :class:`~scribble_unet.config.TrainOptions`; this class adds the sampler's and the loss's views
    of them.
    """

    @property
    def augment(self) -> Augment:
        """The augmentation settings as an :class:`~.sampler.Augment`."""
        return Augment(
            flips=self.flips,
            rot90=self.rot90,
            intensity=self.intensity_jitter,
            elastic=self.elastic,
            elastic_sigma=self.elastic_sigma,
            noise=self.noise,
        )

    @property
    def loss_config(self) -> LossConfig:
        """The loss settings as a :class:`~.losses.LossConfig`."""
        return LossConfig(self.loss, self.dice_weight, self.focal_gamma, self.class_weighting, self.weight_clip)


def scheduled_lr(cfg: TrainOptions, step: int, run_step: int, run_elapsed: float) -> float:
    """Learning rate at overall step ``step``, the ``run_step``-th step of the current run (0-based),
    ``run_elapsed`` seconds into it: linear warm-up over the first ``warmup_steps`` steps, then (for
    ``lr_schedule="cosine"``) cosine decay to zero at the end of the run, by steps or time, whichever
    is further along."""
    lr = cfg.lr
    if cfg.warmup_steps and step < cfg.warmup_steps:
        lr *= (step + 1) / (cfg.warmup_steps + 1)
    if cfg.lr_schedule == "cosine":
        progress = 0.0
        if cfg.steps is not None:
            progress = run_step / cfg.steps
        if cfg.time_budget is not None:
            progress = max(progress, run_elapsed / cfg.time_budget)
        lr *= 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return lr
