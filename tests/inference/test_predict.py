"""Lazy prediction, the zarr export, resuming and the distributed path."""

import threading

import dask
import numpy as np
import pytest
import zarr

from helpers import make_checkpoint, whole_image_reference
from scribble_unet.errors import InputImageError, ScribbleUNetError
from scribble_unet.export import to_zarr as export_mod
from scribble_unet.export.to_zarr import predict_to_zarr
from scribble_unet.image import ArraySource
from scribble_unet.inference import borders
from scribble_unet.inference import predict as predict_mod
from scribble_unet.inference.predict import predict_array, predict_lazy


class CountingSource(ArraySource):
    """An image that records every window read from it."""

    def __init__(self, array: np.ndarray) -> None:
        super().__init__(array)
        self.reads: list[tuple[int, int, int, int]] = []
        self._lock = threading.Lock()

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        with self._lock:
            self.reads.append((y0, y1, x0, x1))
        return super().read(y0, y1, x0, x1)


def test_region_of_large_image_computes_only_touched_chunks() -> None:
    # 4096 x 4096 image defined lazily (a zarr array in memory that is never filled)
    big = zarr.create_array(store={}, shape=(4096, 4096), chunks=(256, 256), dtype=np.float32, fill_value=0.5)
    src = CountingSource(big)
    ckpt = make_checkpoint(depth=2, width=4)
    pred = predict_lazy(ckpt, src, tile=256, device="cpu", snap=False)
    assert pred.probabilities.numblocks == (1, 16, 16)
    region = pred.mask[800:1000, 2000:2300].compute()
    assert region.shape == (200, 300)
    # rows 800:1000 lie in chunk row 3; columns 2000:2300 in chunk columns 7 and 8
    assert len(src.reads) == 2
    halo = ckpt.config.halo
    for y0, y1, x0, _x1 in src.reads:
        assert (y0, y1) == (768 - halo, 1024 + halo)
        assert x0 in (7 * 256 - halo, 8 * 256 - halo)
    # snapped borders: the same two chunks, each read with the flood's reach around it
    src.reads.clear()
    pred = predict_lazy(ckpt, src, tile=256, device="cpu", snap=True)
    assert pred.mask[800:1000, 2000:2300].compute().shape == (200, 300)
    assert len(src.reads) == 4  # per chunk: the network's window and the gradient's window
    reach = borders.HALO + halo + ckpt.config.align
    for y0, y1, x0, x1 in src.reads:
        assert 768 - reach <= y0 and y1 <= 1024 + reach
        assert 7 * 256 - reach <= x0 and x1 <= 9 * 256 + reach


def test_graph_has_one_task_per_chunk_and_no_input_dependencies() -> None:
    ckpt = make_checkpoint()
    pred = predict_lazy(ckpt, np.zeros((100, 130), np.float32), tile=32, device="cpu")
    graph = dict(pred.probabilities.__dask_graph__())
    computing = [k for k in graph if k[0].startswith("scribble-unet-outputs-")]
    assert len(computing) == 4 * 5  # one computing task per chunk; the rest pick its parts
    assert all(not dask.core.get_dependencies(graph, k) for k in computing)


def _ome_read(path: str):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(path))())
    return nodes[0]


def test_export_layout_and_equality_with_lazy_prediction(tmp_path) -> None:
    ckpt = make_checkpoint(depth=2, width=4, classes=2)
    img = np.random.default_rng(1).normal(size=(150, 97)).astype(np.float32)
    out = str(tmp_path / "pred.zarr")
    res = predict_to_zarr(ckpt, img, out, tile=64, probabilities=True, progress=False, device="cpu")
    assert (res.n_chunks, res.computed, res.skipped) == (6, 6, 0)
    root = zarr.open_group(out, mode="r")
    assert root.attrs["scribble_unet"]["complete"] is True
    prob, mask = predict_array(ckpt, img, device="cpu")
    assert np.array_equal(root["labels/mask/0"][...], mask)
    assert np.abs(root["probabilities/0"][...] - prob).max() <= 1e-5
    ref = whole_image_reference(ckpt, img[None])
    assert np.abs(root["probabilities/0"][...] - ref).max() <= 1e-5
    # the label image is OME-Zarr: multiscales with a pyramid and image-label with class names
    attrs = root["labels/mask"].attrs
    assert [d["path"] for d in attrs["multiscales"][0]["datasets"]] == ["0", "1", "2"]
    assert root["labels/mask/1"].shape == (75, 49)
    assert np.array_equal(root["labels/mask/1"][...], mask[::2, ::2])
    names = {p["label-value"]: p["class"] for p in attrs["image-label"]["properties"]}
    assert names == {0: "background", 1: "class1", 2: "class2"}
    node = _ome_read(out + "/labels/mask")
    assert node.load(__import__("ome_zarr.reader", fromlist=["Label"]).Label)
    assert node.data[0].shape == (150, 97)


