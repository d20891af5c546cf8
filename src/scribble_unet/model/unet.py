"""A 2D U-Net whose tiled prediction is exactly its whole-image prediction.

Design choices that make tiling exact (see ``docs/design.md``):

* two 3x3 "same" convolutions per level, 2x2 max pooling and 2x2 stride-2 transposed convolutions,
  so every layer is translation-equivariant on the grid of its level;
* no GroupNorm/InstanceNorm/LayerNorm (statistics over a tile would change with the tile); BatchNorm is
  allowed because prediction always runs in eval mode, where it is a fixed affine map;
* the receptive field is computed from the architecture (:func:`receptive_field`), not hard-coded,
  and the halo used for tiling is that field rounded up to the pooling grid ``2**depth``.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from ..config import ModelOptions, NormKind
from ..errors import ScribbleUNetError
from . import filters, forest
from .filters import FilterBank


class ModelConfig(ModelOptions):
    """Architecture of the U-Net; stored as JSON in every checkpoint.

    The fields, their defaults and bounds are those of :class:`~scribble_unet.config.ModelOptions`;
    this class adds the sizes derived from them.
    """

    @property
    def out_channels(self) -> int:
        """Number of logits the network outputs."""
        return 1 if self.n_classes == 1 else self.n_classes + 1

    @property
    def align(self) -> int:
        """Pooling grid: tile origins and padded sizes are multiples of this."""
        return 2**self.depth

    @property
    def full_align(self) -> int:
        """Grid of full-resolution chunk origins: the pooling grid times the working-resolution scale."""
        return self.align * self.scale

    @property
    def filter_reach(self) -> int:
        """Pixels each side the input filter bank reads (0 without one)."""
        return filters.reach() if self.filter_bank else 0

    @property
    def field_of_view(self) -> int:
        """Side (px, at the working resolution) of the input window one output pixel depends on."""
        left, right = receptive_field(self.depth)
        return left + right + 1 + 2 * self.filter_reach

    @property
    def halo(self) -> int:
        """Context (px) each side of an output tile so that tiling is exact."""
        halo = required_halo(self.depth, self.filter_reach)
        if self.pixel_forest:  # the forest's filters read this far; rounded up to the pooling grid
            halo = max(halo, -(-forest.reach() // self.align) * self.align)
        return halo

    def to_json(self) -> str:
        d = self.model_dump(mode="json")
        if d.get("scale") == 1:
            del d["scale"]  # full resolution: the header (and the model token) of earlier versions
        if d.get("filter_bank") is False:
            del d["filter_bank"]  # no filter bank: as earlier versions wrote it
        if d.get("pixel_forest") is False:
            del d["pixel_forest"]  # no forest: as earlier versions wrote it
        if d.get("prior_shift") == 0:
            del d["prior_shift"]  # no prior shift: as earlier versions wrote it
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = set(cls.model_fields)
        unknown = set(d) - known
        if unknown:
            raise ScribbleUNetError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**{"filter_bank": False, "pixel_forest": False, "prior_shift": 0.0, **d})  # headers without the key predate the filter bank


def receptive_field(depth: int) -> tuple[int, int]:
    """Reach of the U-Net's receptive field, in input pixels, to the left and to the right.

    Computed by interval arithmetic through the network, for every phase of the output pixel on the
    ``2**depth`` pooling grid: each 3x3 convolution widens an interval by one pixel of its level, max
    pooling maps level-``i`` pixels ``[lo, hi]`` to level ``i - 1`` pixels ``[2 lo, 2 hi + 1]`` and
    transposed convolution maps them to ``[lo // 2, hi // 2]``. ``tests/test_model.py`` checks the
    result against the support of the network's gradient.
    """

    def enc(level: int, lo: int, hi: int) -> tuple[int, int]:
        lo, hi = lo - 2, hi + 2  # two 3x3 convolutions at this level
        if level == 0:
            return lo, hi
        return enc(level - 1, 2 * lo, 2 * hi + 1)  # input came through a 2x2 max pool

    def dec(level: int, lo: int, hi: int) -> tuple[int, int]:
        if level == depth:  # bottleneck: convolutions on the pooled deepest encoder level
            return enc(level, lo, hi)
        lo, hi = lo - 2, hi + 2
        a = enc(level, lo, hi)  # skip connection
        b = dec(level + 1, lo // 2, hi // 2)  # upsampled path
        return min(a[0], b[0]), max(a[1], b[1])

    left = right = 0
    for x in range(2**depth):
        lo, hi = dec(0, x, x)
        left, right = max(left, x - lo), max(right, hi - x)
    return left, right


def required_halo(depth: int, extra: int = 0) -> int:
    """Halo (px) for exact tiling: the receptive field (widened by ``extra``, the reach of an input filter
    bank) rounded up to a multiple of ``2**depth``."""
    reach = max(receptive_field(depth)) + extra
    align = 2**depth
    return -(-reach // align) * align


class _DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, norm: NormKind) -> None:
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """2D U-Net (Ronneberger et al., 2015) with "same" convolutions and a configurable depth."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w, d = config.width, config.depth
        chans = [w * 2**i for i in range(d + 1)]
        self.down = nn.ModuleList()
        self.filters = FilterBank(config.in_channels) if config.filter_bank else None
        c_prev = self.filters.out_channels if self.filters is not None else config.in_channels
        for i in range(d):
            self.down.append(_DoubleConv(c_prev, chans[i], config.norm))
            c_prev = chans[i]
        self.pool = nn.MaxPool2d(2)
        self.bottom = _DoubleConv(chans[d - 1], chans[d], config.norm)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(d)):
            self.up.append(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2))
            self.dec.append(_DoubleConv(2 * chans[i], chans[i], config.norm))
        self.head = nn.Conv2d(chans[0], config.out_channels, 1)
        self.forest = (forest.PixelForest(config.in_channels, config.n_classes, prior=config.prior_shift > 0)
                       if config.pixel_forest else None)

    def forward(self, x: torch.Tensor, context: int = 0) -> torch.Tensor:
        """Logits of ``x``; ``context`` pixels each side feed only the input filter bank and are cropped
        before the U-Net (training tiles carry them so that the filters see what they see at prediction).
        In eval mode a fitted pixel forest's log frequencies are added (:mod:`.forest`); in training mode
        the U-Net alone answers."""
        if self.forest is not None and not self.training and self.forest.is_fitted:
            return self._unet(x, context) + self.forest(x, context)
        return self._unet(x, context)

    def _unet(self, x: torch.Tensor, context: int) -> torch.Tensor:
        if self.filters is not None:
            x = self.filters(x)
        if context:
            x = x[..., context:-context, context:-context]
        a = self.config.align
        if x.shape[-1] % a or x.shape[-2] % a:
            raise ValueError(f"U-Net input sides must be multiples of {a}, got {tuple(x.shape[-2:])}")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, block, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_model(config: ModelConfig, seed: int | None = None) -> UNet:
    """Create a freshly initialised U-Net; ``seed`` makes the initial weights reproducible."""
    if seed is None:
        return UNet(config)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return UNet(config)
    finally:
        torch.random.set_rng_state(state)
