"""Losses on sparse scribbles: only labelled pixels count, and rare classes are weighted up.

Label values in the target tensors are the scribble values: 0 unlabelled (ignored everywhere),
1 background, ``k + 1`` object class ``k``. The network's outputs follow
:class:`~scribble_unet.model.unet.ModelConfig`: one logit for K = 1 (sigmoid), K + 1 logits for K > 1
(softmax, channel 0 = background).

Class weights are counted over the whole label set (:attr:`LabelIndex.counts
<scribble_unet.training.labels.LabelIndex.counts>`), never per batch: the sampler draws as many
object-centred tiles as background ones, so per-batch counts would say the classes are balanced when
the user's strokes are not, and would make the weights jump from one batch to the next.

Weights are clipped to ``[WEIGHT_MIN, WEIGHT_MAX]`` = ``[0.1, 10]`` by default (``clip``): a class
painted with a handful of pixels would otherwise get a weight in the hundreds and the loss would be
driven by those few pixels (and by their noise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import WEIGHT_MAX, WEIGHT_MIN, ClassWeighting, LossKind

POS_WEIGHT_MIN = 0.01
POS_WEIGHT_MAX = 100.0



# ---------------------------------------------------------------------- weights from counts
def pos_weight_from_counts(
    counts: Mapping[int, int], clip: tuple[float, float] = (POS_WEIGHT_MIN, POS_WEIGHT_MAX)
) -> float:
    """``pos_weight`` of the binary loss: labelled background pixels / labelled foreground pixels.

    ``counts`` maps label values to pixel counts over all scribbles; every value >= 2 is foreground.
    The ratio is clipped to ``clip`` (default ``[0.01, 100]``) so that a single foreground pixel among
    a million background ones cannot blow the loss up; 1.0 when one side is missing.
    """
    bg = counts.get(1, 0)
    fg = sum(n for v, n in counts.items() if v >= 2)
    if bg == 0 or fg == 0:
        return 1.0
    return float(np.clip(bg / fg, *clip))


def class_weights_from_counts(
    counts: Mapping[int, int],
    n_classes: int,
    mode: ClassWeighting = "inverse",
    clip: tuple[float, float] = (WEIGHT_MIN, WEIGHT_MAX),
) -> np.ndarray:
    """Per-channel weights ``(K + 1,)`` for the multi-class loss (channel 0 = background).

    ``mode``:

    * ``"inverse"``: ``w_c = N / (M * n_c)`` with ``N`` the labelled pixels of the ``M`` classes
      present; equal counts give weight 1 for every class.
    * ``"median"``: median frequency balancing (Eigen & Fergus, 2015), ``w_c = median_f / f_c``.
    * ``"none"``: all ones.

    Classes with no labelled pixel get weight 1 (they appear in no target, so it does not matter until
    they are painted, when the weights are recounted). Weights are clipped to ``clip``.
    """
    n_out = n_classes + 1
    w = np.ones(n_out, np.float64)
    if mode == "none":
        return w.astype(np.float32)
    n = np.array([counts.get(c + 1, 0) for c in range(n_out)], np.float64)
    present = n > 0
    if present.sum() == 0:
        return w.astype(np.float32)
    if mode == "inverse":
        w[present] = n[present].sum() / (present.sum() * n[present])
    elif mode == "median":
        f = n[present] / n[present].sum()
        w[present] = np.median(f) / f
    else:
        raise ValueError(f"unknown class weighting {mode!r}")
    return np.clip(w, *clip).astype(np.float32)


# ---------------------------------------------------------------------- masked losses
def _weighted_mean(per_pixel: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # With no labelled pixel (strokes erased since the index was built) the numerator is 0 and the
    # clamp turns 0/0 into a zero loss with zero gradient, without a host sync to test for it.
    return (per_pixel * weight).sum() / weight.sum().clamp(min=1e-12)


def masked_bce_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    pos_weight: float,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy with logits over labelled pixels.

    ``loss_i = -(p * y_i * log s(x_i) + (1 - y_i) * log(1 - s(x_i)))`` with ``y_i = 1`` for labels >= 2
    and ``0`` for label 1, averaged over pixels with label > 0 (weighted by ``pixel_weight`` if given),
    exactly ``torch.nn.BCEWithLogitsLoss(pos_weight=p)`` restricted to labelled pixels.

    Parameters
    ----------
    logits
        ``(B, 1, H, W)`` or ``(B, H, W)``.
    labels
        ``(B, H, W)`` integer scribble values.
    pos_weight
        Weight of the foreground term, see :func:`pos_weight_from_counts`.
    pixel_weight
        Optional ``(B, H, W)`` per-pixel weights (e.g. :func:`unet_weight_map`).
    """
    x = logits[:, 0] if logits.dim() == 4 else logits
    mask = labels > 0
    target = (labels >= 2).to(x.dtype)
    pw = torch.as_tensor(pos_weight, dtype=x.dtype, device=x.device)
    per = F.binary_cross_entropy_with_logits(x, target, pos_weight=pw, reduction="none")
    weight = mask.to(x.dtype) if pixel_weight is None else mask.to(x.dtype) * pixel_weight
    return _weighted_mean(per, weight)


