"""Fill the model's pixel forest (:mod:`scribble_unet.model.forest`) from the strokes.

The features of a stroke pixel are computed exactly as prediction computes them: from a window of the
working-resolution image around it, extended by reflection beyond the image's borders and normalised
with the model's normalisation. The forest depends on the image and the strokes only, so the trainer
refills it only when the strokes change.

The forest the model keeps learns from every stroke, held-out ones included: with a few strokes each
one counts, and the forest is cheap to refit. Validation stays honest with a forest refitted from the
training strokes alone (:meth:`ForestRows.held_out_view`): neither the network nor that forest has seen
the held-out strokes, so they cannot inflate the figure.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(P, F)`` features, ``(P,)`` label values and ``(P,)`` held-out flags of stroke pixels, training
    and held-out (at most ``max_per_value`` of each value, a random subset)."""
    pos_parts, val_parts, held_parts = [], [], []
    for value in sorted(set(split.train) | set(split.val)):
        train = np.asarray(split.train.get(value, np.zeros(0, np.int64)), np.int64)
        held = np.asarray(split.val.get(value, np.zeros(0, np.int64)), np.int64)
        flat = np.concatenate([train, held])
        is_held = np.r_[np.zeros(len(train), bool), np.ones(len(held), bool)]
        if len(flat) == 0:
            continue
        if len(flat) > max_per_value:
            pick = np.sort(rng.choice(len(flat), max_per_value, replace=False))
            flat, is_held = flat[pick], is_held[pick]
        pos_parts.append(flat)
        val_parts.append(np.full(len(flat), value, np.int64))
        held_parts.append(is_held)
    n_feat = forest_mod.n_features(image.n_channels)
    if not pos_parts:
        return np.zeros((0, n_feat), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
    pos, values, held_out = np.concatenate(pos_parts), np.concatenate(val_parts), np.concatenate(held_parts)
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
    return feats, values, held_out


@dataclass
class ForestRows:
    """The stroke pixels' features, from which the kept forest and the validation forest are filled."""

    features: np.ndarray
    values: np.ndarray
    held_out: np.ndarray
    seed: int
    _held_out_state: tuple[Any, ...] | None = field(default=None, repr=False)

    @classmethod
    def gather(cls, image: ImageSource, split: StrokeSplit, normalization: Normalization, seed: int) -> ForestRows:
        feats, values, held = stroke_features(image, split, normalization, np.random.default_rng(seed))
        return cls(feats, values, held, seed)

    def fill_forest(self, forest: PixelForest, training_only: bool = False) -> int:
        """Store the rows (all, or the training strokes' only) in ``forest``; returns the rows kept (0 when
        fewer than two label values are painted: the forest is then emptied and adds nothing)."""
        keep = ~self.held_out if training_only else np.ones(len(self.values), bool)
        feats, values = self.features[keep], self.values[keep]
        if len(np.unique(values)) < 2:
            feats, values = feats[:0], values[:0]
        return forest.set_rows(feats, values, np.random.default_rng(self.seed))

    @contextmanager
    def held_out_view(self, forest: PixelForest) -> Iterator[None]:
        """Within the block, ``forest`` has learnt from the training strokes only (for validation)."""
        if not self.held_out.any():
            yield
            return
        saved = forest.snapshot()
        try:
            if self._held_out_state is None:  # fitted once per set of strokes, then reused
                self.fill_forest(forest, training_only=True)
                forest.classifier()
                self._held_out_state = forest.snapshot()
            else:
                forest.restore(self._held_out_state)
            yield
        finally:
            forest.restore(saved)


def fit_forest(forest: PixelForest, image: ImageSource, split: StrokeSplit, normalization: Normalization,
               seed: int) -> ForestRows:
    """Fill ``forest`` from every stroke of ``split``; returns the rows (for :meth:`ForestRows.held_out_view`)."""
    rows = ForestRows.gather(image, split, normalization, seed)
    if rows.fill_forest(forest):
        forest.classifier()  # fitted here, on the training thread: every model built from these rows reuses it
    return rows
