"""The command line: happy paths and one-line errors for bad input."""

import os

import numpy as np
import pytest
import zarr

from helpers import make_checkpoint
from scribble_unet.cli import main
from scribble_unet.model.checkpoint import save_checkpoint


@pytest.fixture
def model(tmp_path):
    return str(save_checkpoint(tmp_path / "m.safetensors", make_checkpoint(depth=2, width=4)))


@pytest.fixture
def image(tmp_path):
    path = str(tmp_path / "img.zarr")
    arr = zarr.create_array(store=path, shape=(90, 70), chunks=(32, 32), dtype=np.uint16)
    arr[...] = np.random.default_rng(0).integers(0, 1000, (90, 70))
    return path


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_init_model_and_predict(tmp_path, capsys, image) -> None:
    m = str(tmp_path / "init.safetensors")
    code, out, _ = run(capsys, "init-model", "--out", m, "--depth", "2", "--width", "4", "--image", image)
    assert code == 0 and "halo 32 px" in out  # the pixel forest reads 30 px
    out_zarr = str(tmp_path / "p.zarr")
    code, out, err = run(capsys, "predict", "--model", m, "--image", image, "--out", out_zarr, "--tile", "30", "--quiet")
    assert code == 0, err
    assert "tile 30 rounded to 32" in err
    assert zarr.open_group(out_zarr, mode="r")["labels/mask/0"].shape == (90, 70)
    # run again: everything is resumed, nothing recomputed
    code, _, err = run(capsys, "predict", "--model", m, "--image", image, "--out", out_zarr, "--tile", "32", "--quiet")
    assert code == 0 and "9 of 9 chunks were already done" in err


def test_tile_zero_is_whole_image_pass(tmp_path, capsys, model, image) -> None:
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    assert run(capsys, "predict", "--model", model, "--image", image, "--out", a, "--tile", "0", "--quiet", "--probabilities")[0] == 0
    assert run(capsys, "predict", "--model", model, "--image", image, "--out", b, "--tile", "32", "--quiet", "--probabilities")[0] == 0
    pa = zarr.open_group(a, mode="r")["probabilities/0"][...]
    pb = zarr.open_group(b, mode="r")["probabilities/0"][...]
    assert np.abs(pa - pb).max() <= 1e-5


def test_predict_reads_the_npy_images_train_reads(tmp_path, capsys, model, image) -> None:
    npy = tmp_path / "img.npy"
    np.save(npy, zarr.open_array(image, mode="r")[...])
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    assert run(capsys, "predict", "--model", model, "--image", image, "--out", a, "--tile", "32", "--quiet")[0] == 0
    assert run(capsys, "predict", "--model", model, "--image", str(npy), "--out", b, "--tile", "32", "--quiet")[0] == 0
    ma = zarr.open_group(a, mode="r")["labels/mask/0"][...]
    assert np.array_equal(ma, zarr.open_group(b, mode="r")["labels/mask/0"][...]) and ma.shape == (90, 70)
    # the .npy itself is never taken for an output folder
    code, _, err = run(capsys, "predict", "--model", model, "--image", str(npy), "--out", str(npy), "--quiet")
    assert code != 0 and "is a file, not an output folder" in err and np.load(npy).shape == (90, 70)


