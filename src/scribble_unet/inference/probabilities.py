"""Logits -> probabilities -> mask, in one place (prediction, export, validation and tests use it).

For one class (K = 1) the network has one logit and the probability is its sigmoid; for K > 1 it has
K + 1 logits (background first) and the probabilities are their softmax. The mask is 0 for
background and ``k`` for class ``k``: for K = 1 where ``p >= 0.5``, for K > 1 the most probable of
background and the K classes.
"""

from __future__ import annotations

import numpy as np
import torch


def logits_to_probabilities(logits: torch.Tensor, background: bool = False) -> torch.Tensor:
    """``(N, C_out, ...)`` logits to ``(N, K, ...)`` object-class probabilities.

    With ``background=True`` and K > 1 the background probability stays first: ``(N, K + 1, ...)``.
    """
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    prob = torch.softmax(logits, dim=1)
    return prob if background else prob[:, 1:]


def probabilities_to_mask(prob: np.ndarray, background: bool = False) -> np.ndarray:
    """``(K, ...)`` object-class probabilities to a mask: 0 background, k for class k.

    With ``background=True`` and more than one channel, ``prob`` holds the background probability
    first (``(K + 1, ...)``, as from ``logits_to_probabilities(..., background=True)``); otherwise
    background is ``1 - sum`` of the classes.
    """
    if prob.shape[0] == 1:
        return (prob[0] >= 0.5).astype(np.uint8)
    if background:
        k = prob.shape[0] - 1
        full = prob
    else:
        k = prob.shape[0]
        full = with_background(prob)
    dtype = np.uint8 if k < 255 else np.uint16
    return np.argmax(full, axis=0).astype(dtype)


def with_background(prob: np.ndarray) -> np.ndarray:
    """``(K, ...)`` object-class probabilities to ``(K + 1, ...)``, the background (``1 - sum``) first."""
    return np.concatenate([1.0 - prob.sum(axis=0, keepdims=True), prob], axis=0)
