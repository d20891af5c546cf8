"""Small, exact inference helpers used by validation, tests and the quality benchmark.

Whole-image and large-image prediction belong to :mod:`scribble_unet.inference.predict`; this module only runs
the network on one window with the halo that makes the result equal to a whole-image pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..classes import scribble_values
from ..inference.probabilities import logits_to_probabilities, probabilities_to_mask
from ..inference.tiling import read_reflected
from ..model.normalize import Normalization
from ..model.unet import UNet


def probabilities_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid of the single logit (K = 1) or softmax over channels, background first (K > 1)."""
    return logits_to_probabilities(logits, background=True)


def values_from_probabilities(probs: np.ndarray) -> np.ndarray:
    """Scribble-style values of a ``(C, H, W)`` probability map: 1 background, ``k + 1`` class ``k``."""
    return scribble_values(probabilities_to_mask(probs, background=True))


@torch.no_grad()
def predict_window(
    model: UNet,
    image: Any,
    normalization: Normalization,
    y0: int,
    y1: int,
    x0: int,
    x1: int,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Class probabilities ``(C, y1 - y0, x1 - x0)`` of an image window, with the network in eval mode.

    ``y0`` and ``x0`` should be multiples of ``2**depth`` for the result to equal the whole-image pass
    bit for bit; the window is read with the network's halo (mirror reflection beyond the borders) and
    padded to the pooling grid. The caller's train/eval mode is restored afterwards, and BatchNorm's
    running statistics are not touched (eval mode does not update them).
    """
    cfg = model.config
    halo, a = cfg.halo, cfg.align
    h = -(-(y1 - y0) // a) * a
    w = -(-(x1 - x0) // a) * a
    window = read_reflected(image.read, tuple(image.shape_yx), y0 - halo, y0 + h + halo, x0 - halo, x0 + w + halo)
    x = torch.from_numpy(normalization.apply(window, nan_policy="zero"))[None].to(device)
    was_training = model.training
    model.eval()
    try:
        probs = probabilities_from_logits(model(x))[0]
    finally:
        model.train(was_training)
    out = probs[:, halo : halo + (y1 - y0), halo : halo + (x1 - x0)]
    return out.float().cpu().numpy()


def predict_image(
    model: UNet, image: Any, normalization: Normalization, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Probabilities ``(C, Y, X)`` of a whole (small) full-resolution image in one pass.

    A model with a working-resolution ``scale`` above 1 runs on the binned image
    (:class:`~scribble_unet.image.binned.BinnedSource`) and its probabilities are upsampled
    (:func:`~scribble_unet.inference.resample.upsample`): the reference that tiled prediction equals.
    """
    from ..image import open_image
    from ..image.binned import BinnedSource
    from ..inference.resample import upsample

    src = open_image(image)
    f = model.config.scale
    work = src if f == 1 else BinnedSource(src, f)
    hl, wl = work.shape_yx
    low = predict_window(model, work, normalization, 0, hl, 0, wl, device)
    if f == 1:
        return low
    hh, ww = src.shape_yx
    return upsample(low, f, (0, 0), (hl, wl), (0, hh, 0, ww))
