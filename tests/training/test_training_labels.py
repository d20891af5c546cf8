"""The label index (per-chunk, incremental) and the stroke-wise validation split."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zarr
from skimage.measure import label as cc_label

from scribble_unet.errors import ScribbleUNetError
from scribble_unet.training.labels import LabelIndex, split_strokes, stroke_components


class CountingArray:
    """A read-only array view that records every window read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.windows: list[tuple[int, int, int, int]] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        ys, xs = key
        self.windows.append((ys.start, ys.stop, xs.start, xs.stop))
        return self.array[key]


def random_scribbles(shape: tuple[int, int], n_values: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = np.zeros(shape, np.uint8)
    mask = rng.random(shape) < density
    s[mask] = rng.integers(1, n_values + 1, size=int(mask.sum()))
    return s


def assert_same_index(a: LabelIndex, b: LabelIndex) -> None:
    assert a.counts == b.counts
    for v in set(a.counts) | set(b.counts):
        np.testing.assert_array_equal(a.flat(v), b.flat(v))
    ny, nx = a.n_chunks
    for c in [(iy, ix) for iy in range(ny) for ix in range(nx)]:
        ea, eb = a.chunk_entry(c), b.chunk_entry(c)
        assert ea.keys() == eb.keys()
        for v in ea:
            np.testing.assert_array_equal(ea[v], eb[v])


def test_counts_and_positions_match_the_array() -> None:
    s = random_scribbles((70, 90), 3, 0.05, seed=1)
    index = LabelIndex(s, ["a", "b"], chunk_shape=(16, 32))
    values, counts = np.unique(s[s > 0], return_counts=True)
    assert index.counts == dict(zip(values.tolist(), counts.tolist(), strict=True))
    for v in values:
        np.testing.assert_array_equal(index.flat(int(v)), np.flatnonzero(s == v))
        coords = index.coords(int(v))
        assert np.all(s[coords[:, 0], coords[:, 1]] == v)
    assert index.n_labelled == int((s > 0).sum())


def test_build_reads_each_chunk_once_and_empty_chunks_cost_one_read() -> None:
    s = np.zeros((64, 64), np.uint8)
    s[3, 5] = 1
    arr = CountingArray(s)
    index = LabelIndex(arr, ["obj"], chunk_shape=(16, 16))
    assert index.reads == 16 and len(arr.windows) == 16
    assert len(set(arr.windows)) == 16  # each chunk exactly once
    assert all((w[1] - w[0], w[3] - w[2]) == (16, 16) for w in arr.windows)  # never the whole array
    assert [c for c in [(i, j) for i in range(4) for j in range(4)] if index.chunk_entry(c)] == [(0, 0)]


def test_update_rereads_only_changed_chunks() -> None:
    s = random_scribbles((64, 64), 2, 0.02, seed=2)
    arr = CountingArray(s)
    index = LabelIndex(arr, ["obj"], chunk_shape=(16, 16))
    arr.windows.clear()
    s[20:23, 30:34] = 2  # inside chunk (1, 1) and (1, 2)
    read = index.update(region=(20, 23, 30, 34))
    assert sorted(read) == [(1, 1), (1, 2)]
    assert sorted(arr.windows) == [(16, 32, 16, 32), (16, 32, 32, 48)]
    arr.windows.clear()
    index.update(chunks=[(3, 3)])
    assert arr.windows == [(48, 64, 48, 64)]
    assert_same_index(index, LabelIndex(s, ["obj"], chunk_shape=(16, 16)))


def test_incremental_updates_equal_a_full_rebuild() -> None:
    rng = np.random.default_rng(3)
    s = random_scribbles((80, 100), 3, 0.01, seed=3)
    index = LabelIndex(s, ["a", "b"], chunk_shape=(16, 24))
    for _ in range(30):
        y0, x0 = int(rng.integers(0, 75)), int(rng.integers(0, 95))
        y1, x1 = y0 + int(rng.integers(1, 12)), x0 + int(rng.integers(1, 12))
        s[y0:y1, x0:x1] = int(rng.integers(0, 4))  # paint or erase (value 0)
        index.update(region=(y0, y1, x0, x1))
        assert_same_index(index, LabelIndex(s, ["a", "b"], chunk_shape=(16, 24)))


def test_zarr_array_uses_its_chunks(tmp_path: Any) -> None:
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=(50, 40), chunks=(16, 16), dtype="uint16")
    data = random_scribbles((50, 40), 2, 0.05, seed=4).astype(np.uint16)
    z[:] = data
    index = LabelIndex(z, ["obj"])
    assert index.chunk_shape == (16, 16) and index.n_chunks == (4, 3)
    assert index.reads == 12
    assert_same_index(index, LabelIndex(data, ["obj"], chunk_shape=(16, 16)))
    z[40:42, 0:3] = 2
    index.update(region=(40, 42, 0, 3))
    assert index.reads == 13
    assert index.counts[2] == int((z[:] == 2).sum())


def test_sample_is_uniform_over_the_pixels_of_a_value() -> None:
    s = np.zeros((40, 40), np.uint8)
    # chunk (0, 0) holds three pixels of value 2, chunk (1, 1) one: uniform means 3:1 by chunk
    s[1, 1] = s[2, 3] = s[5, 6] = 2
    s[30, 30] = 2
    s[10, 10] = 1
    index = LabelIndex(s, ["obj"], chunk_shape=(20, 20))
    rng = np.random.default_rng(0)
    draws = [index.sample(2, rng) for _ in range(4000)]
    assert all(s[y, x] == 2 for y, x in draws)
    frac = np.mean([y == 30 for y, _ in draws])
    assert abs(frac - 0.25) < 0.03
    assert index.sample(1, rng) == (10, 10)
    with pytest.raises(ScribbleUNetError, match="no pixel is labelled 3"):
        index.sample(3, rng)


