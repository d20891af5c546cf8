"""Lazy image readers (zarr, OME-Zarr, TIFF) and TIFF -> OME-Zarr conversion.

Every image here is tiny and written to ``tmp_path``; the truth is the numpy array it was made from.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import zarr

from scribble_unet.errors import InputImageError, ScribbleUNetError
from scribble_unet.image import ArraySource, ImageSource, open_image
from scribble_unet.image.convert import convert_to_ome_zarr, downsample2, pyramid_shapes

RNG = np.random.default_rng(0)
WINDOWS = [(0, 10, 0, 10), (7, 61, 13, 90), (0, 70, 0, 95), (69, 70, 94, 95), (5, 5, 3, 9)]


def _cyx(a: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """Truth as (C, Y, X)."""
    return a[None] if channel_axis is None else np.moveaxis(a, channel_axis, 0)


def _check_windows(src: ImageSource, truth_cyx: np.ndarray) -> None:
    assert (src.n_channels, *src.shape_yx) == truth_cyx.shape
    assert src.dtype == truth_cyx.dtype
    h, w = src.shape_yx
    for y0, y1, x0, x1 in [*WINDOWS, (0, h, 0, w)]:
        y0, x0 = min(y0, h), min(x0, w)
        y1, x1 = min(max(y1, y0), h), min(max(x1, x0), w)
        got = src.read(y0, y1, x0, x1)
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, truth_cyx[:, y0:y1, x0:x1])
    np.testing.assert_array_equal(src.to_dask().compute(), truth_cyx)


def _check_pickle(src: ImageSource, truth_cyx: np.ndarray) -> None:
    """A source and its dask array survive pickling (as dask.distributed does) and read the same."""
    again = pickle.loads(pickle.dumps(src))
    assert type(again) is type(src)
    np.testing.assert_array_equal(again.read(3, 40, 5, 60), truth_cyx[:, 3:40, 5:60])
    lazy = pickle.loads(pickle.dumps(src.to_dask()[:, 10:30, 20:50]))
    np.testing.assert_array_equal(lazy.compute(), truth_cyx[:, 10:30, 20:50])


def _write_zarr(path: Path, a: np.ndarray, fmt: int, chunks: tuple[int, ...], **kw: Any) -> Path:
    arr = zarr.create_array(
        store=str(path), shape=a.shape, chunks=chunks, dtype=a.dtype, zarr_format=fmt, **kw
    )  # type: ignore[arg-type]
    arr[...] = a
    return path


def _ome_group(
    path: Path, version: str, axes: list[dict[str, str]], levels: list[np.ndarray]
) -> Path:
    """A hand-made OME-Zarr image: NGFF 0.4 on zarr v2 (top-level attrs) or 0.5 on v3 (under "ome")."""
    fmt = 2 if version == "0.4" else 3
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    datasets = []
    for i, data in enumerate(levels):
        arr = group.create_array(
            f"s{i}", shape=data.shape, chunks=(1,) * (data.ndim - 2) + (32, 32), dtype=data.dtype
        )
        arr[...] = data
        scale = [1.0] * (data.ndim - 2) + [2.0**i, 2.0**i]
        datasets.append(
            {"path": f"s{i}", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    ms = [{"version": version, "name": "hand", "axes": axes, "datasets": datasets}]
    if version == "0.4":
        group.attrs["multiscales"] = ms
    else:
        ms[0].pop("version")
        group.attrs["ome"] = {"version": "0.5", "multiscales": ms}
    return path


AX = {
    "t": {"name": "t", "type": "time"},
    "c": {"name": "c", "type": "channel"},
    "z": {"name": "z", "type": "space"},
    "y": {"name": "y", "type": "space"},
    "x": {"name": "x", "type": "space"},
}


# ----------------------------------------------------------------------------------------- zarr


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize(
    ("shape", "channel_axis", "given"),
    [
        ((70, 95), None, False),
        ((70, 95, 3), 2, False),
        ((2, 70, 95), 0, False),
        ((70, 4, 95), 1, True),
    ],
)
def test_zarr_array_windows(
    tmp_path: Path, fmt: int, shape: tuple[int, ...], channel_axis: int | None, given: bool
) -> None:
    a = RNG.integers(0, 60000, shape).astype(np.uint16)
    chunks = tuple(min(s, 32) for s in shape)
    path = _write_zarr(tmp_path / "img.zarr", a, fmt, chunks)
    src = open_image(path, channel_axis=channel_axis if given else None)
    truth = _cyx(a, channel_axis)
    _check_windows(src, truth)
    _check_pickle(src, truth)
    assert src.name == "img"
    assert src.chunks_yx == (32, 32)
    assert src.to_dask().chunks[1:] == ((32, 32, 6), (32, 32, 31))  # the storage's own chunks
    assert src.to_dask().chunks[0] == (truth.shape[0],)  # all channels in one chunk
    assert len(src.levels()) == 1


def test_zarr_dimension_names_give_channel_axis(tmp_path: Path) -> None:
    # Every axis is <= 16 long, so the shape alone is ambiguous; the v3 dimension names decide.
    a = RNG.random((12, 10, 3)).astype(np.float32)
    path = _write_zarr(tmp_path / "named.zarr", a, 3, (12, 10, 3), dimension_names=("y", "x", "c"))
    src = open_image(path)
    _check_windows(src, np.moveaxis(a, 2, 0))
    with pytest.raises(InputImageError, match=r"cannot tell which axis .* channel"):
        open_image(_write_zarr(tmp_path / "plain.zarr", a, 3, (12, 10, 3)))


def test_zarr_group_with_one_array(tmp_path: Path) -> None:
    a = RNG.integers(0, 255, (40, 50), dtype=np.uint8)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("data", shape=a.shape, dtype=a.dtype, chunks=(16, 16))[...] = a
    src = open_image(tmp_path / "g.zarr")
    _check_windows(src, a[None])
    group.create_array("other", shape=a.shape, dtype=a.dtype)
    with pytest.raises(InputImageError, match=r"zarr group with 2 arrays \(data, other\)"):
        open_image(tmp_path / "g.zarr")


def test_window_read_touches_only_its_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 20000 x 20000 array (800 MB if read whole) with 512-px chunks, two of them ever written."""
    path = tmp_path / "big.zarr"
    big = zarr.create_array(
        store=str(path), shape=(20000, 20000), chunks=(512, 512), dtype="uint16", fill_value=0
    )
    big[1024:1536, 1024:1536] = 7  # chunk (2, 2), inside the window below
    big[10240:10752, 0:512] = 9  # chunk (20, 0), far away
    chunk_reads: list[str] = []
    original = zarr.storage.LocalStore.get

    async def counting_get(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.startswith("c/"):  # v3 chunk keys; metadata reads are not counted
            chunk_reads.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counting_get)
    src = open_image(path)
    # Rows 1000:1100 lie in chunk rows 1-2, columns 1000:1600 in chunk columns 1-3: 6 chunks.
    window = src.read(1000, 1100, 1000, 1600)
    expected = np.zeros((1, 100, 600), np.uint16)
    expected[:, 24:, 24:536] = 7
    np.testing.assert_array_equal(window, expected)
    touched = {f"c/{r}/{c}" for r in (1, 2) for c in (1, 2, 3)}
    assert set(chunk_reads) == touched
    assert len(chunk_reads) == 6
    chunk_reads.clear()
    lazy = src.to_dask()[:, 1000:1100, 1000:1600].compute()
    np.testing.assert_array_equal(lazy, expected)
    assert set(chunk_reads) == touched


