"""The procedural sample: deterministic, chunk-independent, per-level, consistent with its truth."""

from __future__ import annotations

import numpy as np
import pytest

from scribble_unet.errors import ScribbleUNetError
from scribble_unet.image.procedural import SIZES, ProceduralSample, SampleSpec, procedural_sample


@pytest.fixture
def sample() -> ProceduralSample:
    return ProceduralSample(SampleSpec(size=3000, seed=3, chunk=512, density=0.3))


def test_deterministic_by_seed(sample: ProceduralSample) -> None:
    again = ProceduralSample(SampleSpec(size=3000, seed=3, chunk=512, density=0.3))
    other = ProceduralSample(SampleSpec(size=3000, seed=4, chunk=512, density=0.3))
    a = sample.render_image(0, 100, 400, 200, 500)
    assert np.array_equal(a, again.render_image(0, 100, 400, 200, 500))
    assert not np.array_equal(a, other.render_image(0, 100, 400, 200, 500))
    assert np.array_equal(sample.render_truth(1, 0, 300, 0, 300), again.render_truth(1, 0, 300, 0, 300))


@pytest.mark.parametrize("level", [0, 1, 2])
def test_window_is_independent_of_the_region_around_it(sample: ProceduralSample, level: int) -> None:
    big_img = sample.render_image(level, 37, 700, 5, 650)
    big_truth = sample.render_truth(level, 37, 700, 5, 650)
    for y0, y1, x0, x1 in [(37, 60, 5, 9), (200, 333, 100, 640), (600, 700, 600, 650)]:
        part = sample.render_image(level, y0, y1, x0, x1)
        assert np.array_equal(part, big_img[y0 - 37 : y1 - 37, x0 - 5 : x1 - 5])
        truth = sample.render_truth(level, y0, y1, x0, x1)
        assert np.array_equal(truth, big_truth[y0 - 37 : y1 - 37, x0 - 5 : x1 - 5])


def test_dask_chunk_alone_equals_region_of_whole_level(sample: ProceduralSample) -> None:
    level = sample.image_levels()[2]  # 750 x 750 in chunks of 512
    whole = level.compute(scheduler="synchronous")
    chunk = level.blocks[1, 1].compute(scheduler="synchronous")
    assert np.array_equal(chunk, whole[512:, 512:])
    truth = sample.truth_levels()[0]
    assert np.array_equal(truth[900:1100, 1000:1300].compute(), sample.render_truth(0, 900, 1100, 1000, 1300))


def test_levels_shapes_and_chunks() -> None:
    s = procedural_sample("large")
    shapes = [lvl.shape for lvl in s.image_levels()]
    assert shapes == [(65536 // 2**k,) * 2 for k in range(7)]
    assert s.image_levels()[0].chunksize == (1024, 1024)
    assert [t.shape for t in s.truth_levels()] == shapes
    assert procedural_sample("small").spec.size == SIZES["small"] == 16384
    odd = ProceduralSample(SampleSpec(size=3000, chunk=512))
    assert [lvl.shape[0] for lvl in odd.image_levels()] == [3000, 1500, 750, 375]


def test_truth_marks_rare_bright_objects(sample: ProceduralSample) -> None:
    img = sample.render_image(0, 0, 1500, 0, 1500).astype(np.float64)
    truth = sample.render_truth(0, 0, 1500, 0, 1500)
    frac = truth.mean()
    assert 0.0005 < frac < 0.05  # present, but rare
    inside, outside = img[truth == 1], img[truth == 0]
    assert inside.mean() > outside.mean() + 5 * outside.std()
    # Eroded object interiors are brighter than nearly all of the background.
    assert np.percentile(inside, 25) > np.percentile(outside, 99.9)


def test_coarser_level_resembles_averaged_finer_level(sample: ProceduralSample) -> None:
    fine = sample.render_image(0, 0, 1024, 0, 1024).astype(np.float64)
    coarse = sample.render_image(1, 0, 512, 0, 512).astype(np.float64)
    # Level 1 has its own pixel noise, so compare after averaging 8 x 8 blocks of level 1.
    pooled = fine.reshape(64, 16, 64, 16).mean(axis=(1, 3))
    coarse8 = coarse.reshape(64, 8, 64, 8).mean(axis=(1, 3))
    assert np.corrcoef(pooled.ravel(), coarse8.ravel())[0, 1] > 0.95
    assert abs(pooled.mean() - coarse8.mean()) < 0.02 * pooled.mean()
    t_fine = sample.render_truth(0, 0, 1024, 0, 1024).astype(np.float64)
    t_coarse = sample.render_truth(1, 0, 512, 0, 512).astype(np.float64)
    assert abs(t_fine.mean() - t_coarse.mean()) < 0.2 * t_fine.mean()


def test_large_sample_is_lazy_and_reads_like_an_image_source() -> None:
    s = procedural_sample("large", seed=1)
    src = s.source()
    assert src.shape_yx == (65536, 65536) and src.n_channels == 1
    win = src.read(40000, 40064, 50000, 50100)
    assert win.shape == (1, 64, 100) and win.dtype == np.uint16
    assert np.array_equal(win[0], s.image_levels()[0][40000:40064, 50000:50100].compute())
    assert [lvl.shape for lvl in src.levels()][-1] == (1, 1024, 1024)


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ScribbleUNetError):
        procedural_sample("huge")
    with pytest.raises(ScribbleUNetError):
        SampleSpec(density=2.0)
    with pytest.raises(ScribbleUNetError):
        SampleSpec(cell=32)
    with pytest.raises(IndexError):
        ProceduralSample(SampleSpec(size=100)).render_image(0, 0, 101, 0, 10)
