"""Working resolution: binned views, exact tiled prediction of a binned model, the object-size estimate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import make_checkpoint
from scribble_unet.errors import ScribbleUNetError
from scribble_unet.image import ArraySource
from scribble_unet.image.binned import BinnedLabels, BinnedSource, bin_max, bin_mean
from scribble_unet.inference.predict import predict_array, predict_lazy
from scribble_unet.inference.resample import needed_range, upsample
from scribble_unet.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from scribble_unet.model.normalize import Normalization
from scribble_unet.model.unet import ModelConfig
from scribble_unet.training.infer import predict_image
from scribble_unet.training.scale import estimate_diameter, scale_for_diameter


def scaled(ckpt: Checkpoint, f: int) -> Checkpoint:
    return Checkpoint(ckpt.config.replace(scale=f), ckpt.state_dict, ckpt.normalization, {})


def test_bin_mean_and_max_handle_partial_blocks() -> None:
    a = np.arange(5 * 7, dtype=np.float32).reshape(1, 5, 7)
    m = bin_mean(a, 3)
    assert m.shape == (1, 2, 3)
    assert m[0, 0, 0] == pytest.approx(a[0, :3, :3].mean())
    assert m[0, 1, 2] == pytest.approx(a[0, 3:, 6:].mean())  # a 2 x 1 block at the corner
    labels = np.zeros((5, 7), np.uint8)
    labels[4, 6] = 2
    labels[0, 0] = 1
    b = bin_max(labels, 3)
    assert b.tolist() == [[1, 0, 0], [0, 0, 2]]


def test_binned_views_read_windows_like_the_whole() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((3, 50, 61)).astype(np.float32)
    src = BinnedSource(ArraySource(img, channel_axis=0), 4)
    assert src.shape_yx == (13, 16)
    whole = bin_mean(img, 4)
    assert np.array_equal(src.read(2, 9, 5, 16), whole[:, 2:9, 5:16])
    labels = rng.integers(0, 3, (50, 61)).astype(np.uint8)
    bl = BinnedLabels(labels, 4)
    assert bl.shape == (13, 16)
    assert np.array_equal(bl[3:13, 0:7], bin_max(labels, 4)[3:13, 0:7])
    assert bl.working_region((5, 9, 0, 61)) == (1, 3, 0, 16)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), f=st.integers(1, 5), a0=st.integers(0, 200), length=st.integers(1, 60))
def test_upsample_of_a_window_equals_the_whole(n: int, f: int, a0: int, length: int) -> None:
    full = n * f
    a0 = a0 % full
    a1 = min(full, a0 + length)
    low = np.random.default_rng(n).random((2, n, n)).astype(np.float32)
    whole = upsample(low, f, (0, 0), (n, n), (0, full, 0, full))
    lo, hi = needed_range(a0, a1, f, n)
    part = upsample(low[:, lo:hi, lo:hi], f, (lo, lo), (n, n), (a0, a1, a0, a1))
    assert np.array_equal(part, whole[:, a0:a1, a0:a1])


@pytest.mark.parametrize("f", [2, 3])
@pytest.mark.parametrize("tile", [32, 48, 0])
@pytest.mark.parametrize("filter_bank", [False, True])
def test_tiled_prediction_of_a_binned_model_equals_the_whole_pass(f: int, tile: int, filter_bank: bool) -> None:
    ckpt = scaled(make_checkpoint(depth=2, width=4, seed=5, filter_bank=filter_bank), f)
    img = np.random.default_rng(1).random((101, 77)).astype(np.float32)
    ref = predict_image(ckpt.build(), img, ckpt.normalization)
    assert ref.shape == (1, 101, 77)
    prob, _mask = predict_array(ckpt, img, tile=tile, device="cpu")
    assert prob.shape == ref.shape
    assert np.abs(prob - ref).max() <= 1e-5
    assert predict_lazy(ckpt, img, tile=tile, device="cpu").grid.tile % (4 * f) == 0


def test_scale_travels_in_the_checkpoint(tmp_path) -> None:
    ckpt = scaled(make_checkpoint(), 3)
    save_checkpoint(tmp_path / "m.safetensors", ckpt)
    assert load_checkpoint(tmp_path / "m.safetensors").config.scale == 3
    assert "scale" not in make_checkpoint().config.to_json()  # full-resolution headers as before
    with pytest.raises(ScribbleUNetError, match="scale"):
        ModelConfig(scale=0)


def discs(diameter: float, n: int = 12, size: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(0.1, 0.02, (size, size)).astype(np.float32)
    labels = np.zeros((size, size), np.uint8)
    r = diameter / 2
    for _ in range(n):
        cy, cx = rng.uniform(r + 2, size - r - 2, 2)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[inside] += 0.8
        labels[int(cy), int(cx - r / 2) : int(cx + r / 2) + 1] = 2  # a stroke across the middle
    return img, labels


@pytest.mark.parametrize("diameter", [10, 24, 60])
def test_diameter_estimate_from_strokes(diameter: float) -> None:
    img, labels = discs(diameter)
    points = np.argwhere(labels == 2)
    d = estimate_diameter(ArraySource(img), Normalization(low=(0.0,), high=(1.0,)), points, np.random.default_rng(0))
    assert d is not None and abs(d - diameter) <= 0.25 * diameter


def test_scale_rule() -> None:
    assert scale_for_diameter(20, 47, (5000, 5000)) == 1
    assert scale_for_diameter(45, 47, (5000, 5000)) == 1
    assert scale_for_diameter(60, 47, (5000, 5000)) == 2
    assert scale_for_diameter(110, 47, (5000, 5000)) == 3
    assert scale_for_diameter(1000, 47, (5000, 5000)) == 8  # capped
    assert scale_for_diameter(110, 47, (150, 5000)) == 2  # the working image keeps >= 64 px


def test_trainer_chooses_and_records_the_working_resolution() -> None:
    from scribble_unet.training.trainer import TrainConfig, Trainer

    img, labels = discs(100, n=6, size=400, seed=1)
    labels[:3, :200] = 1  # a background stroke along the top edge
    cfg = TrainConfig(steps=3, val_share=0.0, validate_every=0, device="cpu")
    t = Trainer(img, labels, ModelConfig(depth=2, width=4), cfg)
    assert t.scale_choice.source == "estimated" and t.scale_choice.scale == 3
    assert t.image.shape_yx == (134, 134) and t.index.shape == (134, 134)
    ckpt = next(ev for ev in t.run() if type(ev).__name__ == "FinishedEvent").checkpoint
    assert ckpt.config.scale == 3 and ckpt.training["scale"] == 3
    assert predict_image(ckpt.build(), img, ckpt.normalization).shape == (1, 400, 400)
    fixed = Trainer(img, labels, ModelConfig(depth=2, width=4), cfg.replace(object_diameter=20))
    assert fixed.scale_choice.scale == 1 and fixed.scale_choice.source == "user"
