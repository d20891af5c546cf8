"""The options of a training run, with the sampler's and the loss's views of them."""

from __future__ import annotations

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