@pytest.mark.parametrize("content", [b"not a numpy file", b"\x93NUMPY\x01\x00v\x00{'descr'"])
def test_predict_on_an_unreadable_npy_is_one_line_and_writes_nothing(tmp_path, capsys, model, content) -> None:
    npy = tmp_path / "broken.npy"
    npy.write_bytes(content)
    out = tmp_path / "p.zarr"
    code, _, err = run(capsys, "predict", "--model", model, "--image", str(npy), "--out", str(out), "--quiet")
    assert code != 0 and f"image {npy} is not a readable .npy array" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{tmp}/missing.safetensors"], "model file .*missing.safetensors does not exist"),
        (["--image", "{tmp}/nothing.zarr"], "does not exist"),
        (["--image", "{tmp}/notes.txt"], "not an image|cannot read"),
        (["--model", "{tmp}/notes.txt"], "not a scribble-unet model"),
        (["--image", "{tmp}/rgb.zarr"], "image has 3 channel"),
        (["--image", "{tmp}/4d.zarr"], "axes|dimensions"),
        (["--out", "{tmp}/ro/out.zarr"], "not writable"),
        (["--out", "{tmp}/nofolder/out.zarr"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, capsys, model, image, args, message) -> None:
    import re

    (tmp_path / "notes.txt").write_text("hello")
    zarr.create_array(store=str(tmp_path / "rgb.zarr"), shape=(40, 40, 3), chunks=(20, 20, 3), dtype=np.uint8)
    zarr.create_array(store=str(tmp_path / "4d.zarr"), shape=(2, 3, 40, 40), chunks=(1, 1, 20, 20), dtype=np.uint8)
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    base = {"--model": model, "--image": image, "--out": str(tmp_path / "out.zarr")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value.format(tmp=tmp_path)
    argv = ["predict", "--quiet"] + [x for kv in base.items() for x in kv]
    try:
        code, _, err = run(capsys, *argv)
    finally:
        os.chmod(ro, 0o700)
    if os.geteuid() == 0 and "ro/" in base["--out"]:
        pytest.skip("root can write into read-only folders")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in err


def test_nan_image_error_and_policy(tmp_path, capsys, model) -> None:
    path = str(tmp_path / "nan.zarr")
    arr = zarr.create_array(store=path, shape=(40, 40), chunks=(20, 20), dtype=np.float32)
    data = np.ones((40, 40), np.float32)
    data[5, 7] = np.inf
    arr[...] = data
    out = str(tmp_path / "o.zarr")
    code, _, err = run(capsys, "predict", "--model", model, "--image", path, "--out", out, "--quiet")
    assert code == 2 and "NaN/inf pixels (one at y=5, x=7)" in err
    assert zarr.open_group(out, mode="r").attrs["scribble_unet"]["complete"] is False
    code, _, err = run(capsys, "predict", "--model", model, "--image", path, "--out", out, "--quiet", "--nan-policy", "zero")
    assert code == 2 and "another" in err  # a different policy is not mixed into the same output silently
    code, _, err = run(capsys, "predict", "--model", model, "--image", path, "--out", out, "--quiet", "--nan-policy", "zero", "--overwrite")
    assert code == 0, err


def test_argument_errors_exit_non_zero(capsys, model, image, tmp_path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["predict", "--model", model, "--image", image, "--out", str(tmp_path / "o"), "--tile", "-3"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["predict", "--model", model, "--image", image, "--out", str(tmp_path / "o"), "--workers", "0"])


def test_convert_tiff_then_predict(tmp_path, capsys, model) -> None:
    import tifffile

    tif = str(tmp_path / "img.tif")
    tifffile.imwrite(tif, np.random.default_rng(0).integers(0, 4000, (300, 260), dtype=np.uint16), tile=(64, 64))
    ome = str(tmp_path / "img.zarr")
    code, out, err = run(capsys, "convert", tif, ome, "--chunk", "128", "--quiet")
    assert code == 0, err
    assert "wrote OME-Zarr image" in out
    code, _, err = run(capsys, "convert", tif, ome, "--quiet")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    pred = str(tmp_path / "p.zarr")
    code, _, err = run(capsys, "predict", "--model", model, "--image", ome, "--out", pred, "--tile", "128", "--quiet")
    assert code == 0, err
    assert zarr.open_group(pred, mode="r")["labels/mask/0"].shape == (300, 260)


def test_headless_demo_runs_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    code, stdout, err = run(capsys, "demo", "--headless", "--out", str(out), "--time-budget", "3")
    assert code == 0, err
    assert "foreground IoU against the hand-made mask" in stdout
    assert zarr.open_group(str(out / "prediction.zarr"), mode="r").attrs["scribble_unet"]["complete"] is True
    assert (out / "model.safetensors").exists()
    from scribble_unet.model.checkpoint import load_checkpoint

    assert load_checkpoint(out / "model.safetensors").config.class_names == ("nucleus",)


def test_demo_rejects_non_positive_budget(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "demo", "--headless", "--out", str(tmp_path / "d"), "--time-budget", "0")
    assert code == 2 and "time budget must be positive" in err


def test_argument_error_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["predict", "--model", "m", "--image", "i", "--out", "o", "--tile", "-3"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: predict: argument --tile: must be 0 or more")


def test_unavailable_device_is_one_line_error(tmp_path, capsys, model, image) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "o.zarr"
    code, _, err = run(capsys, "predict", "--model", model, "--image", image, "--out", str(out), "--device", "cuda", "--quiet")
    assert code == 2 and "sees no CUDA GPU" in err
    assert not out.exists()  # refused before anything was written


def test_no_snap_gives_the_plain_mask_and_a_resume_keeps_the_choice(tmp_path, capsys, model, image) -> None:
    from scribble_unet.image import open_image
    from scribble_unet.inference.predict import predict_array
    from scribble_unet.inference.probabilities import probabilities_to_mask
    from scribble_unet.model.checkpoint import load_checkpoint

    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    assert run(capsys, "predict", "--model", model, "--image", image, "--out", a, "--tile", "32", "--quiet")[0] == 0
    code, _, err = run(capsys, "predict", "--model", model, "--image", image, "--out", b, "--tile", "32", "--quiet",
                       "--probabilities", "--no-snap")
    assert code == 0, err
    group = zarr.open_group(b, mode="r")
    assert np.array_equal(group["labels/mask/0"][...], probabilities_to_mask(group["probabilities/0"][...]))
    snapped = predict_array(load_checkpoint(model), open_image(image), tile=0, device="cpu", snap=True)[1]
    assert np.array_equal(zarr.open_group(a, mode="r")["labels/mask/0"][...], snapped)
    # the output made with snapped borders is not resumed without them (nor overwritten)
    code, _, err = run(capsys, "predict", "--model", model, "--image", image, "--out", a, "--tile", "32", "--quiet", "--no-snap")
    assert code != 0 and "snap_borders" in err and len(err.strip().splitlines()) == 1
