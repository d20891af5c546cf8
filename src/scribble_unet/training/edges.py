"""Mask borders that follow image edges: a contrast-sensitive Potts (CRF) loss on every pixel of a tile.

Strokes lie inside objects and in open background; the band between them is never painted, so the
cross-entropy on strokes says nothing about where a mask should end, and masks come out with a ring of
background around each object (or, where background strokes touch the objects, too thin). Regularised
losses for weakly supervised segmentation (Tang et al., "On regularized losses for weakly-supervised CNN
segmentation", ECCV 2018) add, on all pixels, the relaxed Potts energy of a dense CRF

    sum over pixel pairs (i, j):  k_ij * (1 - sum_c p_i^c p_j^c)

with a bilateral kernel ``k_ij = exp(-|x_i - x_j|^2 / (2 sigma_xy^2)) * exp(-beta |I_i - I_j|^2)``, large
between nearby pixels of similar intensity. A ring of dark background pixels called "object" disagrees
with all the dark background pixels around it and pays for each of them; a border on the object's edge
separates pixels of different intensity and pays almost nothing. The kernel is wide (:data:`SIGMA_XY`),
so a border several pixels off the edge is pulled onto it, not only one already next to it.

Cost: the energy is estimated on :data:`SAMPLES` random pixels per tile (all their pairs), an unbiased
estimate of the tile's mean pair energy; training runs at about 0.73x the steps/s without it
(``benchmarks/edge_cost.py``, one thread, default model). ``beta`` is GrabCut's contrast
(Rother et al. 2004), ``1 / (2 <|I_i - I_j|^2>)`` over the 4-neighbour pairs of each tile, on the image
smoothed by :data:`SMOOTH_SIGMA` px so that pixel noise (training tiles carry added noise) does not make
flat regions look like edges. The loss only shapes training: prediction is the plain network, so tiled
prediction stays exact.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..inference.probabilities import logits_to_probabilities
from ..model.filters import gaussian_kernels

SIGMA_XY = 15.0
"""Width (px, at the working resolution) of the spatial Gaussian of the kernel."""
SAMPLES = 384
"""Random pixels per tile whose pairs estimate the energy."""
SMOOTH_SIGMA = 1.0
"""Gaussian smoothing (px) of the image before intensity differences are taken."""
RAMP = 200
"""Steps over which the term's weight rises linearly from 0 to its full value."""


def smooth(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)``, mirror-padded, radius ``ceil(2.5 sigma)``."""
    if sigma <= 0:
        return image
    r = max(1, math.ceil(2.5 * sigma))
    g = gaussian_kernels(sigma, r)[0].to(dtype=image.dtype, device=image.device)
    c = image.shape[1]
    x = F.pad(image, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def contrast_beta(image: torch.Tensor) -> torch.Tensor:
    """GrabCut's ``beta`` per tile ``(B,)``: one over twice the mean squared 4-neighbour difference."""
    dh = ((image[..., :, 1:] - image[..., :, :-1]) ** 2).sum(1).mean(dim=(-2, -1))
    dv = ((image[..., 1:, :] - image[..., :-1, :]) ** 2).sum(1).mean(dim=(-2, -1))
    return 1.0 / (2.0 * (0.5 * (dh + dv)).clamp(min=1e-8))


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` probabilities of every class; one logit (sigmoid) gives background and object."""
    p = logits_to_probabilities(logits, background=True)
    return torch.cat([1 - p, p], dim=1) if logits.shape[1] == 1 else p


def bilateral_potts(
    logits: torch.Tensor,
    image: torch.Tensor,
    samples: int = SAMPLES,
    sigma_xy: float = SIGMA_XY,
    smoothing: float = SMOOTH_SIGMA,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Relaxed Potts energy of a batch under the bilateral kernel, from random pixel pairs of each tile.

    Parameters
    ----------
    logits
        ``(B, K, H, W)`` network outputs (one channel: sigmoid; more: softmax).
    image
        ``(B, C, H, W)`` normalised image under the same pixels (no gradient flows into it).
    samples
        Pixels drawn per tile (without replacement); with ``samples >= H * W`` every pair is used and
        the result is exact.
    sigma_xy, smoothing
        Spatial kernel width and the image smoothing, in pixels.
    generator
        Random source of the pixel draws.

    Returns
    -------
    torch.Tensor
        Scalar: ``sum k_ij d_ij / sum s_ij`` over the drawn pairs ``i != j`` with ``d`` the
        disagreement and ``s`` the spatial part of ``k``: the share of nearby, similar pixel pairs that
        the prediction puts in different classes.
    """
    if logits.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and image {tuple(image.shape)} differ in size"
        )
    p = class_probabilities(logits)
    img = smooth(image.detach(), smoothing)
    beta = contrast_beta(img)
    b, k, h, w = p.shape
    m = min(int(samples), h * w)
    idx = torch.stack(
        [
            torch.randperm(
                h * w, generator=generator, device=generator.device if generator else p.device
            )[:m]
            for _ in range(b)
        ]
    ).to(p.device)  # (B, M)
    yy, xx = (idx // w).to(p.dtype), (idx % w).to(p.dtype)
    d2 = (yy[:, :, None] - yy[:, None, :]) ** 2 + (xx[:, :, None] - xx[:, None, :]) ** 2
    off_diagonal = 1.0 - torch.eye(m, dtype=p.dtype, device=p.device)
    spatial = torch.exp(-d2 / (2 * sigma_xy * sigma_xy)) * off_diagonal
    f = img.flatten(2).gather(2, idx[:, None, :].expand(-1, img.shape[1], -1))  # (B, C, M)
    contrast = torch.exp(-beta[:, None, None] * ((f[:, :, :, None] - f[:, :, None, :]) ** 2).sum(1))
    q = p.flatten(2).gather(2, idx[:, None, :].expand(-1, k, -1))  # (B, K, M)
    disagree = 1.0 - torch.einsum("bkm,bkn->bmn", q, q)
    return (spatial * contrast * disagree).sum() / spatial.sum().clamp(min=1e-8)


class EdgeTerm:
    """The edge term of the training loss: weight, ramp over :data:`RAMP` steps, its own random draws."""

    def __init__(self, weight: float, seed: int = 0) -> None:
        self.weight = float(weight)
        self.generator = torch.Generator().manual_seed(int(seed))

    def weight_at(self, step: int) -> float:
        """Weight of the term at training step ``step``."""
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
        return w * bilateral_potts(logits, image, generator=self.generator)
