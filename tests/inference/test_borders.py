"""Mask borders snapped to image edges: a seeded watershed of limited reach, exact across chunks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from helpers import make_checkpoint
from scribble_unet.inference import borders
from scribble_unet.inference.borders import gradient_magnitude, snap_to_edges
from scribble_unet.inference.predict import predict_array, predict_lazy
from scribble_unet.inference.probabilities import probabilities_to_mask
from scribble_unet.model.checkpoint import Checkpoint


def _blobs(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Bright discs of several sizes on a dark, noisy background, smoothed like a microscope would."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape, np.float32)
    for _ in range(shape[0] * shape[1] // 900):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(4, 12)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0.6, 1.0)
    return ndi.gaussian_filter(img, 1.5) + rng.normal(0, 0.03, shape).astype(np.float32)


def _blurred_probability(img: np.ndarray, sigma: float, shift: float) -> np.ndarray:
    """A 'network' that knows where objects are but not where they end: a fat, soft map."""
    soft = ndi.gaussian_filter(img, sigma)
    return (1 / (1 + np.exp(-(soft - shift) * 25)))[None].astype(np.float32)


def test_unlimited_reach_is_scikit_image_watershed() -> None:
    img = _blobs((160, 200), 0)
    prob = _blurred_probability(img, 4.0, 0.25)
    grad = gradient_magnitude(img[None])
    markers = np.zeros(img.shape, np.int32)
    markers[prob[0] >= borders.CONFIDENT] = 2
    markers[prob[0] <= 1 - borders.CONFIDENT] = 1
    unsure = markers == 0
    assert 0.05 < unsure.mean() < 0.6  # the flood has work to do
    ours = snap_to_edges(prob, grad, reach=10**6)
    theirs = watershed(grad, markers) - 1
    assert np.array_equal(ours, theirs)


def test_snapping_shrinks_a_fat_mask_onto_the_edges() -> None:
    img = _blobs((160, 200), 1)
    truth = ndi.gaussian_filter(img, 0.5) > 0.3
    prob = _blurred_probability(img, 3.0, 0.2)  # fat: its 0.5 contour lies outside the discs
    plain = probabilities_to_mask(prob).astype(bool)
    snapped = snap_to_edges(prob, gradient_magnitude(img[None])).astype(bool)

    def iou(m: np.ndarray) -> float:
        return float((m & truth).sum() / (m | truth).sum())

    assert plain.sum() > 1.2 * truth.sum()
    assert iou(snapped) > iou(plain) + 0.1
    assert abs(snapped.sum() / truth.sum() - 1) < 0.15


def test_a_pixel_depends_only_on_pixels_within_reach() -> None:
    img = _blobs((150, 170), 2)
    prob = _blurred_probability(img, 5.0, 0.2)
    grad = gradient_magnitude(img[None])
    whole = snap_to_edges(prob, grad, reach=12)
    r = 12 + 1
    for y0, y1, x0, x1 in [(40, 80, 50, 90), (0, 30, 0, 40), (120, 150, 130, 170)]:
        wy0, wy1, wx0, wx1 = max(0, y0 - r), min(150, y1 + r), max(0, x0 - r), min(170, x1 + r)
        part = snap_to_edges(prob[:, wy0:wy1, wx0:wx1], grad[wy0:wy1, wx0:wx1], reach=12)
        assert np.array_equal(part[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0], whole[y0:y1, x0:x1])
    # and it does depend on pixels that far: a shorter reach changes the result
    assert not np.array_equal(snap_to_edges(prob, grad, reach=2), whole)


def test_several_classes_and_unreached_pixels_keep_their_most_probable_class() -> None:
    prob = np.zeros((2, 5, 9), np.float32)
    prob[0, :, :2] = 0.95  # confident class 1 on the left
    prob[1, :, 7:] = 0.95  # confident class 2 on the right
    prob[0, :, 2:7] = 0.3
    prob[1, :, 2:7] = 0.45  # unsure middle, class 2 most probable
    grad = np.zeros((5, 9), np.float32)
    grad[:, 3] = 1.0  # an edge one column right of the class 1 region
    out = snap_to_edges(prob, grad)
    assert out[:, :3].tolist() == [[1, 1, 1]] * 5 and (out[:, 4:] == 2).all()
    # column 3, the ridge itself, is reached by both floods at the same level and step: the lower class
    assert (out[:, 3] == 1).all()
    # with a reach of 1 only the columns next to a seed are flooded; the rest keep their argmax (2)
    near = snap_to_edges(prob, grad, reach=1)
    assert near[:, 2].tolist() == [1] * 5 and (near[:, 3:6] == 2).all()
    # nothing confident: the plain most probable class
    flat = np.full((1, 4, 4), 0.6, np.float32)
    assert np.array_equal(snap_to_edges(flat, np.zeros((4, 4), np.float32)), np.ones((4, 4), np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        snap_to_edges(prob, grad[:4])


def _sharp(ckpt: Checkpoint, image: np.ndarray) -> Checkpoint:
    """The same model with its one logit centred and stretched on ``image`` (10th to 90th percentile
    to -4..4): a map with confident regions and unsure ones, like a trained model's."""
    prob, _ = predict_array(ckpt, image, tile=0, device="cpu", snap=False)
    z = np.log(prob[0] / (1 - prob[0]))
    lo, mid, hi = np.percentile(z, [10, 50, 90])
    gain = 8.0 / (hi - lo)
    state = {k: v.clone() for k, v in ckpt.state_dict.items()}
    state["head.weight"] *= gain
    state["head.bias"] = (state["head.bias"] - float(mid)) * gain
    return Checkpoint(ckpt.config, state, ckpt.normalization, {})


@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_snapped_masks_equal_the_whole_image_pass(scale: int) -> None:
    img = _blobs((230, 190), 3)
    base = make_checkpoint(depth=2, width=4)
    base = Checkpoint(base.config.replace(scale=scale), base.state_dict, base.normalization, {})
    ckpt = _sharp(base, img)
    assert ckpt.config.snap_borders  # the default
    prob, whole = predict_array(ckpt, img, tile=0, device="cpu")
    full = np.concatenate([1 - prob.sum(0, keepdims=True), prob]).max(0)
    assert 0.05 < (full < borders.CONFIDENT).mean() < 0.9  # both seeds and unsure pixels
    assert not np.array_equal(whole, probabilities_to_mask(prob))  # snapping changed something
    for tile in (32, 64 * scale):
        pred = predict_lazy(ckpt, img, tile=tile, device="cpu")
        assert np.array_equal(pred.mask.compute(scheduler="synchronous"), whole), tile
    plain = predict_lazy(ckpt, img, tile=32, device="cpu", snap=False)
    assert np.array_equal(plain.mask.compute(scheduler="synchronous"), probabilities_to_mask(prob))