# ------------------------------------------------------------------------------------- OME-Zarr


def test_ome_zarr_from_convert(tmp_path: Path) -> None:
    a = RNG.integers(0, 4000, (2, 70, 95), dtype=np.uint16)
    tif = tmp_path / "cells.ome.tif"
    tifffile.imwrite(tif, a, metadata={"axes": "CYX"}, tile=(32, 32), compression="zlib")
    out = convert_to_ome_zarr(tif, tmp_path / "cells.ome.zarr", chunk=32, progress=False)
    src = open_image(out)
    assert type(src).__name__ == "OmeZarrSource"
    _check_windows(src, a)
    _check_pickle(src, a)
    assert src.name == "cells"
    assert [lv.shape for lv in src.levels()] == [(2, 70, 95), (2, 35, 48), (2, 18, 24)]
    np.testing.assert_array_equal(src.levels()[1].compute(), downsample2(a))
    np.testing.assert_array_equal(src.levels()[2].compute(), downsample2(downsample2(a)))
    attrs = json.loads((out / ".zattrs").read_text())
    assert attrs["scribble_unet"]["complete"] is True
    assert [ax["name"] for ax in attrs["multiscales"][0]["axes"]] == ["c", "y", "x"]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_written_by_ome_zarr_py(tmp_path: Path, version: str) -> None:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    a = RNG.integers(0, 255, (3, 70, 95), dtype=np.uint8)
    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(
        str(tmp_path / "py.ome.zarr"), mode="w", zarr_format=2 if version == "0.4" else 3
    )
    write_image(
        a, group, axes="cyx", fmt=fmt, scale_factors=(2,), storage_options={"chunks": (1, 32, 32)}
    )
    src = open_image(tmp_path / "py.ome.zarr")
    _check_windows(src, a)
    _check_pickle(src, a)
    assert src.chunks_yx == (32, 32)
    assert [lv.shape for lv in src.levels()] == [
        (3, 70, 95),
        (3, 35, 47),
    ]  # ome-zarr-py rounds down


