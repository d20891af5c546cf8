"""Per-pixel uncertainty and the next region to check (issue 9)."""

import dask
import numpy as np
import pytest

from helpers import make_checkpoint
from scribble_unet.inference.predict import ChunkPredictor, predict_lazy
from scribble_unet.inference.uncertainty import (
    most_uncertain_region,
    uncertainty_from_probabilities,
    uncertainty_lazy,
)


def test_one_class_is_the_probability_margin() -> None:
    p = np.array([[0.0, 0.1, 0.5, 0.75, 1.0]], np.float32)
    u = uncertainty_from_probabilities(p)
    assert u.dtype == np.float32 and u.shape == (5,)
    np.testing.assert_allclose(u, [0.0, 0.2, 1.0, 0.5, 0.0], atol=1e-6)


def test_several_classes_is_normalised_entropy_with_background() -> None:
    # K = 2: columns are (class 1, class 2); background = 1 - sum
    p = np.array([[1.0, 0.0, 1 / 3, 0.5, 0.0], [0.0, 0.0, 1 / 3, 0.5, 0.5]])
    u = uncertainty_from_probabilities(p)
    # sure of class 1, sure of background, uniform over 3, two classes half/half, background/class half
    np.testing.assert_allclose(u, [0.0, 0.0, 1.0, np.log(2) / np.log(3), np.log(2) / np.log(3)], atol=1e-6)
    assert (u >= 0).all() and (u <= 1).all()


def test_entropy_ignores_rounding_past_one() -> None:
    u = uncertainty_from_probabilities(np.array([[0.6000001], [0.4000001]]))
    assert np.isfinite(u).all() and 0 <= u[0] <= 1


def test_lazy_uncertainty_keeps_the_chunks_and_one_network_pass(monkeypatch) -> None:
    calls = []
    original = ChunkPredictor.outputs

    def counted(self, iy, ix):
        calls.append((iy, ix))
        return original(self, iy, ix)

    monkeypatch.setattr(ChunkPredictor, "outputs", counted)
    image = np.random.default_rng(0).random((70, 50)).astype(np.float32)
    pred = predict_lazy(make_checkpoint(depth=2, width=4, classes=2), image, tile=32, device="cpu")
    unc = uncertainty_lazy(pred.probabilities)
    assert unc.shape == (70, 50) and unc.chunks == pred.mask.chunks and unc.dtype == np.float32
    # each uncertainty task depends on one probability task only
    graph = dict(unc.__dask_graph__())
    deps = dask.core.get_dependencies(graph, (unc.name, 1, 1))
    assert deps == {(pred.probabilities.name, 0, 1, 1)}
    mask, u = dask.compute(pred.mask, unc, scheduler="synchronous")
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 6  # 3 x 2 chunks, each once
    prob = pred.probabilities.compute(scheduler="synchronous")
    np.testing.assert_allclose(u, uncertainty_from_probabilities(prob), atol=1e-6)
    assert mask.shape == u.shape


def test_lazy_refuses_a_split_class_axis() -> None:
    import dask.array as da

    with pytest.raises(ValueError, match="class axis"):
        uncertainty_lazy(da.zeros((3, 8, 8), chunks=(1, 4, 4)))


def test_most_uncertain_region_finds_the_hot_spot() -> None:
    u = np.zeros((20, 30))
    u[12:16, 20:24] = 0.9
    u[2:4, 2:4] = 0.5
    assert most_uncertain_region(u, None, 4) == (12, 16, 20, 24)
    assert most_uncertain_region(u, None, (2, 6)) == (12, 14, 18, 24)


def test_most_uncertain_region_skips_what_is_painted() -> None:
    u = np.zeros((20, 30))
    u[12:16, 20:24] = 0.9
    u[2:4, 2:4] = 0.5
    painted = np.zeros((20, 30), np.uint8)
    painted[12:16, 20:24] = 2
    assert most_uncertain_region(u, painted, 4) == (0, 4, 0, 4)  # the 2x2 spot, first window in raster order
    painted[2:4, 2:4] = 1
    assert most_uncertain_region(u, painted, 4) is None


def test_most_uncertain_region_edge_cases() -> None:
    u = np.full((5, 7), np.nan)
    u[4, 6] = 0.3
    assert most_uncertain_region(u, None, 100) == (0, 5, 0, 7)  # window clipped to the array
    assert most_uncertain_region(u, None, 1) == (4, 5, 6, 7)  # NaN counts as 0
    with pytest.raises(ValueError, match="shape"):
        most_uncertain_region(u, np.zeros((5, 6)), 2)
    with pytest.raises(ValueError, match="window"):
        most_uncertain_region(u, None, 0)


def test_most_uncertain_region_excludes_regions_proposed_before() -> None:
    # a hard spot stays uncertain after a thin stroke through it: painted pixels alone let it win again
    u = np.zeros((40, 40))
    u[8:16, 8:16] = 0.9
    u[24:30, 26:32] = 0.6
    first = most_uncertain_region(u, None, 8)
    assert first == (8, 16, 8, 16)
    painted = np.zeros(u.shape, bool)
    painted[12, 8:16] = True  # one stroke across it
    assert most_uncertain_region(u, painted, 8) == (8, 16, 8, 16)
    second = most_uncertain_region(u, painted, 8, exclude=[first])
    assert second is not None and second[0] >= 22 and second[2] >= 24  # the other spot
    assert most_uncertain_region(u, painted, 8, exclude=[first, second]) is None  # both spots checked
    assert most_uncertain_region(u, None, 8, exclude=[(0, 40, 0, 40)]) is None
    # boxes partly outside the array are clipped
    assert most_uncertain_region(u, None, 8, exclude=[(-5, 16, -5, 16), (20, 99, 20, 99)]) is None