def test_interrupted_run_resumes_without_recomputing(tmp_path, monkeypatch) -> None:
    ckpt = make_checkpoint(depth=2, width=4)
    img = np.random.default_rng(2).random((200, 200)).astype(np.float32)
    out = str(tmp_path / "p.zarr")
    calls: list[tuple[int, int]] = []
    real = predict_mod.ChunkPredictor.outputs

    def crashing(self, iy, ix):
        if len(calls) == 5:
            raise RuntimeError("simulated crash")
        calls.append((iy, ix))
        return real(self, iy, ix)

    monkeypatch.setattr(predict_mod.ChunkPredictor, "outputs", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        predict_to_zarr(ckpt, img, out, tile=64, progress=False, device="cpu")
    root = zarr.open_group(out, mode="r")
    assert root.attrs["scribble_unet"]["complete"] is False  # never looks finished
    assert int(root["progress"][...].sum()) == 5
    first = list(calls)
    calls.clear()
    monkeypatch.setattr(predict_mod.ChunkPredictor, "outputs", lambda self, iy, ix: (calls.append((iy, ix)), real(self, iy, ix))[1])
    res = predict_to_zarr(ckpt, img, out, tile=64, progress=False, device="cpu")
    assert res.skipped == 5 and res.computed == 11
    assert not set(first) & set(calls)
    assert zarr.open_group(out, mode="r").attrs["scribble_unet"]["complete"] is True
    assert np.array_equal(zarr.open_group(out, mode="r")["labels/mask/0"][...], predict_array(ckpt, img, device="cpu")[1])


def test_chunk_flag_written_after_data(tmp_path, monkeypatch) -> None:
    """A crash between the data write and the flag leaves the chunk undone (it is redone)."""
    ckpt = make_checkpoint()
    img = np.zeros((64, 64), np.float32)
    out = str(tmp_path / "p.zarr")

    def boom(self, iy, ix):
        raise OSError("disk full")

    monkeypatch.setattr(predict_mod.ChunkPredictor, "outputs", boom)
    with pytest.raises(ScribbleUNetError, match="disk full; finished chunks are kept"):
        predict_to_zarr(ckpt, img, out, tile=32, progress=False, device="cpu")
    assert int(zarr.open_group(out, mode="r")["progress"][...].sum()) == 0


def test_cancel_keeps_finished_chunks(tmp_path) -> None:
    ckpt = make_checkpoint()
    img = np.zeros((128, 128), np.float32)
    out = str(tmp_path / "p.zarr")
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 3:
            cancel.set()

    res = predict_to_zarr(ckpt, img, out, tile=32, progress=progress, cancel=cancel, device="cpu")
    assert "cancelled" in res.notes
    root = zarr.open_group(out, mode="r")
    assert root.attrs["scribble_unet"]["complete"] is False
    n = int(root["progress"][...].sum())
    assert 3 <= n < 16
    res2 = predict_to_zarr(ckpt, img, out, tile=32, progress=False, device="cpu")
    assert res2.skipped == n and res2.computed == 16 - n


def test_existing_output_from_another_model_is_refused(tmp_path) -> None:
    img = np.zeros((40, 40), np.float32)
    out = str(tmp_path / "p.zarr")
    predict_to_zarr(make_checkpoint(seed=0), img, out, tile=32, progress=False, device="cpu")
    with pytest.raises(ScribbleUNetError, match="another model_token"):
        predict_to_zarr(make_checkpoint(seed=5), img, out, tile=32, progress=False, device="cpu")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not ours")
    with pytest.raises(ScribbleUNetError, match="not a scribble-unet output"):
        predict_to_zarr(make_checkpoint(), img, str(tmp_path / "other"), tile=32, progress=False, device="cpu")
    res = predict_to_zarr(make_checkpoint(seed=5), img, out, tile=32, progress=False, device="cpu", overwrite=True)
    assert res.computed == 4


def test_nan_pixels_refused_or_zeroed(tmp_path) -> None:
    ckpt = make_checkpoint()
    img = np.ones((50, 50), np.float32)
    img[40, 45] = np.nan
    with pytest.raises(InputImageError, match=r"NaN/inf pixels \(one at y=40, x=45\)"):
        predict_array(ckpt, img, tile=32, device="cpu")
    prob, _ = predict_array(ckpt, img, tile=32, device="cpu", nan_policy="zero")
    assert np.isfinite(prob).all()


def test_channel_mismatch_is_refused() -> None:
    ckpt = make_checkpoint(channels=2)
    with pytest.raises(InputImageError, match="image has 1 channel"):
        predict_lazy(ckpt, np.zeros((30, 30), np.float32))


def test_distributed_local_cluster_gives_identical_output(tmp_path) -> None:
    pytest.importorskip("distributed")
    ckpt = make_checkpoint(depth=2, width=4)
    img = np.random.default_rng(3).random((96, 130)).astype(np.float32)
    a, b = str(tmp_path / "local.zarr"), str(tmp_path / "dist.zarr")
    predict_to_zarr(ckpt, img, a, tile=32, probabilities=True, progress=False, device="cpu")
    predict_to_zarr(ckpt, img, b, tile=32, probabilities=True, progress=False, device="cpu", workers=2)
    ra, rb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    assert rb.attrs["scribble_unet"]["complete"] is True
    assert np.array_equal(ra["labels/mask/0"][...], rb["labels/mask/0"][...])
    # the same numbers up to float32 summation order (workers use fewer torch threads per chunk)
    assert np.abs(ra["probabilities/0"][...] - rb["probabilities/0"][...]).max() <= 1e-6


def test_existing_scheduler_address_gives_identical_mask(tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    ckpt = make_checkpoint(depth=2, width=4)
    img = np.random.default_rng(4).random((70, 64)).astype(np.float32)
    a, b = str(tmp_path / "local.zarr"), str(tmp_path / "remote.zarr")
    predict_to_zarr(ckpt, img, a, tile=32, progress=False, device="cpu")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = predict_to_zarr(ckpt, img, b, tile=32, progress=False, device="cpu", scheduler=cluster.scheduler_address)
    assert res.computed == 6
    assert np.array_equal(zarr.open_group(a, mode="r")["labels/mask/0"][...], zarr.open_group(b, mode="r")["labels/mask/0"][...])


def test_unreachable_scheduler_is_one_line_error(tmp_path) -> None:
    pytest.importorskip("distributed")
    with pytest.raises(ScribbleUNetError, match="cannot reach the dask scheduler"):
        predict_to_zarr(make_checkpoint(), np.zeros((32, 32), np.float32), str(tmp_path / "o.zarr"), tile=32,
                        progress=False, scheduler="tcp://127.0.0.1:9")


def test_overwrite_never_deletes_foreign_data_or_the_input(tmp_path) -> None:
    ckpt = make_checkpoint()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(ScribbleUNetError, match="not a scribble-unet output"):
        predict_to_zarr(ckpt, np.zeros((32, 32), np.float32), str(precious), tile=32, progress=False, overwrite=True)
    assert (precious / "thesis.txt").read_text() == "years of work"
    img_path = str(tmp_path / "img.zarr")
    zarr.create_array(store=img_path, shape=(40, 40), chunks=(20, 20), dtype=np.float32)[...] = 1.0
    for out in (img_path, img_path + "/pred.zarr"):
        with pytest.raises(ScribbleUNetError, match="overlaps the input image"):
            predict_to_zarr(ckpt, img_path, out, tile=32, progress=False, overwrite=True)
    assert float(zarr.open_array(img_path, mode="r")[...].mean()) == 1.0


def test_resume_refuses_another_image_of_the_same_shape(tmp_path) -> None:
    ckpt = make_checkpoint()
    out = str(tmp_path / "p.zarr")
    predict_to_zarr(ckpt, np.zeros((50, 50), np.float32), out, tile=32, progress=False)
    with pytest.raises(ScribbleUNetError, match="another image"):
        predict_to_zarr(ckpt, np.ones((50, 50), np.float32), out, tile=32, progress=False)


def test_half_created_output_is_created_again(tmp_path) -> None:
    ckpt = make_checkpoint()
    img = np.zeros((40, 40), np.float32)
    out = str(tmp_path / "p.zarr")
    predict_to_zarr(ckpt, img, out, tile=32, progress=False)
    import shutil

    shutil.rmtree(tmp_path / "p.zarr" / "progress")  # as if the process died while creating it
    # the marker (written first) says it is ours and made for this run: it is created again
    res = predict_to_zarr(ckpt, img, out, tile=32, progress=False)
    assert res.computed == res.n_chunks and any("created again" in n for n in res.notes)


def test_finished_output_is_not_rewritten(tmp_path, monkeypatch) -> None:
    ckpt = make_checkpoint()
    img = np.random.default_rng(0).random((80, 80)).astype(np.float32)
    out = str(tmp_path / "p.zarr")
    predict_to_zarr(ckpt, img, out, tile=32, progress=False)
    monkeypatch.setattr(export_mod, "_build_mask_pyramid", lambda *a: (_ for _ in ()).throw(AssertionError("rebuilt")))
    res = predict_to_zarr(ckpt, img, out, tile=32, progress=False)
    assert res.computed == 0 and "already complete" in res.notes


def test_oversized_tile_keeps_zarr_chunks_within_the_image(tmp_path) -> None:
    ckpt = make_checkpoint()
    out = str(tmp_path / "p.zarr")
    predict_to_zarr(ckpt, np.zeros((20, 300), np.float32), out, tile=0, probabilities=True, progress=False)
    root = zarr.open_group(out, mode="r")
    assert root["labels/mask/0"].chunks == (20, 300)
    assert root["probabilities/0"].chunks == (1, 20, 300)


def test_bad_scheduler_address_is_one_line_error(tmp_path) -> None:
    pytest.importorskip("distributed")
    with pytest.raises(ScribbleUNetError, match="cannot reach the dask scheduler"):
        predict_to_zarr(make_checkpoint(), np.zeros((32, 32), np.float32), str(tmp_path / "o.zarr"), tile=32,
                        progress=False, scheduler="foo://bar:1")
    assert not (tmp_path / "o.zarr").exists()