def test_ome_zarr_05_hand_made_with_labels(tmp_path: Path) -> None:
    # TCZYX with singleton t and z: those are dropped, channels come from the metadata.
    a = RNG.random((2, 64, 80)).astype(np.float32)
    levels = [a[None, :, None], downsample2(a)[None, :, None]]
    path = _ome_group(tmp_path / "v5.ome.zarr", "0.5", [AX[k] for k in "tczyx"], levels)
    root = zarr.open_group(str(path), mode="a")
    labels = root.create_group("labels")
    labels.attrs["ome"] = {"version": "0.5", "labels": ["nuclei"]}
    labels.create_group("nuclei").create_array("s0", shape=(64, 80), dtype="uint8")
    assert json.loads((path / "zarr.json").read_text())["attributes"]["ome"]["version"] == "0.5"
    src = open_image(path)
    _check_windows(src, a)
    _check_pickle(src, a)
    assert [lv.shape for lv in src.levels()] == [(2, 64, 80), (2, 32, 40)]
    # A level opened by its own path takes its axes from the image's metadata.
    level0 = open_image(path / "s0")
    _check_windows(level0, a)


def test_ome_zarr_channel_axis_from_metadata(tmp_path: Path) -> None:
    # YXC order, 3 entries per axis <= 16 long: only the metadata can tell which holds channels.
    a = RNG.integers(0, 9, (12, 14, 3), dtype=np.int16)
    path = _ome_group(tmp_path / "yxc.zarr", "0.4", [AX["y"], AX["x"], AX["c"]], [a])
    src = open_image(path)
    _check_windows(src, np.moveaxis(a, 2, 0))
    assert open_image(path, channel_axis=2).n_channels == 3  # agreeing with the metadata is fine
    with pytest.raises(InputImageError, match=r"channel_axis=0 disagrees with .* axis 2"):
        open_image(path, channel_axis=0)


@pytest.mark.parametrize(
    ("axes", "shape", "message"),
    [
        ("czyx", (1, 37, 40, 40), r"has 37 z planes.*only 2D images are supported"),
        ("tcyx", (5, 2, 40, 40), r"has 5 time points.*only 2D images are supported"),
    ],
)
def test_ome_zarr_3d_refused(
    tmp_path: Path, axes: str, shape: tuple[int, ...], message: str
) -> None:
    path = _ome_group(
        tmp_path / "vol.zarr", "0.4", [AX[k] for k in axes], [np.zeros(shape, np.uint8)]
    )
    with pytest.raises(InputImageError, match=message):
        open_image(path)