def masked_ce_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class-weighted cross-entropy over labelled pixels (K > 1).

    Label ``v > 0`` is channel ``v - 1``; label 0 is ``ignore_index``. As in
    ``torch.nn.CrossEntropyLoss(weight=w, ignore_index=-1)`` the result is
    ``sum_i w_{c_i} l_i / sum_i w_{c_i}`` over labelled pixels (times ``pixel_weight`` if given).
    """
    target = labels.long() - 1  # 0 (unlabelled) -> -1 = ignore_index
    n_out = logits.shape[1]
    w = (
        torch.ones(n_out, dtype=logits.dtype, device=logits.device)
        if class_weights is None
        else torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
    )
    mask = target >= 0
    safe = target.clamp(min=0)
    per = F.cross_entropy(logits, safe, reduction="none")
    weight = w[safe] * mask.to(logits.dtype)
    if pixel_weight is not None:
        weight = weight * pixel_weight
    return _weighted_mean(per, weight)


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` class probabilities, the binary case spelled out as [background, object]."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss on labelled pixels, averaged over classes (background included).

    For each class ``c`` (channel 0 = background; the binary case counts as two classes), over the
    labelled pixels of the batch: ``D_c = (2 sum p_c g_c + s) / (sum p_c + sum g_c + s)``; the loss is
    ``1 - mean_c D_c``. Unlabelled pixels take part in neither sum.
    """
    probs = _probabilities(logits)
    n_out = probs.shape[1]
    mask = (labels > 0).unsqueeze(1).to(probs.dtype)
    target = (labels.long() - 1).clamp(min=0)
    if logits.shape[1] == 1:
        target = (labels >= 2).long()
    onehot = F.one_hot(target, n_out).permute(0, 3, 1, 2).to(probs.dtype) * mask
    p = probs * mask
    dims = (0, 2, 3)
    inter = (p * onehot).sum(dims)
    denom = p.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    return 1 - dice.mean()


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 2.0,
    pos_weight: float = 1.0,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss (Lin et al., 2017) on labelled pixels: ``-a_i (1 - p_i)^gamma log p_i``.

    ``p_i`` is the probability of pixel i's true class. The weighting matches the cross-entropy
    losses, so ``gamma = 0`` gives exactly :func:`masked_bce_loss` (binary, ``a_i = pos_weight`` for
    object pixels, 1 for background, plain mean) or :func:`masked_ce_loss` (K > 1, ``a_i`` the class
    weight, weighted mean).
    """
    if logits.shape[1] == 1:
        x = logits[:, 0]
        y = (labels >= 2).to(x.dtype)
        log_p = -F.binary_cross_entropy_with_logits(x, y, reduction="none")  # log p_true
        per = -((1 - log_p.exp()) ** gamma) * log_p
        per = per * (1 + (pos_weight - 1) * y)
        weight = (labels > 0).to(x.dtype)
        if pixel_weight is not None:
            weight = weight * pixel_weight
        return _weighted_mean(per, weight)
    target = labels.long() - 1
    mask = target >= 0
    safe = target.clamp(min=0)
    log_p = torch.log_softmax(logits, dim=1).gather(1, safe.unsqueeze(1))[:, 0]
    per = -((1 - log_p.exp()) ** gamma) * log_p
    n_out = logits.shape[1]
    w = (
        torch.ones(n_out, dtype=logits.dtype, device=logits.device)
        if class_weights is None
        else torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
    )
    weight = w[safe] * mask.to(logits.dtype)
    if pixel_weight is not None:
        weight = weight * pixel_weight
    return _weighted_mean(per, weight)


@dataclass(frozen=True)
class LossConfig:
    """Which loss to use; shared by the trainer and the tests.

    Parameters
    ----------
    kind
        ``"ce"``: binary cross-entropy with ``pos_weight`` (K = 1) or class-weighted cross-entropy
        (K > 1). ``"focal"``: focal loss with the same weights.
    dice_weight
        Weight of the soft Dice term added to the loss (0 disables it; "Dice + CE" is 1.0).
    focal_gamma
        Focusing parameter of the focal loss.
    class_weighting
        ``"inverse"`` or ``"median"`` frequency, or ``"none"``, for K > 1.
    weight_clip
        Range the class weights are clipped to.
    """

    kind: LossKind = "ce"
    dice_weight: float = 0.0
    focal_gamma: float = 2.0
    class_weighting: ClassWeighting = "inverse"
    weight_clip: tuple[float, float] = (WEIGHT_MIN, WEIGHT_MAX)


class ScribbleLoss:
    """The training loss, with weights counted over the whole label set.

    Call :meth:`set_counts` whenever the scribbles change; the weights are recomputed from the counts.
    """

    def __init__(self, n_classes: int, config: LossConfig, counts: Mapping[int, int]) -> None:
        self.n_classes = n_classes
        self.config = config
        self.pos_weight = 1.0
        self.class_weights = np.ones(n_classes + 1, np.float32)
        self.set_counts(counts)

    def set_counts(self, counts: Mapping[int, int]) -> None:
        """Recompute ``pos_weight`` (K = 1) or the class weights (K > 1) from label counts."""
        if self.n_classes == 1:
            # "none" turns the binary pos_weight off too (the sampler's fg_share still balances tiles)
            self.pos_weight = 1.0 if self.config.class_weighting == "none" else pos_weight_from_counts(counts)
        else:
            self.class_weights = class_weights_from_counts(
                counts, self.n_classes, self.config.class_weighting, self.config.weight_clip
            )

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, pixel_weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        cfg = self.config
        cw = torch.as_tensor(self.class_weights, device=logits.device)
        if cfg.kind == "focal":
            loss = focal_loss(logits, labels, cfg.focal_gamma, self.pos_weight, cw, pixel_weight)
        elif self.n_classes == 1:
            loss = masked_bce_loss(logits, labels, self.pos_weight, pixel_weight)
        else:
            loss = masked_ce_loss(logits, labels, cw, pixel_weight)
        if cfg.dice_weight > 0:
            loss = loss + cfg.dice_weight * soft_dice_loss(logits, labels)
        return loss


# ---------------------------------------------------------------------- U-Net border weights
def unet_weight_map(
    instances: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: tuple[float, float] | None = None,
) -> np.ndarray:
    """The weight map of the U-Net paper (Ronneberger et al., 2015, eq. 2) for a dense instance mask.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))`` where ``d1``/``d2`` are the
    distances to the nearest and second-nearest object. As in the paper's use (separating touching
    cells), the border term is applied to background pixels only: inside an object ``d1 = 0``.

    Parameters
    ----------
    instances
        ``(Y, X)`` integer mask, 0 = background, each object a distinct positive id.
    w0, sigma
        Amplitude and width (px) of the border term.
    class_weights
        ``(w_background, w_object)`` for ``w_c``; ``None`` balances the class frequencies:
        ``w_c = N / (2 n_c)`` (1 for both when one class is missing).

    Returns
    -------
    numpy.ndarray
        ``float32`` weights, same shape as ``instances``.

    Notes
    -----
    Distances are computed per object in its bounding box grown by ``6 sigma``; a pixel farther than
    that from an object gets no border term from it (``w0 exp(-18) < 2e-7 w0``), which keeps the cost
    proportional to the objects' areas rather than objects x image.
    """
    from scipy import ndimage as ndi

    inst = np.asarray(instances)
    if inst.ndim != 2:
        raise ValueError(f"instance mask must be 2D, got shape {inst.shape}")
    fg = inst > 0
    if class_weights is None:
        n = inst.size
        n_fg = int(fg.sum())
        n_bg = n - n_fg
        wc = (n / (2 * n_bg), n / (2 * n_fg)) if n_fg and n_bg else (1.0, 1.0)
    else:
        wc = class_weights
    weight = np.where(fg, np.float32(wc[1]), np.float32(wc[0])).astype(np.float32)
    if w0 == 0:
        return weight
    d1 = np.full(inst.shape, np.inf)
    d2 = np.full(inst.shape, np.inf)
    margin = int(np.ceil(6 * sigma))
    h, w = inst.shape
    for i, sl in enumerate(ndi.find_objects(inst.astype(np.int64)), start=1):
        if sl is None:
            continue
        y0, y1 = max(0, sl[0].start - margin), min(h, sl[0].stop + margin)
        x0, x1 = max(0, sl[1].start - margin), min(w, sl[1].stop + margin)
        d = ndi.distance_transform_edt(inst[y0:y1, x0:x1] != i)
        a1, a2 = d1[y0:y1, x0:x1], d2[y0:y1, x0:x1]
        # Keep the two smallest distances seen so far.
        a2[...] = np.minimum(a2, np.maximum(a1, d))
        a1[...] = np.minimum(a1, d)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    weight[~fg] += border[~fg].astype(np.float32)
    return weight
