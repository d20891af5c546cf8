"""Instance labels: regions exact across chunk borders, the watershed split, bounded memory, resume,
the NGFF output and the command line (issue 9)."""

import numpy as np
import pytest
import zarr
from skimage.measure import label

from helpers import make_checkpoint
from scribble_unet.cli import main
from scribble_unet.errors import ScribbleUNetError
from scribble_unet.export.instances import (
    INSTANCES_PATH,
    INSTANCES_PROGRESS,
    instances_to_zarr,
    write_instances,
)
from scribble_unet.inference.instances import SplitOptions, instance_labels, split_region
from scribble_unet.model.checkpoint import save_checkpoint


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def same_up_to_relabelling(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the non-zero labels of ``a`` and ``b`` correspond one to one."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]).astype(np.int64), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def border_mask() -> np.ndarray:
    """64 x 64, meant for 16 px chunks: objects crossing chunk borders in every direction."""
    m = np.zeros((64, 64), np.uint8)
    m[20:44, 22:26] = 1  # vertical bar crossing y = 32 ... and a cross spanning 3 x 3 chunks
    m[30:34, 10:42] = 1
    m[2:6, 12:20] = 1  # horizontal, across x = 16
    m[10:14, 1:3] = 1  # vertical, across y = 16 (with the next line, inside chunk column 0)
    m[14:20, 1:3] = 1
    m[15, 15] = 1  # touches only by a corner across the chunk corner (16, 16)
    m[16, 16] = 1
    m[47, 48] = 2  # corner touch across (48, 48), other class
    m[48, 47] = 2
    # U shape: two arms in chunk row 0 / column 3 joined only at the bottom, three chunks away
    m[0:60, 50:52] = 1
    m[0:60, 60:62] = 1
    m[58:60, 50:62] = 1
    # two classes touching each other: two regions
    m[50:54, 2:10] = 1
    m[50:54, 10:18] = 2
    # diagonal staircase crossing two borders
    for i in range(12):
        m[36 + i, 36 + i] = 1
    return m


def tiled(mask, tile, options=None, threads=1, store=None):
    g = zarr.open_group(store if store is not None else zarr.storage.MemoryStore(), mode="a")
    ny, nx = -(-mask.shape[0] // tile[0]), -(-mask.shape[1] // tile[1])
    if "l" not in g:
        g.create_array("l", shape=mask.shape, chunks=tile, dtype=np.uint32, fill_value=0)
        g.create_array("p", shape=(ny, nx), chunks=(1, 1), dtype=np.uint8, fill_value=0)
        g.create_group("w")
    n = write_instances(mask, g["l"], g["w"], g["p"], options, threads)
    return np.asarray(g["l"][...]), n


@pytest.mark.parametrize("tile", [(16, 16), (7, 9), (32, 16), (64, 64), (5, 64)])
@pytest.mark.parametrize("threads", [1, 2])
def test_regions_equal_whole_image_label(tile, threads) -> None:
    m = border_mask()
    ref = label(m, background=0, connectivity=2)
    got, n = tiled(m, tile, threads=threads)
    assert got.dtype == np.uint32
    assert n == ref.max() == len(np.unique(got)) - 1
    assert same_up_to_relabelling(got, ref)
    # ids are consecutive 1..n
    assert set(np.unique(got)) == set(range(n + 1))


def test_the_u_shape_and_the_big_cross_get_one_id_each() -> None:
    m = border_mask()
    got, _ = tiled(m, (16, 16))
    assert got[0, 50] == got[0, 60] != 0  # the U's arms: joined only through chunk row 3
    assert got[20, 23] == got[31, 11] == got[32, 41] == got[43, 24] != 0  # the cross over 3 x 3 chunks
    assert got[15, 15] == got[16, 16] != 0
    assert got[47, 48] == got[48, 47] != 0
    assert got[51, 9] != got[51, 10]  # two classes touching: two objects


def test_regions_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(4):
        m = (rng.random((53, 71)) < 0.55).astype(np.uint8) * rng.integers(1, 3, (53, 71)).astype(np.uint8)
        ref = label(m, background=0, connectivity=2)
        for tile in [(8, 8), (13, 29)]:
            got, n = tiled(m, tile)
            assert n == ref.max() and same_up_to_relabelling(got, ref)


def test_split_two_touching_discs_and_a_lone_disc() -> None:
    m = np.zeros((60, 90), np.uint8)
    m[disc(m.shape, (20, 20), 10) | disc(m.shape, (20, 40), 10)] = 1  # touching pair
    m[disc(m.shape, (42, 70), 10)] = 1  # alone
    assert label(m, connectivity=2).max() == 2
    lab = instance_labels(m, object_diameter=20)
    assert lab.max() == 3
    assert lab[20, 20] != lab[20, 40] and lab[42, 70] not in (lab[20, 20], lab[20, 40])
    assert instance_labels(m, split=False).max() == 2
    # tiled with chunk borders through both discs of the pair and through the lone disc
    got, n = tiled(m, (16, 16), SplitOptions(20))
    assert n == 3 and same_up_to_relabelling(got, lab)


def test_split_region_is_translation_invariant_and_keeps_a_disc_whole() -> None:
    one = disc((31, 31), (15, 15), 12)
    assert split_region(one, SplitOptions(24)).max() == 1
    pair = disc((30, 60), (15, 15), 12) | disc((30, 60), (15, 40), 12)
    a = split_region(pair, SplitOptions(24))
    b = split_region(np.pad(pair, ((3, 0), (0, 5))), SplitOptions(24))[3:, :-5]
    assert a.max() == 2 and np.array_equal(a, b)


def test_split_tiled_equals_whole_image_on_random_discs() -> None:
    rng = np.random.default_rng(1)
    opts = SplitOptions(16)
    splits = 0
    for _ in range(3):
        m = np.zeros((120, 140), np.uint8)
        for _ in range(20):
            m[disc(m.shape, (rng.integers(0, 120), rng.integers(0, 140)), rng.integers(5, 10))] = rng.integers(1, 3)
        ref = instance_labels(m, options=opts)
        splits += ref.max() - label(m, connectivity=2).max()
        for tile in [(16, 16), (24, 40)]:
            got, n = tiled(m, tile, opts, threads=2)
            assert n == ref.max() and same_up_to_relabelling(got, ref)
    assert splits > 0  # the split did something


def test_regions_larger_than_max_extent_stay_whole() -> None:
    m = np.zeros((40, 100), np.uint8)
    for cx in range(10, 90, 16):  # a row of five touching discs: 80 px wide
        m[disc(m.shape, (20, cx), 8)] = 1
    assert instance_labels(m, options=SplitOptions(16, max_extent=100)).max() == 5
    assert instance_labels(m, options=SplitOptions(16, max_extent=60)).max() == 1
    _, n = tiled(m, (16, 16), SplitOptions(16, max_extent=60))
    assert n == 1


class Recording:
    """An array that records the size of every read and write (and can fail after some writes)."""

    def __init__(self, arr, fail_after=None):
        self.arr, self.reads, self.writes, self.fail_after = arr, [], [], fail_after
        self.shape, self.dtype = arr.shape, arr.dtype
        self.chunks = getattr(arr, "chunks", None)

    def __getitem__(self, key):
        out = np.asarray(self.arr[key])
        self.reads.append(out.size)
        return out

    def __setitem__(self, key, value):
        if self.fail_after is not None and len(self.writes) >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.writes.append(np.asarray(value).size)
        self.arr[key] = value


def test_memory_stays_bounded(tmp_path) -> None:
    """The mask is read in chunk windows only and the labels a chunk at a time, never whole."""
    rng = np.random.default_rng(2)
    shape, tile = (200, 240), (40, 40)
    big = zarr.create_array(store=str(tmp_path / "mask.zarr"), shape=shape, chunks=tile, dtype=np.uint8)
    for _ in range(60):
        big[...] = np.asarray(big[...]) | disc(shape, (rng.integers(0, 200), rng.integers(0, 240)), 7)
    mask = Recording(big)
    g = zarr.open_group(str(tmp_path / "out.zarr"), mode="w")
    lab = Recording(g.create_array("l", shape=shape, chunks=tile, dtype=np.uint32, fill_value=0))
    prog = g.create_array("p", shape=(5, 6), chunks=(1, 1), dtype=np.uint8, fill_value=0)
    opts = SplitOptions(12)  # halo 49
    n = write_instances(mask, lab, g.create_group("w"), prog, opts, threads=1)
    window = (tile[0] + 2 * opts.halo) * (tile[1] + 2 * opts.halo)
    assert max(mask.reads) <= window < shape[0] * shape[1]
    assert len(mask.reads) == 30  # one window per chunk
    assert max(lab.reads) <= tile[0] * tile[1] and max(lab.writes) <= tile[0] * tile[1]
    assert len(lab.reads) == 30  # only the relabelling reads labels back: the merge reads strips
    ref = instance_labels(np.asarray(big[...]), options=opts)
    assert n == ref.max() and same_up_to_relabelling(np.asarray(lab.arr[...]), ref)


@pytest.mark.parametrize("fail_after", [5, 20])  # during the labelling, during the relabelling
def test_interrupted_pass_resumes_to_the_same_result(tmp_path, fail_after) -> None:
    m = border_mask()
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="w")
    arr = g.create_array("l", shape=m.shape, chunks=(16, 16), dtype=np.uint32, fill_value=0)
    prog = g.create_array("p", shape=(4, 4), chunks=(1, 1), dtype=np.uint8, fill_value=0)
    work = g.create_group("w")
    with pytest.raises(KeyboardInterrupt):
        write_instances(m, Recording(arr, fail_after=fail_after), work, prog, None, threads=1)
    assert 0 < np.count_nonzero(np.asarray(prog[...])) < 16 or fail_after > 16
    n = write_instances(m, arr, work, prog, None, threads=1)
    ref = label(m, connectivity=2)
    assert n == ref.max() and same_up_to_relabelling(np.asarray(arr[...]), ref)
    assert (np.asarray(prog[...]) == 2).all()


@pytest.fixture
def prediction(tmp_path, capsys):
    """A finished prediction output whose mask is then replaced by a known one."""
    model = str(save_checkpoint(tmp_path / "m.safetensors", make_checkpoint(depth=2, width=4)))
    image = str(tmp_path / "img.zarr")
    arr = zarr.create_array(store=image, shape=(64, 64), chunks=(32, 32), dtype=np.uint16)
    arr[...] = np.random.default_rng(0).integers(0, 1000, (64, 64))
    out = str(tmp_path / "p.zarr")
    assert main(["predict", "--model", model, "--image", image, "--out", out, "--tile", "16", "--quiet"]) == 0
    capsys.readouterr()
    m = border_mask()
    root = zarr.open_group(out, mode="r+")
    root["labels/mask/0"][...] = m
    return model, image, out, m


def test_instances_to_zarr_writes_an_ngff_label_image(prediction) -> None:
    _, _, out, m = prediction
    res = instances_to_zarr(out, split=False, progress=False)
    root = zarr.open_group(out, mode="r")
    assert root["labels"].attrs["labels"] == ["mask", "instances"]
    group = root[INSTANCES_PATH]
    lab = np.asarray(group["0"][...])
    assert group["0"].dtype == np.uint32 and group["0"].chunks == root["labels/mask/0"].chunks
    assert "image-label" in group.attrs
    paths = [d["path"] for d in group.attrs["multiscales"][0]["datasets"]]
    assert paths == ["0", "1", "2"] and group["2"].shape == (16, 16)
    assert np.array_equal(np.asarray(group["1"][...]), lab[::2, ::2])
    assert res.n_objects == label(m, connectivity=2).max() and same_up_to_relabelling(lab, label(m, connectivity=2))
    assert group.attrs["scribble_unet_instances"]["complete"] is True
    assert INSTANCES_PROGRESS in root and "instances_work" not in root
    # same settings: nothing to do; other settings: done again
    assert instances_to_zarr(out, split=False, progress=False).notes == ["already complete"]
    res2 = instances_to_zarr(out, split=True, object_diameter=8, progress=False)
    assert res2.n_objects >= res.n_objects
    assert zarr.open_group(out, mode="r")["labels"].attrs["labels"] == ["mask", "instances"]


def test_instances_need_a_finished_prediction(prediction) -> None:
    _, _, out, _ = prediction
    root = zarr.open_group(out, mode="r+")
    info = dict(root.attrs["scribble_unet"])
    root.attrs["scribble_unet"] = {**info, "complete": False}
    with pytest.raises(ScribbleUNetError, match="unfinished"):
        instances_to_zarr(out, split=False, progress=False)
    root.attrs["scribble_unet"] = info
    with pytest.raises(ScribbleUNetError, match="object diameter"):
        instances_to_zarr(out, split=True, progress=False)


def test_cli_predict_with_instances(tmp_path, capsys, prediction) -> None:
    model, image, _, _ = prediction
    out = str(tmp_path / "q.zarr")
    code = main(["predict", "--model", model, "--image", image, "--out", out, "--tile", "16", "--quiet",
                 "--instances", "--no-split"])
    err = capsys.readouterr()
    assert code == 0, err.err
    root = zarr.open_group(out, mode="r")
    mask = np.asarray(root["labels/mask/0"][...])
    assert same_up_to_relabelling(np.asarray(root[f"{INSTANCES_PATH}/0"][...]), label(mask, connectivity=2))
    assert "instances at" in err.out
    # with a split, a diameter is needed; the error comes before anything is predicted
    code = main(["predict", "--model", model, "--image", image, "--out", str(tmp_path / "r.zarr"), "--quiet",
                 "--instances"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--object-diameter" in err[0]
    assert not (tmp_path / "r.zarr").exists()
    code = main(["predict", "--model", model, "--image", image, "--out", str(tmp_path / "s.zarr"), "--quiet",
                 "--object-diameter", "10"])
    assert code == 2 and "go with --instances" in capsys.readouterr().err
    code = main(["predict", "--model", model, "--image", image, "--out", out, "--tile", "16", "--quiet",
                 "--instances", "--object-diameter", "12"])
    assert code == 0
    attrs = zarr.open_group(out, mode="r")[INSTANCES_PATH].attrs["scribble_unet_instances"]
    assert attrs["settings"]["object_diameter"] == 12.0 and attrs["complete"] is True