def test_unfinished_conversion_refused(tmp_path: Path) -> None:
    class Failing(ArraySource):
        calls = 0

        def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            Failing.calls += 1
            if Failing.calls > 3:
                raise RuntimeError("disk unplugged")
            return super().read(y0, y1, x0, x1)

    out = tmp_path / "crash.ome.zarr"
    with pytest.raises(RuntimeError, match="disk unplugged"):
        convert_to_ome_zarr(Failing(np.ones((100, 100), np.uint8)), out, chunk=16, progress=False)
    assert json.loads((out / ".zattrs").read_text())["scribble_unet"]["complete"] is False
    with pytest.raises(InputImageError, match=r"unfinished conversion.*overwrite=True"):
        open_image(out)
    convert_to_ome_zarr(
        np.ones((100, 100), np.uint8), out, chunk=16, progress=False, overwrite=True
    )
    assert open_image(out).read(0, 100, 0, 100).min() == 1


# ----------------------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize(
    ("kind", "shape", "channel_axis", "kwargs", "axes"),
    [
        ("gray tiled zlib", (70, 95), None, {"tile": (32, 32), "compression": "zlib"}, "YX"),
        ("gray strips", (70, 95), None, {"rowsperstrip": 16, "compression": "zlib"}, "YX"),
        ("gray uncompressed", (70, 95), None, {}, "YX"),
        ("gray big-endian", (70, 95), None, {"byteorder": ">"}, "YX"),
        (
            "multichannel",
            (3, 70, 95),
            0,
            {"metadata": {"axes": "CYX"}, "tile": (32, 32), "photometric": "minisblack"},
            "CYX",
        ),
        ("rgb", (70, 95, 3), 2, {"photometric": "rgb", "compression": "zlib"}, "YXS"),
        ("rgb uncompressed", (70, 95, 3), 2, {"photometric": "rgb"}, "YXS"),
    ],
)
def test_tiff_windows(
    tmp_path: Path,
    kind: str,
    shape: tuple[int, ...],
    channel_axis: int | None,
    kwargs: dict[str, Any],
    axes: str,
) -> None:
    dtype = np.uint8 if "rgb" in kind else np.uint16
    a = RNG.integers(0, np.iinfo(dtype).max, shape).astype(dtype)
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, a, **kwargs)
    src = open_image(path)
    assert type(src).__name__ == "TiffSource"
    assert src.axes == axes  # type: ignore[attr-defined]
    truth = _cyx(a, channel_axis)
    _check_windows(src, truth)
    _check_pickle(src, truth)
    assert src.dtype.isnative
    if "tiled" in kind:
        assert src.chunks_yx == (32, 32)
    if "strips" in kind:
        assert src.chunks_yx == (16, 95)
    if "uncompressed" in kind or "big-endian" in kind:
        assert src.chunks_yx is None  # memory-mapped: the zarr view would be one whole-image chunk


def test_tiff_pyramid_levels(tmp_path: Path) -> None:
    a = RNG.integers(0, 255, (2, 128, 96), dtype=np.uint8)
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        opts = {"tile": (32, 32), "compression": "zlib", "metadata": {"axes": "CYX"}}
        tw.write(a, subifds=2, **opts)  # type: ignore[arg-type]
        tw.write(a[:, ::2, ::2], subfiletype=1, tile=(32, 32), compression="zlib")
        tw.write(a[:, ::4, ::4], subfiletype=1, tile=(32, 32), compression="zlib")
    src = open_image(path)
    assert src.name == "pyramid"
    _check_windows(src, a)
    levels = src.levels()
    assert [lv.shape for lv in levels] == [(2, 128, 96), (2, 64, 48), (2, 32, 24)]
    np.testing.assert_array_equal(levels[2].compute(), a[:, ::4, ::4])
    again = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(
        again.levels()[1][:, 5:20, 7:30].compute(), a[:, ::2, ::2][:, 5:20, 7:30]
    )


