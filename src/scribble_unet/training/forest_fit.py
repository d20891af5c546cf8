"""Fill the model's pixel forest (:mod:`scribble_unet.model.forest`) from the training strokes.

The features of a stroke pixel are computed exactly as prediction computes them: from a window of the
working-resolution image around it, extended by reflection beyond the image's borders and normalised
with the model's normalisation. Held-out strokes are left out, so validation stays honest. The forest
depends on the image and the strokes only, so the trainer refills it only when the strokes change.
"""

from __future__ import annotations

import numpy as np
import torch

from ..image import ImageSource
from ..inference.tiling import read_reflected
from ..model import forest as forest_mod
from ..model.forest import PixelForest
from ..model.normalize import Normalization
from .labels import StrokeSplit

BLOCK = 256
"""Stroke pixels are gathered in blocks of this side; each block's features come from one window."""


def stroke_features(
    image: ImageSource, split: StrokeSplit, normalization: Normalization, rng: np.random.Generator,
    max_per_value: int = forest_mod.MAX_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """``(P, F)`` features and ``(P,)`` label values of the training pixels (at most ``max_per_value``
    of each value, a random subset)."""
    pos_parts, val_parts = [], []
    for value, flat in sorted(split.train.items()):
        if len(flat) == 0:
            continue
        if len(flat) > max_per_value:
            flat = np.sort(rng.choice(flat, max_per_value, replace=False))
        pos_parts.append(np.asarray(flat, np.int64))
        val_parts.append(np.full(len(flat), value, np.int64))
    n_feat = forest_mod.n_features(image.n_channels)
    if not pos_parts:
        return np.zeros((0, n_feat), np.float32), np.zeros(0, np.int64)
    pos, values = np.concatenate(pos_parts), np.concatenate(val_parts)
    ys, xs = pos // split.width, pos % split.width
    r = forest_mod.reach()
    feats = np.empty((len(pos), n_feat), np.float32)
    block_id = (ys // BLOCK) * (split.width // BLOCK + 1) + xs // BLOCK
    order = np.argsort(block_id, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(block_id[order]) != 0])
    ends = np.r_[starts[1:], len(order)]
    h, w = image.shape_yx
    for a, b in zip(starts, ends, strict=True):
        idx = order[a:b]
        y0, x0 = int(ys[idx[0]]) // BLOCK * BLOCK, int(xs[idx[0]]) // BLOCK * BLOCK
        y1, x1 = min(h, y0 + BLOCK), min(w, x0 + BLOCK)
        raw = read_reflected(image.read, image.shape_yx, y0 - r, y1 + r, x0 - r, x1 + r)
        x = torch.from_numpy(np.ascontiguousarray(normalization.apply(raw, "zero"), np.float32))[None]
        f = forest_mod.pixel_features(x)[0]  # (F, h + 2r, w + 2r)
        feats[idx] = f[:, r + ys[idx] - y0, r + xs[idx] - x0].t().numpy()
    return feats, values


def fit_forest(forest: PixelForest, image: ImageSource, split: StrokeSplit, normalization: Normalization,
               seed: int) -> int:
    """Store the training strokes' features in ``forest``; returns the rows kept (0 when fewer than two
    label values are painted: the forest is then emptied and adds nothing)."""
    rng = np.random.default_rng(seed)
    feats, values = stroke_features(image, split, normalization, rng)
    if len(np.unique(values)) < 2:
        feats, values = feats[:0], values[:0]
    return forest.set_rows(feats, values, rng)
