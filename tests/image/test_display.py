"""The display pyramid: its levels are the strided pyramid, each image chunk is read once."""

from __future__ import annotations

import dask.array as da
import numpy as np

from scribble_unet.image.display import DisplayPyramid


def _image() -> tuple[np.ndarray, da.Array]:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 60000, (1500, 1250), dtype=np.uint16)
    return a, da.from_array(a, chunks=(350, 300))  # chunks that do not fall on the levels' grid


def test_levels_equal_the_strided_pyramid_read_on_demand() -> None:
    a, image = _image()
    pyramid = DisplayPyramid(image, min_side=150, max_held_px=400 * 400)
    levels = pyramid.levels()
    assert [lvl.shape for lvl in levels] == [a[::f, ::f].shape for f in (1, 2, 4, 8)]
    assert sorted(pyramid.held) == [4, 8]  # level 1 (750 x 625) is over the budget: a lazy view
    for f, lvl in zip((1, 2, 4, 8), levels, strict=True):
        assert np.array_equal(np.asarray(lvl), a[::f, ::f])
    assert levels[2][37, 11] == a[37 * 4, 11 * 4]
    assert np.array_equal(levels[3][5:40:3, 7], a[::8, ::8][5:40:3, 7])
    reads = pyramid.reads
    assert reads == 5 * 5  # every chunk once, whatever was asked
    np.asarray(levels[3])
    assert pyramid.reads == reads


def test_a_background_pass_fills_every_level_and_reads_each_chunk_once() -> None:
    a, image = _image()
    pyramid = DisplayPyramid(image, min_side=150)
    levels = pyramid.levels()
    list(pyramid.run(every_s=0.0))
    assert pyramid.background and pyramid.done.is_set() and pyramid.reads == 25
    for f, lvl in zip((2, 4, 8), levels[1:], strict=True):
        assert np.array_equal(np.asarray(lvl), a[::f, ::f])
    assert (pyramid.low, pyramid.high) == (float(a.min()), float(a.max()))
    lo, hi = pyramid.estimate_range()
    centre = a[700:1050, 600:900]
    assert (lo, hi) == (float(centre.min()), float(centre.max()))


def test_while_the_pass_runs_unfilled_blocks_read_as_zeros_and_it_can_be_stopped() -> None:
    _, image = _image()
    pyramid = DisplayPyramid(image, min_side=150)
    pyramid.background = True
    assert not np.asarray(pyramid.levels()[-1]).any() and pyramid.reads == 0
    pyramid.stop()
    assert list(pyramid.run()) == [] and not pyramid.done.is_set()