def test_tiff_unknown_axis(tmp_path: Path) -> None:
    # Pages without axis metadata ("Q"): <= 16 of them are taken as channels, more need channel_axis.
    few = RNG.integers(0, 255, (4, 40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "few.tif", few, photometric="minisblack", metadata={"axes": "QYX"})
    with tifffile.TiffFile(tmp_path / "few.tif") as tf:
        assert tf.series[0].axes == "QYX"
    _check_windows(open_image(tmp_path / "few.tif"), few)
    many = RNG.integers(0, 255, (20, 40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "many.tif", many, metadata={"axes": "QYX"})
    with pytest.raises(InputImageError, match=r"cannot tell whether axis 0 .*channel_axis"):
        open_image(tmp_path / "many.tif")
    _check_windows(open_image(tmp_path / "many.tif", channel_axis=0), many)


def test_tiff_z_stack_refused(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "stack.tif",
        np.zeros((37, 20, 20), np.uint8),
        imagej=True,
        metadata={"axes": "ZYX"},
    )
    with pytest.raises(InputImageError, match=r"has 37 z planes; only 2D images are supported"):
        open_image(tmp_path / "stack.tif")


# --------------------------------------------------------------------------------------- errors


def test_errors(tmp_path: Path) -> None:
    def refused(path: Any, pattern: str, **kw: Any) -> None:
        with pytest.raises(InputImageError, match=pattern) as info:
            open_image(path, **kw)
        assert "\n" not in str(info.value)

    refused(tmp_path / "nope.tif", r"nope\.tif does not exist")
    (tmp_path / "notes.txt").write_text("hello\n")
    refused(tmp_path / "notes.txt", r"notes\.txt is not an image")
    (tmp_path / "fake.tif").write_text("not a tiff\n")
    refused(tmp_path / "fake.tif", r"fake\.tif is not a valid TIFF file")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", r"empty is an empty directory")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.txt").write_text("x")
    refused(tmp_path / "folder", r"folder is a directory but not a zarr array or group")
    zarr.open_group(str(tmp_path / "nogroup.zarr"), mode="w").create_group("sub")
    refused(tmp_path / "nogroup.zarr", r"zarr group with no image array")
    _write_zarr(tmp_path / "4d.zarr", np.zeros((2, 3, 20, 20), np.uint8), 3, (1, 1, 20, 20))
    refused(tmp_path / "4d.zarr", r"has 4 axes \(2, 3, 20, 20\); only 2D images")
    _write_zarr(tmp_path / "2d.zarr", np.zeros((20, 20), np.uint8), 2, (20, 20))
    refused(tmp_path / "2d.zarr", r"2D image and has no channel axis", channel_axis=0)
    refused(tmp_path / "2d.zarr", r"channel_axis=5 is out of range", channel_axis=5)
    zarr.create_array(
        store=str(tmp_path / "void.zarr"), shape=(0, 10), dtype="uint8", zarr_format=2
    )
    refused(tmp_path / "void.zarr", r"is empty \(shape \(0, 10\)\)")
    zarr.create_array(store=str(tmp_path / "text.zarr"), shape=(5, 5), dtype="U4", zarr_format=2)
    refused(tmp_path / "text.zarr", r"pixels of type <U4, not numbers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns that a zero-size image is nonconformant
        tifffile.imwrite(tmp_path / "void.tif", np.zeros((0, 0), np.uint8))
    refused(tmp_path / "void.tif", r"void\.tif is empty")
    refused(12.5, r"cannot open a float as an image")


# ------------------------------------------------------------------------------------- convert


def test_convert_tiff_read_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = RNG.integers(0, 60000, (150, 70), dtype=np.uint16)
    tif = tmp_path / "gray.tif"
    tifffile.imwrite(tif, a, rowsperstrip=8, compression="zlib")
    out = convert_to_ome_zarr(tif, tmp_path / "out" / "gray.ome.zarr", chunk=32, progress=True)
    assert "converting gray" in capsys.readouterr().err  # the progress bar goes to stderr
    attrs = json.loads((out / ".zattrs").read_text())
    assert attrs["scribble_unet"]["complete"] is True
    assert [ax["name"] for ax in attrs["multiscales"][0]["axes"]] == [
        "y",
        "x",
    ]  # grayscale stays 2D
    assert json.loads((out / "0" / ".zarray").read_text())["dimension_separator"] == "/"
    assert zarr.open_array(str(out / "0"), mode="r").chunks == (32, 32)
    src = open_image(out)
    _check_windows(src, a[None])
    shapes = [(150, 70), (75, 35), (38, 18), (19, 9)]
    assert pyramid_shapes((150, 70), 32) == shapes
    assert [lv.shape[1:] for lv in src.levels()] == shapes

    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    nodes = list(Reader(parse_url(str(out)))())
    assert any(isinstance(spec, Multiscales) for spec in nodes[0].specs)
    assert [d.shape for d in nodes[0].data] == shapes
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0]), a)

    convert_to_ome_zarr(tif, tmp_path / "quiet.ome.zarr", chunk=32, progress=False)
    assert capsys.readouterr().err == ""


