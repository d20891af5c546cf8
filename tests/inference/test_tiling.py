"""Exact tiling: tiled prediction equals one whole-image pass, for any shape and tile size."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import make_checkpoint, whole_image_reference
from scribble_unet.errors import ScribbleUNetError
from scribble_unet.image import ArraySource
from scribble_unet.inference.predict import predict_lazy, probabilities_to_mask
from scribble_unet.inference.tiling import TileGrid, read_reflected, reflect_index, round_tile

CKPTS = {
    (2, 1, 1, "batch"): make_checkpoint(depth=2, width=4, seed=1),
    (3, 2, 3, "batch"): make_checkpoint(depth=3, width=4, channels=2, classes=3, seed=2),
    (1, 1, 1, "none"): make_checkpoint(depth=1, width=6, norm="none", seed=3),
    (2, 1, 1, "filters"): make_checkpoint(depth=2, width=4, seed=4, filter_bank=True),
    (2, 3, 2, "filters"): make_checkpoint(depth=2, width=4, channels=3, classes=2, seed=5, filter_bank=True),
}


@given(idx=st.lists(st.integers(-500, 500), min_size=1, max_size=30), n=st.integers(1, 40))
def test_reflect_index_matches_numpy_pad(idx: list[int], n: int) -> None:
    base = np.arange(n)
    pad = 600
    padded = np.pad(base, pad, mode="reflect") if n > 1 else np.zeros(n + 2 * pad, int)
    expected = padded[np.asarray(idx) + pad]
    assert np.array_equal(reflect_index(np.asarray(idx), n), expected)


@given(
    h=st.integers(1, 40), w=st.integers(1, 40),
    y0=st.integers(-60, 30), x0=st.integers(-60, 30), dy=st.integers(1, 70), dx=st.integers(1, 70),
)
def test_read_reflected_equals_padded_image(h: int, w: int, y0: int, x0: int, dy: int, dx: int) -> None:
    img = np.arange(2 * h * w).reshape(2, h, w)
    calls = []

    def read(a: int, b: int, c: int, d: int) -> np.ndarray:
        calls.append((a, b, c, d))
        return img[:, a:b, c:d]

    got = read_reflected(read, (h, w), y0, y0 + dy, x0, x0 + dx)
    ref = np.stack([
        ch[np.ix_(reflect_index(np.arange(y0, y0 + dy), h), reflect_index(np.arange(x0, x0 + dx), w))]
        for ch in img
    ])
    assert np.array_equal(got, ref)
    assert len(calls) == 1  # one bounding-box read, inside the image
    a, b, c, d = calls[0]
    assert 0 <= a < b <= h and 0 <= c < d <= w


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(sorted(CKPTS)),
    h=st.integers(1, 110),
    w=st.integers(1, 110),
    tile_mult=st.sampled_from([1, 2, 3, 5, 8]),
    seed=st.integers(0, 2**16),
)
def test_tiled_prediction_equals_whole_image_pass(key, h: int, w: int, tile_mult: int, seed: int) -> None:
    ckpt = CKPTS[key]
    cfg = ckpt.config
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(cfg.in_channels, h, w)).astype(np.float32)
    data = img[0] if cfg.in_channels == 1 else ArraySource(img, channel_axis=0)
    tile = tile_mult * cfg.align
    pred = predict_lazy(ckpt, data, tile=tile, device="cpu")
    got = pred.probabilities.compute(scheduler="synchronous")
    ref = whole_image_reference(ckpt, img)
    assert got.shape == (cfg.n_classes, h, w)
    assert np.abs(got - ref).max() <= 1e-5
    # the mask agrees with the reference's wherever no probability is within 1e-5 of a decision tie
    mask = pred.mask.compute(scheduler="synchronous")
    ref_mask = probabilities_to_mask(ref)
    if cfg.n_classes == 1:
        clear = np.abs(ref[0] - 0.5) > 1e-5
    else:
        full = np.concatenate([1 - ref.sum(0, keepdims=True), ref])
        top2 = np.sort(full, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 2e-5
    assert np.array_equal(mask[clear], ref_mask[clear])


FOREST_CKPTS = {  # a pixel forest costs ~10 ms per chunk: fixed cases with larger tiles, not hypothesis
    "gray": make_checkpoint(depth=2, width=4, seed=6, pixel_forest=True),
    "rgb-2-classes": make_checkpoint(depth=1, width=4, channels=3, classes=2, seed=7, pixel_forest=True),
    "gray-prior": make_checkpoint(depth=2, width=4, seed=6, pixel_forest=True, prior_shift=0.5),
    "rgb-2-classes-prior": make_checkpoint(depth=1, width=4, channels=3, classes=2, seed=7, pixel_forest=True,
                                           prior_shift=0.5),
}


@pytest.mark.parametrize("key", sorted(FOREST_CKPTS))
@pytest.mark.parametrize(("h", "w", "tile", "seed"), [(37, 90, 16, 0), (110, 70, 24, 1), (5, 8, 8, 2), (96, 64, 64, 3)])
def test_tiled_prediction_with_a_pixel_forest_equals_whole_image_pass(key: str, h: int, w: int, tile: int,
                                                                      seed: int) -> None:
    ckpt = FOREST_CKPTS[key]
    cfg = ckpt.config
    img = np.random.default_rng(seed).normal(size=(cfg.in_channels, h, w)).astype(np.float32)
    data = img[0] if cfg.in_channels == 1 else ArraySource(img, channel_axis=0)
    pred = predict_lazy(ckpt, data, tile=tile, device="cpu")
    got = pred.probabilities.compute(scheduler="synchronous")
    ref = whole_image_reference(ckpt, img)
    assert np.abs(got - ref).max() <= 1e-5
    # the mask (borders snapped to edges where the product is unsure) equals the whole-image pass's
    whole = predict_lazy(ckpt, data, tile=0, device="cpu").mask.compute(scheduler="synchronous")
    assert np.array_equal(pred.mask.compute(scheduler="synchronous"), whole)
    # the forest matters here: the same U-Net without it predicts otherwise
    plain = make_checkpoint(depth=cfg.depth, width=4, channels=cfg.in_channels, classes=cfg.n_classes,
                            seed=6 if key.startswith("gray") else 7)
    assert np.abs(whole_image_reference(plain, img) - ref).max() > 0.05


def test_whole_pass_option_is_one_chunk() -> None:
    ckpt = CKPTS[(2, 1, 1, "batch")]
    pred = predict_lazy(ckpt, np.zeros((37, 90), np.float32), tile=0, device="cpu")
    assert pred.probabilities.numblocks == (1, 1, 1)


def test_tile_rounding_is_reported() -> None:
    ckpt = CKPTS[(3, 2, 3, "batch")]
    pred = predict_lazy(ckpt, ArraySource(np.zeros((2, 50, 50), np.float32), 0), tile=30, device="cpu")
    assert pred.grid.tile == 32
    assert pred.predictor.notes == ["tile 30 rounded to 32 (a multiple of 8)"]
    assert round_tile(3, 8) == 8
    with pytest.raises(ScribbleUNetError, match="tile size must be positive"):
        round_tile(-4, 8)


def test_grid_chunks_touching() -> None:
    g = TileGrid((1000, 700), 256, 24, 8)
    assert g.n_chunks == (4, 3)
    assert g.chunks == ((256, 256, 256, 232), (256, 256, 188))
    assert g.chunks_touching(300, 310, 0, 1) == [(1, 0)]
    assert g.chunks_touching(250, 260, 250, 260) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert g.chunks_touching(-50, -1, 0, 10) == []
    assert g.input_window(3, 2) == (768 - 24, 1000 + 24, 512 - 24, 704 + 24)
