"""The image's class shares, estimated from the model's own prediction, as a shift of its logits.

The network and the pixel forest both learn from class-balanced strokes (pos_weight / class weights, a
balanced forest training set), so each answers as if every class covered the same share of the image.
Where objects cover a tenth of it, that prior pushes the unsure pixels around objects into the objects
(fat masks); where they cover three quarters (EM membranes-and-cells), the other way. Saerens, Latinne
and Decaestecker (Neural Computation 14, 2002, "Adjusting the outputs of a classifier to new a priori
probabilities") estimate the true shares by EM from the classifier's outputs on unlabelled data:
reweight each pixel's class probabilities by ``share / training share``, renormalise, take the mean as
the new shares, repeat. The logits are then shifted by ``log(share / training share)``.

Here the pixels are a fixed random sample of windows of the image (the same windows for the whole
run, so the forest's part of them is computed once), the training shares are uniform, and the shift
applied is ``ModelConfig.prior_shift`` times the full one (default 0.5: 1 was better on average but
made two development images worse by more than 0.02; docs/quality.md, ninth session), clipped to
:data:`MAX_SHIFT`. It is stored in the model (``forest.prior``), so tiled,
whole-image, live and exported predictions all apply the same shift and stay exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .infer import predict_window

WINDOWS = 8
"""Windows sampled per image (fewer when the image is small)."""
SIDE = 256
"""Side of a sampled window (px at the working resolution)."""
MAX_SHIFT = 1.5
"""Largest shift of a logit (a log odds ratio; 0.5 times the full shift reaches it at a share of 5 %,
the sparsest development image): a sample of windows that misses rare objects cannot wipe them out."""
EVERY_S = 30.0
"""While training, the estimate is renewed at most this often, and at the end of the run: one estimate
takes about 1 s on one thread (8 windows of 256 px through the network; the forest's part is kept while
the strokes do not change), 4 s when the forest is new. New strokes wait for the next renewal."""


def em_class_shares(probs: np.ndarray, iterations: int = 200, tol: float = 1e-6) -> np.ndarray:
    """Class shares ``(C,)`` that make ``probs`` ``(C, N)`` (from a classifier trained with equal shares)
    consistent with themselves: the EM of Saerens et al. (2002)."""
    p = np.clip(np.asarray(probs, np.float64), 1e-6, 1.0)
    c = p.shape[0]
    shares = np.full(c, 1.0 / c)
    for _ in range(iterations):
        q = p * (shares * c)[:, None]
        q /= q.sum(axis=0, keepdims=True)
        new = q.mean(axis=1)
        if np.abs(new - shares).max() < tol:
            return new
        shares = new
    return shares


def shift_of(shares: np.ndarray, damping: float, out_channels: int) -> np.ndarray:
    """The logit shift ``(out_channels,)``: ``damping * log(share * C)`` per class, or for one object
    class (a single logit) ``damping * logit(share of the object)``; clipped to :data:`MAX_SHIFT`."""
    shares = np.clip(np.asarray(shares, np.float64), 1e-6, 1.0)
    log_ratio = np.log(shares * len(shares))
    shift = log_ratio[1:2] - log_ratio[0:1] if out_channels == 1 else log_ratio - log_ratio.mean()
    return np.clip(damping * shift, -MAX_SHIFT, MAX_SHIFT).astype(np.float32)


def sample_windows(shape_yx: tuple[int, int], align: int, seed: int, n: int = WINDOWS,
                   side: int = SIDE) -> list[tuple[int, int, int, int]]:
    """``n`` windows ``(y0, y1, x0, x1)`` of side ``side`` at random places on the pooling grid, or the
    whole image when it is no larger than they are together."""
    h, w = shape_yx
    if h * w <= n * side * side or h < side or w < side:
        return [(0, h, 0, w)]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y0 = int(rng.integers(0, h - side + 1)) // align * align
        x0 = int(rng.integers(0, w - side + 1)) // align * align
        out.append((y0, y0 + side, x0, x0 + side))
    return out


class PriorEstimator:
    """Keeps a model's ``forest.prior`` up to date with the image's class shares during a run."""

    def __init__(self, image: Any, align: int, damping: float, seed: int) -> None:
        self.image, self.damping = image, float(damping)
        self.windows = sample_windows(tuple(image.shape_yx), align, seed)
        self._last: float | None = None  # training seconds at the last estimate
        self.shares: np.ndarray | None = None

    def update(self, model: Any, normalization: Any, device: Any, elapsed: float, force: bool = False) -> bool:
        """Estimate again if there is none yet, :data:`EVERY_S` passed or ``force``; True if it did."""
        forest = model.forest
        if forest is None or not forest.is_fitted or not hasattr(forest, "prior"):
            return False
        if not force and self._last is not None and elapsed - self._last < EVERY_S:
            return False
        with torch.no_grad():
            forest.prior.zero_()  # the model's own shares, not those of the previous shift
            parts = [predict_window(model, self.image, normalization, *box, device=device) for box in self.windows]
            probs = np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)
            if probs.shape[0] == 1:  # one object class: its probability; the background's is the rest
                probs = np.concatenate([1.0 - probs, probs])
            self.shares = em_class_shares(probs)
            forest.prior.copy_(torch.from_numpy(shift_of(self.shares, self.damping, model.config.out_channels)))
        self._last = elapsed
        return True