def test_convert_reads_bounded_windows(tmp_path: Path) -> None:
    """Level 0 is read in chunk-sized windows, never whole (here the source has no chunks of its own)."""
    areas: list[int] = []

    class Recording(ArraySource):
        def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            areas.append((y1 - y0) * (x1 - x0))
            return super().read(y0, y1, x0, x1)

    a = RNG.random((3, 100, 130)).astype(np.float32)
    out = convert_to_ome_zarr(
        Recording(a, channel_axis=0), tmp_path / "f.ome.zarr", chunk=32, progress=False
    )
    assert max(areas) <= 32 * 32 and sum(areas) == 100 * 130
    src = open_image(out)
    _check_windows(src, a)
    np.testing.assert_allclose(src.levels()[1].compute(), downsample2(a))


def test_convert_overwrite_and_unwritable(tmp_path: Path) -> None:
    a = np.arange(40 * 30, dtype=np.int32).reshape(40, 30)
    out = convert_to_ome_zarr(a, tmp_path / "a.ome.zarr", chunk=16, progress=False)
    with pytest.raises(
        ScribbleUNetError, match=r"a\.ome\.zarr already exists; pass overwrite=True"
    ):
        convert_to_ome_zarr(a, out, chunk=16, progress=False)
    convert_to_ome_zarr(a * 2, out, chunk=16, progress=False, overwrite=True)
    np.testing.assert_array_equal(open_image(out).read(0, 40, 0, 30)[0], a * 2)
    # overwrite=True never deletes something scribble-unet did not write.
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "thesis.txt").write_text("years of work")
    with pytest.raises(ScribbleUNetError, match=r"not a scribble-unet output"):
        convert_to_ome_zarr(a, keep, progress=False, overwrite=True)
    assert (keep / "thesis.txt").exists()
    # A file where a folder should be: the output cannot be created.
    (tmp_path / "file").write_text("x")
    with pytest.raises(ScribbleUNetError, match=r"cannot write .*file/out\.ome\.zarr") as info:
        convert_to_ome_zarr(a, tmp_path / "file" / "out.ome.zarr", progress=False)
    assert "\n" not in str(info.value)
    with pytest.raises(ScribbleUNetError, match=r"would overwrite its own input"):
        convert_to_ome_zarr(out, out, progress=False, overwrite=True)


@pytest.mark.skipif(
    not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
    reason="root can write anywhere",
)
def test_convert_read_only_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ScribbleUNetError, match=r"cannot write .*locked/out\.ome\.zarr"):
            convert_to_ome_zarr(
                np.zeros((10, 10), np.uint8), locked / "out.ome.zarr", progress=False
            )
    finally:
        locked.chmod(0o700)


def test_downsample2() -> None:
    ints = np.array([[1, 2, 3], [3, 4, 5], [7, 7, 8]], dtype=np.uint8)
    # 2x2 means (1+2+3+4)/4 = 2.5 -> 2 (ties to even), odd edges average the pixels they have.
    np.testing.assert_array_equal(downsample2(ints), np.array([[2, 4], [7, 8]], np.uint8))
    floats = ints.astype(np.float32)
    np.testing.assert_allclose(downsample2(floats), [[2.5, 4.0], [7.0, 8.0]])
    assert downsample2(floats).dtype == np.float32
    bools = np.array([[True, True], [True, False]])
    assert downsample2(bools).tolist() == [[True]]
    assert downsample2(np.zeros((3, 5, 7), np.int16)).shape == (3, 3, 4)
