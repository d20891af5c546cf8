"""The image's class shares estimated from the model's prediction (training/prior.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import make_checkpoint
from scribble_unet.model.checkpoint import load_checkpoint, save_checkpoint
from scribble_unet.model.unet import ModelConfig
from scribble_unet.training.prior import (
    MAX_SHIFT,
    PriorEstimator,
    em_class_shares,
    sample_windows,
    shift_of,
)


@pytest.mark.parametrize("share", [0.05, 0.2, 0.75])
def test_em_recovers_the_share_behind_a_balanced_classifiers_outputs(share: float) -> None:
    # pixels of two classes with Gaussian features; a classifier trained with equal shares outputs the
    # likelihood ratio's sigmoid: EM must find the share the pixels were drawn with, not 0.5
    rng = np.random.default_rng(0)
    n = 200_000
    y = rng.random(n) < share
    x = rng.normal(size=n) + 1.5 * y
    llr = 1.5 * x - 1.5**2 / 2  # log N(x; 1.5, 1) - log N(x; 0, 1)
    p1 = 1 / (1 + np.exp(-llr))
    shares = em_class_shares(np.stack([1 - p1, p1]))
    assert shares.sum() == pytest.approx(1.0)
    assert shares[1] == pytest.approx(share, abs=0.01)
    assert abs((p1 > 0.5).mean() - share) > 0.03  # the balanced classifier's own share is off


def test_shift_is_the_damped_log_ratio_and_is_clipped() -> None:
    one = shift_of(np.array([0.8, 0.2]), 0.5, out_channels=1)
    assert one.shape == (1,) and one[0] == pytest.approx(0.5 * np.log(0.2 / 0.8), rel=1e-5)
    multi = shift_of(np.array([0.5, 0.3, 0.2]), 1.0, out_channels=3)
    # softmax logits: differences between classes are the log ratios of the shares
    assert multi[1] - multi[2] == pytest.approx(np.log(0.3 / 0.2), rel=1e-5)
    assert shift_of(np.array([1.0, 0.0]), 1.0, out_channels=1)[0] == pytest.approx(-MAX_SHIFT)


def test_windows_lie_on_the_pooling_grid_inside_the_image_or_cover_a_small_one() -> None:
    boxes = sample_windows((3000, 2000), 4, seed=1)
    assert len(boxes) == 8
    for y0, y1, x0, x1 in boxes:
        assert y0 % 4 == 0 and x0 % 4 == 0 and 0 <= y0 < y1 <= 3000 and 0 <= x0 < x1 <= 2000
    assert sample_windows((3000, 2000), 4, seed=1) == boxes  # the same windows for the whole run
    assert sample_windows((300, 200), 4, seed=1) == [(0, 300, 0, 200)]


def test_estimator_sets_the_models_shift_from_its_own_unshifted_prediction() -> None:
    from scribble_unet.image import open_image
    from scribble_unet.training.infer import predict_window

    ckpt = make_checkpoint(depth=2, width=4, seed=6, pixel_forest=True, prior_shift=0.5)
    model = ckpt.build()
    image = open_image(np.random.default_rng(3).normal(size=(96, 80)).astype(np.float32))
    est = PriorEstimator(image, model.config.align, 0.5, seed=0)
    assert est.update(model, ckpt.normalization, "cpu", elapsed=0.0)
    with torch.no_grad():
        model.forest.prior.zero_()
    p = predict_window(model, image, ckpt.normalization, 0, 96, 0, 80).reshape(-1)
    expected = em_class_shares(np.stack([1 - p, p]))
    assert est.shares == pytest.approx(expected, rel=1e-4)
    est.update(model, ckpt.normalization, "cpu", elapsed=1.0, force=True)  # from the unshifted model again
    assert est.shares == pytest.approx(expected, rel=1e-4)
    assert float(model.forest.prior[0]) == pytest.approx(float(shift_of(expected, 0.5, 1)[0]), rel=1e-4)
    # nothing changed and little time passed: no new estimate
    assert not est.update(model, ckpt.normalization, "cpu", elapsed=2.0)


def test_the_shift_is_saved_with_the_model_and_older_files_load_without_it(tmp_path) -> None:
    ckpt = make_checkpoint(depth=2, width=4, seed=6, pixel_forest=True, prior_shift=0.5)
    back = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", ckpt))
    assert back.config.prior_shift == 0.5
    assert torch.equal(back.state_dict["forest.prior"], ckpt.state_dict["forest.prior"])
    old = make_checkpoint(depth=2, width=4, seed=6, pixel_forest=True)
    assert "forest.prior" not in old.state_dict and "prior_shift" not in old.config.to_json()
    assert load_checkpoint(save_checkpoint(tmp_path / "o.safetensors", old)).config.prior_shift == 0.0
    assert ModelConfig.from_dict({"depth": 2}).prior_shift == 0.0  # headers without the key: no shift


def test_a_prior_shift_outside_0_to_1_is_refused_in_one_line(tmp_path) -> None:
    from scribble_unet.errors import ScribbleUNetError

    for bad in (2.0, -0.5):
        with pytest.raises(ScribbleUNetError, match=rf"^prior shift must be a number from 0 to 1, got {bad}$"):
            ModelConfig(prior_shift=bad)
    with pytest.raises(ScribbleUNetError, match="prior shift must be a number from 0 to 1"):
        ModelConfig.from_dict({"depth": 2, "pixel_forest": True, "prior_shift": 3.0})  # a damaged header
