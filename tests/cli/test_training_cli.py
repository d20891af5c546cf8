"""``scribble-unet train``: argument parsing, scribble formats, the written model, one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
import zarr

from scribble_unet.cli.train import add_train_parser, open_scribbles, run_train
from scribble_unet.errors import ScribbleUNetError
from scribble_unet.model.checkpoint import load_checkpoint


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_train_parser(sub)
    return parser.parse_args(["train", *argv])


def write_inputs(tmp_path: Path, fmt: str = "npy") -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    img = rng.random((48, 48)).astype(np.float32)
    img[10:20, 10:20] += 2
    s = np.zeros((48, 48), np.uint8)
    s[12:18, 12:18] = 2
    s[30, 5:40] = 1
    s[40, 5:40] = 1
    image = tmp_path / "image.npy"
    np.save(image, img)
    if fmt == "npy":
        scrib = tmp_path / "s.npy"
        np.save(scrib, s)
    elif fmt == "tif":
        scrib = tmp_path / "s.tif"
        tifffile.imwrite(scrib, s[None])  # a leading singleton axis, as some exporters write
    else:
        scrib = tmp_path / "s.zarr"
        z = zarr.create_array(str(scrib), shape=s.shape, chunks=(16, 16), dtype="uint8")
        z[:] = s
    return image, scrib


@pytest.mark.parametrize("fmt", ["npy", "tif", "zarr"])
def test_train_writes_a_model(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    image, scrib = write_inputs(tmp_path, fmt)
    out = tmp_path / "m.safetensors"
    args = parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(out), "--steps", "3",
                  "--depth", "2", "--width", "4", "--batch-size", "2", "--device", "cpu", "--quiet"])
    assert run_train(args) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.config.depth == 2 and ckpt.config.width == 4 and ckpt.training["steps"] == 3
    assert ckpt.training["reason"] == "steps" and ckpt.normalization is not None
    assert f"wrote {out} (3 steps from scratch, ended by steps" in capsys.readouterr().out


def test_train_says_when_the_generalist_cannot_be_the_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, scrib = write_inputs(tmp_path)
    out = tmp_path / "m.safetensors"
    args = parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(out), "--steps", "2",
                  "--width", "4", "--batch-size", "2", "--device", "cpu", "--quiet", "--start", "generalist"])
    assert run_train(args) == 0
    assert "2 steps from scratch (the architecture differs: width 4 (generalist: 16))" in capsys.readouterr().out
    assert load_checkpoint(out).training["start"].startswith("scratch (the architecture differs")


def test_time_budget_classes_and_finetune(tmp_path: Path) -> None:
    image, scrib = write_inputs(tmp_path)
    first = tmp_path / "a.safetensors"
    args = parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(first), "--time-budget", "0.2",
                  "--depth", "2", "--width", "4", "--classes", "nucleus", "--quiet", "--device", "cpu"])
    assert args.steps is None
    assert run_train(args) == 0
    a = load_checkpoint(first)
    assert a.training["reason"] == "time" and a.config.class_names == ("nucleus",)
    # fine-tune with two classes: architecture from --init, a new head
    s = np.load(scrib)
    s[2:5, 40:45] = 3
    np.save(scrib, s)
    second = tmp_path / "b.safetensors"
    args = parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(second), "--steps", "2",
                  "--init", str(first), "--classes", "nucleus,cell", "--quiet", "--device", "cpu"])
    assert run_train(args) == 0
    b = load_checkpoint(second)
    assert b.config.n_classes == 2 and b.config.depth == 2 and b.training["new_head"] is True
    args = parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(second), "--steps", "2",
                  "--init", str(first), "--depth", "3", "--quiet"])
    with pytest.raises(ScribbleUNetError, match="--depth 3 differs from the depth 2 of --init"):
        run_train(args)
    third = tmp_path / "c.safetensors"
    args = parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(third), "--steps", "2",
                  "--init", str(first), "--filter-bank", "--quiet"])
    with pytest.raises(ScribbleUNetError, match="differs from the filter bank of --init \\(off\\)"):
        run_train(args)
    assert not third.exists()


def test_errors_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, scrib = write_inputs(tmp_path)
    out = tmp_path / "m.safetensors"
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((40, 48), np.uint8))
    cases = [
        (["--scribbles", str(tmp_path / "nope.npy")], "do not exist"),
        (["--scribbles", str(bad)], r"scribbles have shape \(40, 48\)"),
        (["--scribbles", str(scrib), "--classes", "a,,b"], "comma-separated non-empty names"),
        (["--scribbles", str(scrib), "--tile", "8", "--depth", "2"], "smaller than the field of view"),
    ]
    for extra, match in cases:
        args = parse(["--image", str(image), "--out", str(out), "--quiet", *extra])
        with pytest.raises(ScribbleUNetError, match=match):
            run_train(args)
    assert not out.exists()
    with pytest.raises(SystemExit):
        parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(out), "--steps", "0"])
    with pytest.raises(SystemExit):
        parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(out), "--time-budget", "-3"])
    with pytest.raises(SystemExit):
        parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(out), "--consistency", "-1"])
    for bad in ("-1", "101", "strong"):  # the edge weight lies in [0, 100]; one line names the option
        with pytest.raises(SystemExit):
            parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(out), "--edge-weight", bad])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "--edge-weight" in err
    assert not out.exists()


def test_open_scribbles_formats(tmp_path: Path) -> None:
    s = np.arange(12, dtype=np.uint8).reshape(3, 4) % 3
    grp = zarr.open_group(str(tmp_path / "labels.zarr"), mode="w")
    grp.attrs["multiscales"] = [{"datasets": [{"path": "0"}]}]
    grp.create_array("0", shape=s.shape, dtype="uint8")[:] = s
    np.testing.assert_array_equal(np.asarray(open_scribbles(tmp_path / "labels.zarr")[:]), s)
    plain = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    plain.create_array("x", shape=(2, 2), dtype="uint8")
    with pytest.raises(ScribbleUNetError, match="zarr group, not an array"):
        open_scribbles(tmp_path / "g.zarr")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ScribbleUNetError, match="expected a zarr array folder"):
        open_scribbles(tmp_path / "x.png")
    np.save(tmp_path / "3d.npy", np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ScribbleUNetError, match="a 2D"):
        open_scribbles(tmp_path / "3d.npy")


def test_main_cli_reports_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = pytest.importorskip("scribble_unet.cli")
    image, _ = write_inputs(tmp_path)
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((48, 48), np.uint8))
    code = cli.main(["train", "--image", str(image), "--scribbles", str(empty), "--out",
                     str(tmp_path / "m.safetensors"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [err[0]] and err[0].startswith("error: the scribbles have no labelled pixel")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize(("flag", "value", "words"), [
    ("--object-diameter", "0", "object-diameter"), ("--object-diameter", "nan", "object-diameter"),
    ("--object-diameter", "20000", "object-diameter"), ("--scale", "0", "scale"), ("--scale", "1.5", "scale"),
])
def test_bad_object_size_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              flag: str, value: str, words: str) -> None:
    cli = pytest.importorskip("scribble_unet.cli")
    image, scrib = write_inputs(tmp_path)
    out = tmp_path / "m.safetensors"
    with pytest.raises(SystemExit) as exit_:  # argument errors end the command with status 2
        cli.main(["train", "--image", str(image), "--scribbles", str(scrib), "--out", str(out), "--quiet",
                  flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and words in err[0], err
    assert not out.exists()


def test_train_ends_with_one_json_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    image, scrib = write_inputs(tmp_path)
    out = tmp_path / "m.safetensors"
    run_train(parse(["--image", str(image), "--scribbles", str(scrib), "--out", str(out), "--quiet",
                     "--steps", "3", "--depth", "2", "--width", "4", "--object-diameter", "10"]))
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["event"] == "trained" and last["steps"] == 3 and last["scale"] == 1
    assert last["object_diameter_px"] == 10 and last["diameter_source"] == "user"
    assert last["field_of_view_px"] == 47 and "held_out_stroke_iou" in last
