"""Scoring on held-out strokes: the network's values at the held-out pixels, IoU and Dice per class."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..model.normalize import Normalization
from ..model.unet import UNet
from .infer import predict_window, values_from_probabilities


def predict_held_out(model: UNet, image: Any, normalization: Normalization, ys: np.ndarray, xs: np.ndarray,
                     cell: int, shape: tuple[int, int], device: torch.device | str) -> np.ndarray:
    """Predicted label values at pixels ``(ys, xs)`` of an image of ``shape``.

    The network runs once per ``cell``-square window that holds any of the pixels (exact tiling:
    a window's values equal the whole-image pass).
    """
    h, w = shape
    pred = np.zeros(len(ys), np.int64)
    cells = (ys // cell) * (w // cell + 1) + xs // cell
    for c in np.unique(cells):
        sel = np.flatnonzero(cells == c)
        cy, cx = divmod(int(c), w // cell + 1)
        y0, x0 = cy * cell, cx * cell
        y1, x1 = min(y0 + cell, h), min(x0 + cell, w)
        probs = predict_window(model, image, normalization, y0, y1, x0, x1, device)
        pred[sel] = values_from_probabilities(probs)[ys[sel] - y0, xs[sel] - x0]
    return pred


def scores_per_class(pred: np.ndarray, truth: np.ndarray,
                     names: dict[int, str]) -> tuple[dict[str, float], dict[str, float]]:
    """IoU and Dice per class name of label values ``pred`` against ``truth``.

    A class absent from both has no entry.
    """
    iou: dict[str, float] = {}
    dice: dict[str, float] = {}
    for v, name in names.items():
        tp = int(np.sum((pred == v) & (truth == v)))
        fp = int(np.sum((pred == v) & (truth != v)))
        fn = int(np.sum((pred != v) & (truth == v)))
        if tp + fp + fn == 0:
            continue
        iou[name] = tp / (tp + fp + fn)
        dice[name] = 2 * tp / (2 * tp + fp + fn)
    return iou, dice
