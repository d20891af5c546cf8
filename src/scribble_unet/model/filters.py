"""A fixed multi-scale filter bank in front of the U-Net (no learned weights).

A random forest on hand-made filters (ilastik's pixel classifier) learns a lot from a few strokes because
its inputs already describe each pixel at several scales: smoothed intensity, edges, blobs and ridges. A
U-Net has to learn such filters from the strokes first. :class:`FilterBank` gives them to it: for every
input channel and every scale ``sigma`` it computes, with Gaussian-derivative kernels,

* the Gaussian-smoothed image,
* the gradient magnitude ``sigma |grad G|`` (edges),
* the Laplacian ``sigma^2 (Ixx + Iyy)`` (blobs),
* the two eigenvalues of the Hessian ``sigma^2 H`` (ridges and valleys: membranes, boundaries),

and passes them beside the image itself to the first convolution. Derivatives are scale-normalised
(``sigma^order``) so that responses at different scales have comparable magnitudes.

The bank is a fixed convolution with a finite reach (``ceil(TRUNCATE x max sigma)`` pixels each side), so the
network stays translation-equivariant and exact tiling stays exact: the halo grows by that reach
(:func:`scribble_unet.model.unet.receptive_field`). The kernels are derived from ``SIGMAS`` and are not
stored in checkpoints.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

SIGMAS: tuple[float, ...] = (0.7, 1.6, 3.5, 5.0)
"""Scales (px at the working resolution) of the filters; ilastik's default set without its extremes."""
TRUNCATE = 3.0
"""Kernels are cut at this many standard deviations."""
FEATURES_PER_SCALE = 5
"""Smoothed image, gradient magnitude, Laplacian, two Hessian eigenvalues."""


def reach(sigmas: tuple[float, ...] | None = None) -> int:
    """Pixels each side that the filter bank reads beyond an output pixel."""
    return max(math.ceil(TRUNCATE * s) for s in (sigmas or SIGMAS))


def out_channels(in_channels: int, sigmas: tuple[float, ...] | None = None) -> int:
    """Channels the bank hands to the network: each input channel and its filters."""
    return in_channels * (1 + FEATURES_PER_SCALE * len(sigmas or SIGMAS))


def gaussian_kernels(sigma: float, radius: int) -> torch.Tensor:
    """``(3, 2 radius + 1)`` float64: the Gaussian and its first and second derivatives, scale-normalised.

    Sampled and truncated kernels are corrected so that they are exact on low-order polynomials: the
    Gaussian sums to 1; the first derivative gives ``sigma x slope`` on a ramp; the second derivative
    gives 0 on a constant and ``sigma^2 x curvature`` on a parabola.
    """
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    g1 = -x * g
    g1 = g1 * (-sigma / (x * g1).sum())  # convolution of slope x t gives -slope x sum(x k) = slope x sigma
    base = (x**2 / sigma**4 - 1 / sigma**2) * g
    # k = a base + b g with sum(k) = 0 and sum(k x^2 / 2) = sigma^2
    m = torch.tensor([[base.sum(), g.sum()], [(base * x**2 / 2).sum(), (g * x**2 / 2).sum()]])
    a, b = torch.linalg.solve(m, torch.tensor([0.0, sigma**2], dtype=torch.float64))
    g2 = a * base + b * g
    return torch.stack([g, g1, g2])


class FilterBank(nn.Module):
    """``(N, C, H, W)`` -> ``(N, C (1 + 5 S), H, W)``: the input and its filters at ``S`` scales.

    Zero padding at the window's border: pixels within :func:`reach` of it differ from a larger window's,
    which is why the halo includes the reach. The output does not require gradients (nothing to learn).
    """

    def __init__(self, in_channels: int, sigmas: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.sigmas = tuple(float(s) for s in (sigmas or SIGMAS))
        self.radius = reach(self.sigmas)
        r = self.radius
        kernels = torch.zeros(len(self.sigmas), 3, 2 * r + 1, dtype=torch.float64)
        for i, s in enumerate(self.sigmas):
            k = gaussian_kernels(s, math.ceil(TRUNCATE * s))
            pad = r - (k.shape[1] // 2)
            kernels[i, :, pad : pad + k.shape[1]] = k
        # one grouped convolution per axis: along y every channel gives (G, G', G'') per scale,
        # along x every one of those gives (G, G', G'') again; 9 separable products per scale and channel
        ky = kernels.reshape(-1, 2 * r + 1)  # (S*3, k)
        self.register_buffer("ky", ky.float()[:, None, :, None].repeat(in_channels, 1, 1, 1), persistent=False)
        kx = kernels[:, None].repeat(1, 3, 1, 1).reshape(-1, 2 * r + 1)  # (S*3*3, k)
        self.register_buffer("kx", kx.float()[:, None, None, :].repeat(in_channels, 1, 1, 1), persistent=False)

    @property
    def out_channels(self) -> int:
        return out_channels(self.in_channels, self.sigmas)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s, r = len(self.sigmas), self.radius
        with torch.no_grad():
            ky: torch.Tensor = self.ky  # type: ignore[assignment]
            kx: torch.Tensor = self.kx  # type: ignore[assignment]
            # (N, C*S*3, H, W): per channel, per scale, smoothing/derivative along y
            y = F.conv2d(x, ky.to(x.dtype), padding=(r, 0), groups=c)
            # (N, C*S*9, H, W): then along x; order (channel, scale, y-order, x-order)
            d = F.conv2d(y, kx.to(x.dtype), padding=(0, r), groups=c * s * 3)
            d = d.view(n, c, s, 3, 3, h, w)
            g = d[:, :, :, 0, 0]
            ix, iy = d[:, :, :, 0, 1], d[:, :, :, 1, 0]
            ixx, iyy, ixy = d[:, :, :, 0, 2], d[:, :, :, 2, 0], d[:, :, :, 1, 1]
            grad = torch.sqrt(ix * ix + iy * iy)
            lap = ixx + iyy
            half = torch.sqrt(0.25 * (ixx - iyy) ** 2 + ixy * ixy)
            feats = torch.stack([g, grad, lap, 0.5 * lap + half, 0.5 * lap - half], dim=3)  # (N, C, S, 5, H, W)
            feats = feats.reshape(n, c, s * FEATURES_PER_SCALE, h, w)
            out = torch.cat([x[:, :, None], feats], dim=2)
        return out.reshape(n, c * (1 + s * FEATURES_PER_SCALE), h, w)
