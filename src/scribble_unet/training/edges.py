"""Mask borders that follow image edges: a local, contrast-sensitive Potts (CRF) loss on every pixel.

Strokes lie inside objects and in open background; the band between them is never painted, so the
cross-entropy on strokes says nothing about where a mask should end. Regularised losses for weakly
supervised segmentation (Tang et al., "On regularized losses for weakly-supervised CNN segmentation",
ECCV 2018; Obukhov et al., "Gated CRF loss", 2019) add, on all pixels, the relaxed Potts energy

    sum over neighbour pairs (i, j):  k_ij * (1 - sum_c p_i^c p_j^c)

with a kernel ``k_ij`` that is large between nearby pixels of similar intensity. Two pixels of a flat
region pay for being in different classes; two pixels across a strong edge pay almost nothing. The
cheapest place for a mask border is then on the image edge, not in the flat background around an object.

Here the neighbourhood is local (offsets up to :data:`RADIUS` px, spatial Gaussian of width
:data:`SIGMA_XY`), and the intensity part is ``exp(-beta |I_i - I_j|^2)`` with GrabCut's contrast
``beta = 1 / (2 <|I_i - I_j|^2>)`` over the 4-neighbour pairs of each tile (Rother et al. 2004), so the
term means the same on dim and bright, noisy and clean images. The loss only shapes training; prediction
is the plain network, so tiled prediction stays exact.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

RADIUS = 3
"""Largest offset (px, along each axis) between the pixel pairs of the loss."""
SIGMA_XY = 2.0
"""Width (px) of the spatial Gaussian weighting the pairs."""
RAMP = 200
"""Steps over which the term's weight rises linearly from 0 to its full value."""
SMOOTH_SIGMA = 1.0
"""Gaussian smoothing (px) of the image before intensity differences are taken: pixel noise (the
training tiles carry added noise) would otherwise make flat regions look as contrasted as edges."""


def _smooth(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)``, mirror-padded, radius ``ceil(2.5 sigma)``."""
    if sigma <= 0:
        return image
    r = max(1, math.ceil(2.5 * sigma))
    t = torch.arange(-r, r + 1, dtype=image.dtype, device=image.device)
    g = torch.exp(-(t * t) / (2 * sigma * sigma))
    g = g / g.sum()
    c = image.shape[1]
    x = F.pad(image, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _offsets(radius: int) -> list[tuple[int, int]]:
    """Half of the (2r+1)^2 neighbourhood without the centre: each unordered pair once."""
    return [
        (dy, dx)
        for dy in range(radius + 1)
        for dx in range(-radius, radius + 1)
        if dy > 0 or dx > 0
    ]


def _pair(t: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Views ``(a, b)`` of ``t`` (..., H, W) with ``b`` the pixel ``(dy, dx)`` away from ``a``."""
    h, w = t.shape[-2:]
    a = t[..., : h - dy, max(0, -dx) : w - max(0, dx)]
    b = t[..., dy:, max(0, dx) : w - max(0, -dx)]
    return a, b


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` probabilities of every class; one logit (sigmoid) gives background and object."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def edge_aware_potts(
    logits: torch.Tensor,
    image: torch.Tensor,
    radius: int = RADIUS,
    sigma_xy: float = SIGMA_XY,
    smooth: float | None = None,
) -> torch.Tensor:
    """Mean relaxed Potts energy per pixel of a batch, with contrast-sensitive pair weights.

    Parameters
    ----------
    logits
        ``(B, K, H, W)`` network outputs (one channel: sigmoid; more: softmax).
    image
        ``(B, C, H, W)`` normalised image under the same pixels.
    radius, sigma_xy
        Neighbourhood half-width and spatial Gaussian width, in pixels.
    smooth
        Gaussian blur (px) of the image before its differences are taken; None: :data:`SMOOTH_SIGMA`.

    Returns
    -------
    torch.Tensor
        Scalar: the pair energies summed over offsets, divided by the sum of the spatial weights, and
        averaged over pixels, so a tile cut straight through a flat region costs about the share of its
        pixels near the cut.
    """
    if logits.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and image {tuple(image.shape)} differ in size"
        )
    p = class_probabilities(logits)
    img = _smooth(image.detach(), SMOOTH_SIGMA if smooth is None else smooth)
    # GrabCut's beta per tile, from the 4-neighbour differences
    dh = ((img[..., :, 1:] - img[..., :, :-1]) ** 2).sum(1).mean(dim=(-2, -1))
    dv = ((img[..., 1:, :] - img[..., :-1, :]) ** 2).sum(1).mean(dim=(-2, -1))
    beta = (1.0 / (2.0 * (0.5 * (dh + dv)).clamp(min=1e-8)))[:, None, None]
    total = logits.new_zeros(())
    norm = 0.0
    for dy, dx in _offsets(radius):
        ws = math.exp(-(dy * dy + dx * dx) / (2.0 * sigma_xy * sigma_xy))
        ia, ib = _pair(img, dy, dx)
        pa, pb = _pair(p, dy, dx)
        k = torch.exp(-beta * ((ia - ib) ** 2).sum(1))
        disagree = 1.0 - (pa * pb).sum(1)
        total = total + ws * (k * disagree).mean()
        norm += ws
    return total / norm


class EdgeTerm:
    """The edge-aware Potts term of the training loss, ramped in over :data:`RAMP` steps."""

    def __init__(self, weight: float) -> None:
        self.weight = float(weight)

    def weight_at(self, step: int) -> float:
        return self.weight * min(1.0, step / RAMP)

    def loss(
        self, logits: torch.Tensor, x: torch.Tensor, context: int, step: int
    ) -> torch.Tensor | None:
        """The weighted term for a batch; ``x`` carries ``context`` extra pixels per side (cropped)."""
        w = self.weight_at(step)
        if w <= 0:
            return None
        image = (
            x[..., context : x.shape[-2] - context, context : x.shape[-1] - context]
            if context
            else x
        )
        return w * edge_aware_potts(logits, image)
