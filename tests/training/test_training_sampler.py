"""Tile sampling: balance between objects and background, labels in every tile, reflection at the
borders, held-out strokes masked out, augmentations that keep image and labels aligned."""

from __future__ import annotations

import numpy as np
import pytest

from scribble_unet.errors import ScribbleUNetError
from scribble_unet.image import ArraySource
from scribble_unet.inference.tiling import reflect_index
from scribble_unet.model.normalize import Normalization
from scribble_unet.model.unet import ModelConfig
from scribble_unet.training.labels import LabelIndex, split_strokes
from scribble_unet.training.sampler import (
    NO_AUGMENT,
    Augment,
    TileSampler,
    augment_tile,
    check_tile,
    field_of_view,
)

IDENTITY = Normalization.identity(1)


def scribbles_two_classes() -> np.ndarray:
    """Background strokes (value 1), many class-1 pixels (2) and few class-2 pixels (3)."""
    s = np.zeros((96, 128), np.uint8)
    for i in range(6):
        s[5 + 15 * i, 3:60] = 1
    for i in range(8):
        s[10 + 10 * i, 70:120] = 2  # 400 pixels
    s[50:52, 125:127] = 3  # 4 pixels, in a corner region
    return s


def position_image(shape: tuple[int, int]) -> np.ndarray:
    """An image whose value is each pixel's flat position: a tile then tells where it was read."""
    return np.arange(shape[0] * shape[1], dtype=np.float64).reshape(shape)


def make_sampler(
    s: np.ndarray, *, val_share: float = 0.0, fg_share: float = 0.5, tile: int = 32, augment: Augment = NO_AUGMENT,
    image: np.ndarray | None = None, seed: int = 0, weights: np.ndarray | None = None,
) -> TileSampler:
    index = LabelIndex(s, ["a", "b"], chunk_shape=(32, 32))
    split = split_strokes(index, val_share, seed=seed)
    img = position_image(s.shape) if image is None else image
    return TileSampler(ArraySource(img), s, split, tile, IDENTITY, fg_share, augment, weights)


@pytest.mark.parametrize("fg_share", [0.5, 0.2, 0.9])
def test_object_share_matches_fg_share(fg_share: float) -> None:
    sampler = make_sampler(scribbles_two_classes(), fg_share=fg_share)
    rng = np.random.default_rng(0)
    values = np.array([sampler.draw_centre(rng)[0] for _ in range(2000)])
    share = float(np.mean(values >= 2))
    assert abs(share - fg_share) < 0.04
    # object classes chosen uniformly among the classes present, not by pixel count (400 vs 4)
    assert abs(np.mean(values == 3) - fg_share / 2) < 0.04


@pytest.mark.parametrize(("fg_share", "n"), [(0.5, 4), (0.3, 4), (0.5, 3)])
def test_batches_are_stratified(fg_share: float, n: int) -> None:
    sampler = make_sampler(scribbles_two_classes(), fg_share=fg_share, tile=16)
    rng = np.random.default_rng(0)
    per_batch = []
    for _ in range(500):
        _, labels, _ = sampler.batch(n, rng)
        per_batch.append(int((labels[:, 8, 8] >= 2).sum()))  # centre pixel of each tile
    counts = np.array(per_batch)
    lo = int(np.floor(n * fg_share))
    assert set(counts.tolist()) <= {lo, lo + 1}  # never a batch far from the target make-up
    assert abs(counts.mean() / n - fg_share) < 0.03


def test_only_one_side_available_uses_it() -> None:
    s = np.zeros((40, 40), np.uint8)
    s[10, 5:30] = 2
    sampler = make_sampler(s, fg_share=0.0)
    rng = np.random.default_rng(0)
    assert {sampler.draw_centre(rng)[0] for _ in range(50)} == {2}


@pytest.mark.parametrize("augment", [NO_AUGMENT, Augment(flips=True, rot90=True, intensity=0.2, elastic=True)])
def test_every_tile_contains_a_labelled_pixel(augment: Augment) -> None:
    s = np.zeros((100, 100), np.uint8)
    s[3, 90] = 1  # single pixels: the hardest case for nearest-neighbour elastic resampling
    s[97, 2] = 2
    s[50, 50] = 3
    sampler = make_sampler(s, augment=augment, tile=32)
    rng = np.random.default_rng(1)
    for _ in range(300):
        t = sampler.sample(rng)
        assert t.image.shape == (1, 32, 32) and t.labels.shape == (32, 32)
        assert t.image.dtype == np.float32
        assert (t.labels > 0).any()
        if augment is NO_AUGMENT:
            value, y, x = t.centre
            assert t.labels[16, 16] == value == s[y, x]


def test_tiles_are_reflected_at_the_borders() -> None:
    s = np.zeros((40, 50), np.uint8)
    s[0, 0] = 2
    s[39, 49] = 1
    sampler = make_sampler(s, tile=32)
    img = position_image(s.shape)
    padded = np.pad(img, 16, mode="reflect")
    padded_s = np.pad(s, 16, mode="reflect")
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        t = sampler.sample(rng)
        _, y, x = t.centre
        seen.add((y, x))
        # window [y - 16, y + 16) in image coordinates = [y, y + 32) in the padded image
        np.testing.assert_array_equal(t.image[0], padded[y : y + 32, x : x + 32])
        np.testing.assert_array_equal(t.labels, padded_s[y : y + 32, x : x + 32])
    assert seen == {(0, 0), (39, 49)}


