"""The scribble simulator: sparse, seeded, object strokes inside objects, background strokes away
from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from scribble_unet.errors import ScribbleUNetError
from scribble_unet.training.simulate import simulate_scribbles

NUCLEI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018_nuclei_512.npz"


def disc_instances(size: int = 128, n: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    inst = np.zeros((size, size), np.uint16)
    for i in range(n):
        y, x = rng.integers(10, size - 10, 2)
        inst[disk((int(y), int(x)), int(rng.integers(4, 9)), shape=inst.shape)] = i + 1
    return inst


def check_strokes(s: np.ndarray, inst: np.ndarray, margin: int) -> None:
    fg = inst > 0
    assert s.dtype == np.uint8 and s.shape == inst.shape
    assert np.all(fg[s >= 2])  # object strokes inside objects
    bg = s == 1
    assert not np.any(fg[bg])
    dist = ndi.distance_transform_edt(~fg)
    assert dist[bg].min() > margin  # a careful user keeps away from the edges
    assert (s == 1).any() and (s >= 2).any()


def test_sparse_seeded_and_in_the_right_places() -> None:
    inst = disc_instances()
    s = simulate_scribbles(inst, seed=0)
    check_strokes(s, inst, margin=3)
    assert (s > 0).mean() <= 0.01
    np.testing.assert_array_equal(s, simulate_scribbles(inst, seed=0))
    assert not np.array_equal(s, simulate_scribbles(inst, seed=1))


def test_round_objects_get_a_line_not_a_dot() -> None:
    inst = np.zeros((40, 40), np.uint16)
    inst[disk((20, 20), 8, shape=inst.shape)] = 1
    s = simulate_scribbles(inst, object_share=1.0, n_background=2, seed=0)
    assert (s == 2).sum() >= 7  # half the diameter (16 px) across the disc


def test_share_of_objects_and_cap() -> None:
    inst = disc_instances(n=20, seed=2)
    n_objects = len(np.unique(inst)) - 1
    s = simulate_scribbles(inst, object_share=0.5, max_fraction=1.0, seed=0)
    touched = len(np.unique(inst[s == 2]))
    assert touched == round(0.5 * n_objects)
    capped = simulate_scribbles(inst, object_share=1.0, n_background=20, max_fraction=0.002, seed=0)
    assert 0 < (capped > 0).sum() <= 0.002 * inst.size


def test_semantic_masks_give_one_value_per_class() -> None:
    inst = disc_instances(n=10)
    classes = np.where(inst > 0, 1 + inst % 3, 0).astype(np.uint8)
    s = simulate_scribbles(classes, semantic=True, object_share=1.0, max_fraction=0.05, seed=0)
    assert set(np.unique(s).tolist()) == {0, 1, 2, 3, 4}
    for c in (1, 2, 3):
        assert np.all(classes[s == c + 1] == c)


@pytest.mark.skipif(not NUCLEI.exists(), reason="shared nuclei data not present")
def test_real_nuclei() -> None:
    inst = np.load(NUCLEI)["instances"]
    s = simulate_scribbles(inst, seed=0)
    check_strokes(s, inst, margin=3)
    assert 0.002 < (s > 0).mean() <= 0.01


def test_bad_masks() -> None:
    with pytest.raises(ScribbleUNetError, match="2D"):
        simulate_scribbles(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ScribbleUNetError, match="integers"):
        simulate_scribbles(np.zeros((3, 3), np.float32))
