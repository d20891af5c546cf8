"""Masked losses and weights, checked against values computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scribble_unet.training.losses import (
    LossConfig,
    ScribbleLoss,
    class_weights_from_counts,
    focal_loss,
    masked_bce_loss,
    masked_ce_loss,
    pos_weight_from_counts,
    soft_dice_loss,
    unet_weight_map,
)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# One image, 1 x 2 x 2 pixels: labels [[0, 1], [2, 2]] (one unlabelled, one background, two objects).
LOGITS_1 = torch.tensor([[[[5.0, -1.0], [2.0, 0.5]]]])  # (B=1, C=1, H=2, W=2)
LABELS = torch.tensor([[[0, 1], [2, 2]]])


def test_pos_weight_counts_over_all_scribbles() -> None:
    assert pos_weight_from_counts({1: 300, 2: 100}) == pytest.approx(3.0)
    # all object values count as foreground
    assert pos_weight_from_counts({1: 300, 2: 100, 3: 50}) == pytest.approx(2.0)
    assert pos_weight_from_counts({1: 10}) == 1.0  # one side missing: neutral
    assert pos_weight_from_counts({1: 10**6, 2: 1}) == 100.0  # clipped


def test_masked_bce_by_hand() -> None:
    pw = 3.0
    got = masked_bce_loss(LOGITS_1, LABELS, pw)
    # labelled: (-1, bg), (2, obj), (0.5, obj); unlabelled 5.0 ignored
    terms = [-math.log(1 - _sig(-1.0)), pw * -math.log(_sig(2.0)), pw * -math.log(_sig(0.5))]
    assert float(got) == pytest.approx(sum(terms) / 3, rel=1e-6)
    # the unlabelled logit has no influence
    other = LOGITS_1.clone()
    other[0, 0, 0, 0] = -40.0
    assert float(masked_bce_loss(other, LABELS, pw)) == pytest.approx(float(got), rel=1e-7)
    # matches torch's BCEWithLogitsLoss(pos_weight) restricted to labelled pixels
    ref = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw))(
        torch.tensor([-1.0, 2.0, 0.5]), torch.tensor([0.0, 1.0, 1.0])
    )
    assert float(got) == pytest.approx(float(ref), rel=1e-6)


def test_masked_bce_pixel_weights_and_empty() -> None:
    w = torch.tensor([[[7.0, 2.0], [1.0, 1.0]]])
    got = masked_bce_loss(LOGITS_1, LABELS, 1.0, pixel_weight=w)
    terms = [2 * -math.log(1 - _sig(-1.0)), -math.log(_sig(2.0)), -math.log(_sig(0.5))]
    assert float(got) == pytest.approx(sum(terms) / 4, rel=1e-6)
    x = LOGITS_1.clone().requires_grad_(True)
    empty = masked_bce_loss(x, torch.zeros_like(LABELS), 2.0)
    assert float(empty.detach()) == 0.0
    empty.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) == 0.0


def test_class_weights_inverse_median_clip() -> None:
    counts = {1: 600, 2: 300, 3: 100}  # background, class 1, class 2
    inv = class_weights_from_counts(counts, 2, "inverse")
    # N / (M n_c) = 1000 / (3 n_c)
    np.testing.assert_allclose(inv, [1000 / 1800, 1000 / 900, 1000 / 300], rtol=1e-6)
    med = class_weights_from_counts(counts, 2, "median")
    # frequencies 0.6, 0.3, 0.1; median 0.3
    np.testing.assert_allclose(med, [0.5, 1.0, 3.0], rtol=1e-6)
    clipped = class_weights_from_counts({1: 100000, 2: 10, 3: 100000}, 2, "inverse")
    assert clipped[1] == pytest.approx(10.0)  # clipped at the top
    np.testing.assert_allclose(clipped[[0, 2]], 200010 / 300000, rtol=1e-6)
    absent = class_weights_from_counts({1: 50, 2: 50}, 2, "inverse")
    np.testing.assert_allclose(absent, [1.0, 1.0, 1.0])  # class 2 unpainted: weight 1
    np.testing.assert_allclose(class_weights_from_counts(counts, 2, "none"), [1, 1, 1])


def test_masked_ce_by_hand() -> None:
    logits = torch.tensor([[[[0.0, 1.0]], [[2.0, 0.0]], [[0.0, 3.0]]]])  # (1, 3, 1, 2)
    labels = torch.tensor([[[2, 3]]])  # pixel 0: class 1 (channel 1); pixel 1: class 2 (channel 2)
    w = [1.0, 2.0, 0.5]

    def nll(z: list[float], c: int) -> float:
        return -(z[c] - math.log(sum(math.exp(v) for v in z)))

    l0 = nll([0.0, 2.0, 0.0], 1)
    l1 = nll([1.0, 0.0, 3.0], 2)
    expected = (2.0 * l0 + 0.5 * l1) / (2.0 + 0.5)
    assert float(masked_ce_loss(logits, labels, w)) == pytest.approx(expected, rel=1e-6)
    # unlabelled pixels are ignored: add an unlabelled column with a huge logit
    logits2 = torch.cat([logits, torch.tensor([[[[50.0]], [[-50.0]], [[0.0]]]])], dim=3)
    labels2 = torch.cat([labels, torch.tensor([[[0]]])], dim=2)
    assert float(masked_ce_loss(logits2, labels2, w)) == pytest.approx(expected, rel=1e-6)
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor(w), ignore_index=-1)(logits2, labels2 - 1)
    assert float(masked_ce_loss(logits2, labels2, w)) == pytest.approx(float(ref), rel=1e-6)


def test_soft_dice_binary_by_hand() -> None:
    # labelled pixels: (-1, bg), (2, obj), (0.5, obj); classes [bg, obj]
    p = [_sig(-1.0), _sig(2.0), _sig(0.5)]
    g = [0, 1, 1]
    inter_fg = sum(pi * gi for pi, gi in zip(p, g, strict=True))
    d_fg = (2 * inter_fg + 1) / (sum(p) + sum(g) + 1)
    q = [1 - v for v in p]
    h = [1 - v for v in g]
    inter_bg = sum(qi * hi for qi, hi in zip(q, h, strict=True))
    d_bg = (2 * inter_bg + 1) / (sum(q) + sum(h) + 1)
    expected = 1 - (d_fg + d_bg) / 2
    assert float(soft_dice_loss(LOGITS_1, LABELS, smooth=1.0)) == pytest.approx(expected, rel=1e-6)


def test_soft_dice_multiclass_perfect_and_ignores_unlabelled() -> None:
    labels = torch.tensor([[[1, 2, 3, 0]]])
    logits = torch.full((1, 3, 1, 4), -30.0)
    for i, c in enumerate([0, 1, 2]):
        logits[0, c, 0, i] = 30.0
    logits[0, 1, 0, 3] = 30.0  # unlabelled pixel predicted as class 1: must not count
    assert float(soft_dice_loss(logits, labels, smooth=0.0)) == pytest.approx(0.0, abs=1e-6)


def test_focal_by_hand() -> None:
    pw, gamma = 3.0, 2.0
    # gamma = 0 is the weighted BCE
    assert float(focal_loss(LOGITS_1, LABELS, 0.0, pw)) == pytest.approx(
        float(masked_bce_loss(LOGITS_1, LABELS, pw)), rel=1e-6
    )
    pt = [1 - _sig(-1.0), _sig(2.0), _sig(0.5)]
    a = [1.0, pw, pw]
    terms = [ai * (1 - p) ** gamma * -math.log(p) for ai, p in zip(a, pt, strict=True)]
    assert float(focal_loss(LOGITS_1, LABELS, gamma, pw)) == pytest.approx(sum(terms) / 3, rel=1e-6)


def test_focal_multiclass_by_hand() -> None:
    logits = torch.tensor([[[[0.0, 1.0]], [[2.0, 0.0]], [[0.0, 3.0]]]])
    labels = torch.tensor([[[2, 3]]])
    w = [1.0, 2.0, 0.5]
    assert float(focal_loss(logits, labels, 0.0, class_weights=w)) == pytest.approx(
        float(masked_ce_loss(logits, labels, w)), rel=1e-6
    )
    p0 = math.exp(2) / (2 + math.exp(2))
    p1 = math.exp(3) / (math.e + 1 + math.exp(3))
    expected = (2.0 * (1 - p0) ** 2 * -math.log(p0) + 0.5 * (1 - p1) ** 2 * -math.log(p1)) / 2.5
    assert float(focal_loss(logits, labels, 2.0, class_weights=w)) == pytest.approx(expected, rel=1e-6)


def test_scribble_loss_combines_and_recounts() -> None:
    loss = ScribbleLoss(1, LossConfig(dice_weight=0.5), {1: 30, 2: 10})
    assert loss.pos_weight == pytest.approx(3.0)
    expected = float(masked_bce_loss(LOGITS_1, LABELS, 3.0)) + 0.5 * float(soft_dice_loss(LOGITS_1, LABELS))
    assert float(loss(LOGITS_1, LABELS)) == pytest.approx(expected, rel=1e-6)
    loss.set_counts({1: 10, 2: 40})
    assert loss.pos_weight == pytest.approx(0.25)
    multi = ScribbleLoss(2, LossConfig(class_weighting="median"), {1: 600, 2: 300, 3: 100})
    np.testing.assert_allclose(multi.class_weights, [0.5, 1.0, 3.0], rtol=1e-6)


def test_unet_weight_map_by_hand() -> None:
    inst = np.zeros((1, 7), np.int32)
    inst[0, 0] = 1
    inst[0, 6] = 2
    sigma, w0 = 2.0, 10.0
    got = unet_weight_map(inst, w0=w0, sigma=sigma, class_weights=(1.0, 1.0))
    for x in range(7):
        if x in (0, 6):
            assert got[0, x] == pytest.approx(1.0)  # objects: w_c only
        else:
            d1, d2 = sorted([x, 6 - x])
            assert got[0, x] == pytest.approx(1.0 + w0 * math.exp(-((d1 + d2) ** 2) / (2 * sigma**2)), rel=1e-5)


def test_unet_weight_map_balanced_and_single_object() -> None:
    inst = np.zeros((4, 4), np.int32)
    inst[:2, :2] = 1  # 4 object pixels, 12 background
    got = unet_weight_map(inst, w0=10.0, sigma=5.0)
    # one object: no second-nearest object, so no border term; w_c = N / (2 n_c)
    np.testing.assert_allclose(got[inst > 0], 16 / 8)
    np.testing.assert_allclose(got[inst == 0], 16 / 24)
    # two touching objects: the background gap between them gets the largest weight
    two = np.zeros((5, 9), np.int32)
    two[:, :4] = 1
    two[:, 5:] = 2
    w = unet_weight_map(two, w0=10.0, sigma=5.0, class_weights=(1.0, 1.0))
    # gap pixel: d1 = d2 = 1
    np.testing.assert_allclose(w[:, 4], 1 + 10 * math.exp(-4 / 50), rtol=1e-5)