def test_held_out_strokes_never_reach_training_labels() -> None:
    s = scribbles_two_classes()
    sampler = make_sampler(s, val_share=0.4, tile=48, seed=3)
    split = sampler.split
    assert len(split.val_all) > 0
    held = np.zeros(s.size, bool)
    held[split.val_all] = True
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(300):
        t = sampler.sample(rng)
        src = t.image[0].astype(np.int64)  # the position image says where each pixel came from
        expected = np.where(held[src], 0, s.reshape(-1)[src])
        np.testing.assert_array_equal(t.labels, expected)
        hits += int(held[src].sum())
        _value, y, x = t.centre
        assert not held[y * s.shape[1] + x]  # centres are training pixels
    assert hits > 0  # tiles did overlap held-out strokes, and those were masked


def test_flips_and_rotations_keep_image_and_labels_aligned() -> None:
    s = scribbles_two_classes()
    aug = Augment(flips=True, rot90=True, intensity=0.0, elastic=False)
    sampler = make_sampler(s, augment=aug, tile=32)
    rng = np.random.default_rng(2)
    orientations = set()
    for _ in range(200):
        t = sampler.sample(rng)
        src = t.image[0].astype(np.int64)
        np.testing.assert_array_equal(t.labels, s.reshape(-1)[src])
        orientations.add((int(src[0, 1] - src[0, 0]), int(src[1, 0] - src[0, 0])))
    assert len(orientations) == 8  # all 8 symmetries of the square occur


@pytest.mark.parametrize("elastic", [False, True])
def test_context_pixels_surround_the_tile_in_every_orientation(elastic: bool) -> None:
    """With ``context`` the image is ``tile + 2 context`` wide, centred on the labels, and flips and
    rotations move context and tile together (the input filters see what prediction shows them)."""
    s = scribbles_two_classes()
    aug = Augment(flips=True, rot90=True, intensity=0.0, elastic=elastic, elastic_sigma=2.0)
    index = LabelIndex(s, ["a", "b"], chunk_shape=(32, 32))
    sampler = TileSampler(ArraySource(position_image(s.shape)), s, split_strokes(index, 0.0, seed=0), 32, IDENTITY,
                          0.5, aug, context=5)
    rng = np.random.default_rng(4)
    for _ in range(50):
        t = sampler.sample(rng)
        assert t.image.shape == (1, 42, 42) and t.labels.shape == (32, 32)
        src = t.image[0]
        if not elastic:
            np.testing.assert_array_equal(t.labels, s.reshape(-1)[src[5:-5, 5:-5].astype(np.int64)])
            # one pixel further out along either axis is the neighbouring image pixel (row or column step)
            steps = {abs(int(src[4, 20] - src[5, 20])), abs(int(src[20, 4] - src[20, 5]))}
            assert steps == {1, s.shape[1]}
    images, labels, _ = sampler.batch(3, rng)
    assert images.shape == (3, 1, 42, 42) and labels.shape == (3, 32, 32)


def test_elastic_deformation_keeps_labels_on_the_image() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.int64)
    labels[10:30, 10:30] = 2
    labels[36:60, 30:60] = 1
    image = labels.astype(np.float32)[None]
    aug = Augment(flips=False, rot90=False, intensity=0.0, elastic=True, elastic_sigma=4.0)
    moved = 0
    for _ in range(20):
        img, lab, _ = augment_tile(image, labels, None, aug, rng)
        assert set(np.unique(lab).tolist()) <= {0, 1, 2}  # order 0: no invented values
        labelled = lab > 0
        agree = np.abs(img[0][labelled] - lab[labelled]) < 0.5
        assert agree.mean() > 0.95
        moved += int((lab != labels).sum())
    assert moved > 0  # the deformation did something


def test_intensity_jitter_and_weights() -> None:
    s = scribbles_two_classes()
    img = np.ones(s.shape)
    w = np.full(s.shape, 3.0)
    sampler = make_sampler(s, image=img, augment=Augment(flips=False, rot90=False, intensity=0.2), weights=w)
    rng = np.random.default_rng(0)
    vals = []
    for _ in range(50):
        t = sampler.sample(rng)
        assert t.weight is not None
        np.testing.assert_array_equal(t.weight, 3.0)
        assert np.ptp(t.image) < 1e-6  # one gain and offset per channel
        vals.append(float(t.image[0, 0, 0]))
    assert 0.6 <= min(vals) < 0.9 and 1.1 < max(vals) <= 1.4  # 1 * (1 + u) + v with |u|, |v| <= 0.2
    images, labels, weights = sampler.batch(3, rng)
    assert images.shape == (3, 1, 32, 32) and labels.shape == (3, 32, 32)
    assert weights is not None and weights.shape == (3, 32, 32)


def test_tile_size_covers_the_field_of_view() -> None:
    cfg2, cfg3 = ModelConfig(depth=2, width=4), ModelConfig(depth=3, width=4)
    assert field_of_view(2) == 47 and field_of_view(3) == 103
    assert check_tile(None, cfg2) == 64
    assert check_tile(None, cfg3) == 104
    assert check_tile(50, cfg2) == 52  # rounded up to the pooling grid
    with pytest.raises(ScribbleUNetError, match=r"smaller than the field of view.*47 px.*at least 48"):
        check_tile(40, cfg2)


def test_reflection_helper_agrees_with_numpy() -> None:
    # the sampler relies on reflect_index for labels; it must agree with np.pad(mode="reflect")
    idx = reflect_index(np.arange(-20, 30), 7)
    np.testing.assert_array_equal(np.arange(7)[idx], np.pad(np.arange(7), (20, 23), mode="reflect"))
