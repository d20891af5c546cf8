"""Learning from the pixels nobody painted: an averaged teacher and a consistency loss.

Strokes cover under 1 % of an image. The other 99 % still say what objects and background look like.
Following the mean-teacher scheme that Scribble2Label (Lee and Jeong, MICCAI 2020) used for cell images,
the trainer keeps an exponential moving average (EMA) of the network's weights, the *teacher*. On every
training tile, the teacher predicts the tile seen in the opposite orientation (flipped along both axes,
its output flipped back), and where it is confident, its probabilities become soft targets for the
student on the unlabelled pixels. Stroke pixels keep their painted labels; held-out strokes count as
unlabelled, so validation never leaks into training.

The consistency term is ramped in after the teacher has had time to learn from the strokes
(:meth:`MeanTeacher.weight_at`), and its pixels are those where the teacher's largest class probability
is at least ``threshold``.
"""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F

from ..model.unet import UNet

DECAY = 0.99
"""EMA decay per step: the teacher averages about the last 100 steps."""
THRESHOLD = 0.9
"""Teacher confidence (largest class probability) a pixel needs to become a target."""
START, RAMP = 200, 300
"""Steps without the consistency term, then steps over which its weight rises linearly to full."""


class MeanTeacher:
    """EMA copy of ``model`` and the consistency loss it teaches with."""

    def __init__(self, model: UNet, weight: float, decay: float = DECAY, threshold: float = THRESHOLD) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.weight = float(weight)
        self.decay = float(decay)
        self.threshold = float(threshold)

    def weight_at(self, step: int) -> float:
        """Weight of the consistency term at training step ``step`` (0 before :data:`START`)."""
        return self.weight * min(1.0, max(0.0, (step - START) / RAMP))

    @torch.no_grad()
    def update(self, student: UNet) -> None:
        """Move the teacher's weights towards the student's (buffers, e.g. BatchNorm statistics, copied)."""
        for t, s in zip(self.model.parameters(), student.parameters(), strict=True):
            t.mul_(self.decay).add_(s.detach(), alpha=1.0 - self.decay)
        for tb, sb in zip(self.model.buffers(), student.buffers(), strict=True):
            tb.copy_(sb)

    @torch.no_grad()
    def targets(self, x: torch.Tensor, context: int) -> torch.Tensor:
        """Teacher probabilities ``(B, C, T, T)`` (C = 1 sigmoid, else softmax) of the flipped tiles."""
        flipped = torch.flip(x, dims=(-2, -1))
        logits = torch.flip(self.model(flipped, context=context), dims=(-2, -1))
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)

    def loss(self, student_logits: torch.Tensor, x: torch.Tensor, labels: torch.Tensor, context: int,
             step: int) -> torch.Tensor | None:
        """Consistency loss on confident unlabelled pixels at ``step`` (None while its weight is 0)."""
        w = self.weight_at(step)
        if w <= 0:
            return None
        p = self.targets(x, context)
        if p.shape[1] == 1:
            conf = torch.maximum(p, 1 - p)[:, 0]
        else:
            conf = p.max(dim=1).values
        mask = (labels == 0) & (conf >= self.threshold)
        n = int(mask.sum())
        if n == 0:
            return None
        if p.shape[1] == 1:
            per_px = F.binary_cross_entropy_with_logits(student_logits[:, 0], p[:, 0], reduction="none")
        else:
            per_px = -(p * F.log_softmax(student_logits, dim=1)).sum(dim=1)
        return w * per_px[mask].sum() / n