def test_values_beyond_declared_classes_are_refused() -> None:
    s = np.zeros((20, 20), np.uint8)
    s[2, 2] = 1
    s[3, 3] = 4
    with pytest.raises(ScribbleUNetError, match=r"label value 4.*0 unlabelled, 1 background, 2 nucleus, 3 cell"):
        LabelIndex(s, ["nucleus", "cell"])
    ok = np.zeros((20, 20), np.uint8)
    ok[2, 2] = 1
    index = LabelIndex(ok, ["nucleus"], chunk_shape=(10, 10))
    ok[15, 15] = 3
    with pytest.raises(ScribbleUNetError, match="label value 3"):
        index.update(region=(15, 16, 15, 16))
    assert index.counts == {1: 1}  # a failed update leaves the index as it was


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((4, 4), np.float32), "integer label values"),
        (np.zeros((2, 4, 4), np.uint8), "2D array"),
        (np.full((4, 4), -1, np.int16), "negative label value -1"),
    ],
)
def test_bad_scribble_arrays(array: np.ndarray, match: str) -> None:
    with pytest.raises(ScribbleUNetError, match=match):
        LabelIndex(array, ["obj"])


def test_stroke_components_match_skimage() -> None:
    rng = np.random.default_rng(5)
    mask = rng.random((60, 50)) < 0.2
    flat = np.flatnonzero(mask)
    n, comp = stroke_components(flat, mask.shape)
    ref = cc_label(mask, connectivity=2)
    assert n == ref.max()
    ref_ids = ref.reshape(-1)[flat]
    # same partition: a one-to-one map between our ids and skimage's
    pairs = set(zip(comp.tolist(), ref_ids.tolist(), strict=True))
    assert len(pairs) == n
    # edges never wrap around rows
    row_end = np.array([9, 10])  # (0, 9) and (1, 0) are not neighbours in a 10-wide image
    assert stroke_components(row_end, (5, 10))[0] == 2


def strokes_image() -> np.ndarray:
    """Ten background strokes and seven object strokes, plus one lone class-2 stroke."""
    s = np.zeros((64, 96), np.uint8)
    for i in range(10):
        s[2 + 6 * i, 2:20] = 1
    for i in range(7):
        s[4 + 8 * i : 8 + 8 * i, 40 + 5 * i] = 2
    s[60, 80:90] = 3
    return s


def test_split_holds_out_whole_strokes() -> None:
    s = strokes_image()
    index = LabelIndex(s, ["a", "b"], chunk_shape=(16, 16))
    split = split_strokes(index, 0.3, seed=0)
    assert split.n_strokes == {1: 10, 2: 7, 3: 1}
    assert split.n_val_strokes == {1: 3, 2: 2, 3: 0}  # round(0.3 n); the lone stroke stays for training
    ref = cc_label(s > 0, connectivity=2)
    for v in (1, 2, 3):
        val_ids = set(ref.reshape(-1)[split.val[v]].tolist())
        train_ids = set(ref.reshape(-1)[split.train[v]].tolist())
        assert not val_ids & train_ids  # no stroke is cut in two
        n_pixels = {i: int((ref == i).sum()) for i in val_ids}
        assert sum(n_pixels.values()) == len(split.val[v])  # whole strokes held out
        assert len(split.train[v]) + len(split.val[v]) == index.counts[v]
    # seeded: same seed same split, another seed another
    again = split_strokes(index, 0.3, seed=0)
    np.testing.assert_array_equal(again.val_all, split.val_all)
    other = split_strokes(index, 0.3, seed=1)
    assert not np.array_equal(other.val_all, split.val_all)
    none = split_strokes(index, 0.0)
    assert len(none.val_all) == 0 and none.train_counts == index.counts


def test_new_stroke_moves_at_most_one_existing_stroke() -> None:
    s = strokes_image()
    index = LabelIndex(s, ["a", "b"], chunk_shape=(16, 16))
    before = split_strokes(index, 0.3, seed=0)
    s[62, 2:20] = 1  # an 11th background stroke: round(3.3) = 3 held out still
    index.update(region=(62, 63, 2, 20))
    after = split_strokes(index, 0.3, seed=0)
    old = np.flatnonzero(strokes_image() == 1)
    moved = np.isin(old, before.val[1]) != np.isin(old, after.val[1])
    ref = cc_label(strokes_image() == 1, connectivity=2).reshape(-1)[old]
    assert len(set(ref[moved].tolist())) <= 1


def test_held_out_in_window() -> None:
    s = strokes_image()
    index = LabelIndex(s, ["a", "b"])
    split = split_strokes(index, 0.3, seed=0)
    ys, xs = split.held_out_in(0, 64, 0, 96)
    assert len(ys) == len(split.val_all)
    ys, xs = split.held_out_in(10, 30, 5, 45)
    expected = [(y, x) for y, x in zip(split.val_all // 96, split.val_all % 96, strict=True)
                if 10 <= y < 30 and 5 <= x < 45]
    assert 0 < len(expected) < len(split.val_all)
    assert sorted(zip(ys.tolist(), xs.tolist(), strict=True)) == sorted(expected)
