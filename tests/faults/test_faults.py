"""Fault injection: every case of issue 10 ("nothing lost, nothing silently wrong") as a test.

Each test damages, kills, fills or races a run and asserts that nothing of the user's is lost and that
the next run either recovers or refuses in one line (no traceback). kill -9 goes through the writer's
hook (``SCRIBBLE_UNET_FAULT``, :func:`scribble_unet.ome.files.fault_point`); a full disk is a small
tmpfs, mounted where the machine allows it (root), skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import zarr

from helpers import make_checkpoint
from scribble_unet.cli import main
from scribble_unet.errors import ScribbleUNetError
from scribble_unet.export.to_zarr import predict_to_zarr
from scribble_unet.model.checkpoint import load_checkpoint, save_checkpoint
from scribble_unet.ome.output import LOCK, MARKER, claim_output

CLI = "import sys; from scribble_unet.cli import main; sys.exit(main(sys.argv[1:]))"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> bool:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("note:")]
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err and len(lines[0]) <= 400


def run_killed(args, fault: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCRIBBLE_UNET_FAULT": fault}
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def model(tmp_path):
    return save_checkpoint(tmp_path / "m.safetensors", make_checkpoint(depth=2, width=4))


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.zarr"
    arr = zarr.create_array(store=str(path), shape=(96, 80), chunks=(32, 32), dtype=np.uint16)
    arr[...] = np.random.default_rng(0).integers(0, 1000, (96, 80))
    return path


@pytest.fixture
def tif(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "orig.tif"
    tifffile.imwrite(path, np.random.default_rng(1).integers(0, 1000, (96, 80)).astype(np.uint16))
    return path


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# -- user data is never deleted -----------------------------------------------------------------------


def test_predict_overwrite_never_deletes_a_converted_image(tmp_path, capsys, model, tif) -> None:
    conv = tmp_path / "conv.zarr"
    assert run(capsys, "convert", tif, conv, "--quiet")[0] == 0
    before = tree(conv)
    code, _, err = run(capsys, "predict", "--model", model, "--image", tif, "--out", conv, "--quiet", "--overwrite")
    assert code == 2 and one_line(err) and "converted image" in err
    assert tree(conv) == before


def test_convert_overwrite_never_replaces_scribbles(tmp_path, capsys, tif) -> None:
    scr = tmp_path / "myscribbles.zarr"
    zarr.create_array(store=str(scr), shape=(96, 80), chunks=(32, 32), dtype=np.uint8)[5:9, 5:9] = 2
    before = tree(scr)
    code, _, err = run(capsys, "convert", tif, scr, "--overwrite", "--quiet")
    assert code == 2 and one_line(err) and "not a scribble-unet output" in err
    assert tree(scr) == before


def test_predict_overwrite_keeps_the_model_in_use_and_user_files(tmp_path, capsys, image) -> None:
    out = tmp_path / "OUT"
    save_checkpoint(tmp_path / "first.safetensors", make_checkpoint(seed=1))
    assert run(capsys, "predict", "--model", tmp_path / "first.safetensors", "--image", image,
               "--out", out, "--quiet", "--tile", "32")[0] == 0
    m = save_checkpoint(out / "m.safetensors", make_checkpoint(seed=2))  # the model lives in the output
    (out / "analysis.csv").write_text("cell,area\n1,42\n")
    model_bytes = m.read_bytes()
    code, _, err = run(capsys, "predict", "--model", m, "--image", image, "--out", out, "--quiet",
                       "--tile", "32", "--overwrite")
    assert code == 0, err
    assert m.read_bytes() == model_bytes and (out / "analysis.csv").read_text() == "cell,area\n1,42\n"
    assert json.loads((out / MARKER).read_text())["kind"] == "prediction"


def test_napari_writer_never_deletes_what_it_did_not_write(tmp_path) -> None:
    from scribble_unet._napari._writer import write_label_image

    user = tmp_path / "user.zarr"
    zarr.create_array(store=str(user), shape=(10, 10), dtype=np.uint8)[...] = 7
    before = tree(user)
    with pytest.raises(ScribbleUNetError, match="not a scribble-unet output"):
        write_label_image(user, np.ones((20, 20), np.uint8))  # overwrite is on by default
    assert tree(user) == before
    out = tmp_path / "labels.zarr"
    write_label_image(out, np.ones((20, 20), np.uint8), name="cells")
    (out / "notes.txt").write_text("mine")
    write_label_image(out, np.full((20, 20), 2, np.uint8), name="cells")
    assert (out / "notes.txt").read_text() == "mine"
    assert int(zarr.open_array(str(out / "labels" / "cells" / "0"), mode="r")[0, 0]) == 2


def test_symlinked_output_is_refused(tmp_path, capsys, model, image) -> None:
    real = tmp_path / "real"
    predict_to_zarr(load_checkpoint(model), str(image), str(real), tile=32, progress=False)
    link = tmp_path / "link.zarr"
    link.symlink_to(real)
    before = tree(real)
    code, _, err = run(capsys, "predict", "--model", model, "--image", image, "--out", link, "--quiet", "--overwrite")
    assert code == 2 and one_line(err) and "symbolic link" in err
    assert tree(real) == before


def test_project_model_must_stay_inside_the_project(tmp_path) -> None:
    from scribble_unet.scribbles.project import Project

    folder = tmp_path / "proj"
    Project.open(folder).save()
    (folder / "project.json").write_text(json.dumps({"model": "../../etc/passwd"}))
    with pytest.raises(ScribbleUNetError, match="outside the project"):
        Project.open(folder)


# -- no wrong output marked complete -------------------------------------------------------------------


def _partial_run(ckpt, img, out: str, stop_after: int) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= stop_after:
            cancel.set()

    predict_to_zarr(ckpt, img, out, tile=32, progress=progress, cancel=cancel, threads=1)


@pytest.mark.parametrize("edit", ["most pixels", "one pixel"])
def test_resume_refuses_an_image_edited_anywhere(tmp_path, image, edit) -> None:
    ckpt = make_checkpoint()
    out = str(tmp_path / "p.zarr")
    _partial_run(ckpt, str(image), out, stop_after=3)
    arr = zarr.open_array(str(image), mode="r+")
    if edit == "most pixels":
        arr[5:, :] = np.asarray(arr[5:, :]) + 1  # the five fingerprint windows partly kept
    else:
        arr[40, 1] = int(arr[40, 1]) + 1  # not in any fingerprint window, in a chunk done already
    with pytest.raises(ScribbleUNetError, match=r"the image differs|another image") as info:
        predict_to_zarr(ckpt, str(image), out, tile=32, progress=False)
    assert "\n" not in str(info.value)
    info_attrs = json.loads((Path(out) / ".zattrs").read_text())["scribble_unet"]
    assert info_attrs["complete"] is False


def test_nan_normalisation_in_a_header_is_refused(tmp_path, capsys, image) -> None:
    path = craft(tmp_path, normalization={"low": [float("nan")], "high": [1.0]})
    code, _, err = run(capsys, "predict", "--model", path, "--image", image, "--out", tmp_path / "o", "--quiet")
    assert code == 2 and one_line(err) and "normalisation" in err


def test_complex_image_is_refused(tmp_path, capsys, model) -> None:
    path = tmp_path / "c.zarr"
    zarr.create_array(store=str(path), shape=(40, 40), dtype=np.complex64)[...] = 1 + 2j
    code, _, err = run(capsys, "predict", "--model", model, "--image", path, "--out", tmp_path / "o", "--quiet")
    assert code == 2 and one_line(err) and "complex" in err


# -- no allocation chosen by a file --------------------------------------------------------------------


def craft(tmp_path: Path, config: dict | None = None, normalization: object = "default",
          raw_config: str | None = None, tensors_from: dict | None = None) -> Path:
    """A safetensors file with a scribble-unet header written by hand (the weights of a small model)."""
    ckpt = make_checkpoint(depth=2, width=4)
    src = save_checkpoint(tmp_path / f"src-{uuid.uuid4().hex[:6]}.safetensors", ckpt)
    raw = src.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    meta = header["__metadata__"]
    if config is not None:
        meta["config"] = json.dumps({**json.loads(meta["config"]), **config})
    if raw_config is not None:
        meta["config"] = raw_config
    if normalization != "default":
        meta["normalization"] = json.dumps(normalization)
    text = json.dumps(header).encode()
    path = tmp_path / f"crafted-{uuid.uuid4().hex[:6]}.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    return path


@pytest.mark.parametrize("field,value", [("width", 10**5), ("width", 10**9), ("in_channels", 10**5),
                                         ("in_channels", 10**9), ("width", 256), ("n_classes", 10**6),
                                         ("depth", 2.5)])
def test_crafted_header_is_refused_before_allocation(tmp_path, capsys, image, field, value) -> None:
    import resource

    path = craft(tmp_path, config={field: value})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, _, err = run(capsys, "predict", "--model", path, "--image", image, "--out", tmp_path / "o", "--quiet")
    assert code == 2 and one_line(err), err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # KiB: no big allocation


def test_deeply_nested_header_is_refused(tmp_path, capsys, image) -> None:
    path = craft(tmp_path, raw_config="[" * 200_000 + "]" * 200_000)
    code, _, err = run(capsys, "predict", "--model", path, "--image", image, "--out", tmp_path / "o", "--quiet")
    assert code == 2 and one_line(err)


def test_init_model_with_a_huge_width_is_one_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["init-model", "--out", str(tmp_path / "m.safetensors"), "--width", "100000"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and one_line(err) and "width" in err
    code, _, err = run(capsys, "init-model", "--out", tmp_path / "m.safetensors", "--width", "512", "--depth", "3")
    assert code == 2 and one_line(err) and "2048" in err


# -- outputs recoverable after a crash, a full disk, damage or a race ------------------------------------


@pytest.mark.parametrize("fault", ["output-marker-written", "predict-arrays-created", "predict-chunk-written:2",
                                   "atomic-before-rename:2"])
def test_kill_9_while_predicting_then_rerun_recovers(tmp_path, model, image, fault) -> None:
    out = tmp_path / "p.zarr"
    args = ["predict", "--model", model, "--image", image, "--out", out, "--quiet", "--tile", "32", "--threads", "1"]
    killed = run_killed(args, fault, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = run_killed(args, "none", tmp_path)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert json.loads((out / ".zattrs").read_text())["scribble_unet"]["complete"] is True
    ref = tmp_path / "ref.zarr"
    predict_to_zarr(load_checkpoint(model), str(image), str(ref), tile=32, progress=False)
    np.testing.assert_array_equal(zarr.open_array(str(out / "labels/mask/0"))[...],
                                  zarr.open_array(str(ref / "labels/mask/0"))[...])


def test_kill_9_while_saving_a_model_leaves_the_old_one_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "m.safetensors"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r}); from helpers import make_checkpoint; "
            "from scribble_unet.model.checkpoint import save_checkpoint; "
            f"save_checkpoint({str(path)!r}, make_checkpoint(seed=3))")
    save_checkpoint(path, make_checkpoint(seed=1))
    before = path.read_bytes()
    env = {**os.environ, "SCRIBBLE_UNET_FAULT": "atomic-before-rename"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the killed run's leftover
    save_checkpoint(path, make_checkpoint(seed=4))  # the next write removes it
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_model_files_follow_the_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.safetensors", make_checkpoint())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_truncated_root_attributes_are_rewritten(tmp_path, image) -> None:
    ckpt = make_checkpoint()
    out = tmp_path / "p.zarr"
    _partial_run(ckpt, str(image), str(out), stop_after=2)
    (out / ".zattrs").write_text('{"scribble_unet": {"vers')
    res = predict_to_zarr(ckpt, str(image), str(out), tile=32, progress=False)
    assert res.skipped >= 2
    assert json.loads((out / ".zattrs").read_text())["scribble_unet"]["complete"] is True


def test_second_run_on_a_locked_output_refuses(tmp_path, capsys, model, image) -> None:
    out = tmp_path / "p.zarr"
    with claim_output(out, "prediction"):  # another run holds the output
        code, _, err = run(capsys, "predict", "--model", model, "--image", image, "--out", out, "--quiet",
                           "--overwrite")
    assert code == 2 and one_line(err) and f"process {os.getpid()}" in err
    assert (out / LOCK).exists()


def test_racing_runs_one_wins_the_other_refuses(tmp_path, model, image) -> None:
    out = tmp_path / "p.zarr"
    args = [sys.executable, "-c", CLI, "predict", "--model", str(model), "--image", str(image), "--out",
            str(out), "--quiet", "--tile", "32", "--overwrite", "--threads", "1"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(*p.communicate(timeout=300), p.returncode) for p in procs]
    codes = sorted(r[2] for r in results)
    assert 0 in codes and all("Traceback" not in r[1] for r in results)
    for _, stderr, code in results:
        if code != 0:
            assert code == 2 and "being written by another" in stderr
    assert json.loads((out / ".zattrs").read_text())["scribble_unet"]["complete"] is True


def test_damaged_input_chunk_is_named_in_one_line(tmp_path, capsys, model) -> None:
    path = tmp_path / "img.zarr"
    zarr.create_array(store=str(path), shape=(64, 64), chunks=(32, 32), dtype=np.float32)[...] = 1.0
    chunk = next(p for p in path.rglob("*") if p.is_file() and p.name not in ("zarr.json",))
    chunk.write_bytes(chunk.read_bytes()[:10])
    code, _, err = run(capsys, "predict", "--model", model, "--image", path, "--out", tmp_path / "o", "--quiet")
    assert code == 2 and one_line(err) and "damaged" in err and "chunk" in err


@pytest.mark.parametrize("which", ["labels/mask/0/1.1", "progress/1.1"])
def test_damaged_output_chunk_is_predicted_again(tmp_path, image, which) -> None:
    ckpt = make_checkpoint()
    out = tmp_path / "p.zarr"
    predict_to_zarr(ckpt, str(image), str(out), tile=32, progress=False)
    good = np.asarray(zarr.open_array(str(out / "labels/mask/0"))[...])
    damaged = out / which
    damaged.write_bytes(damaged.read_bytes()[:3])
    info = json.loads((out / ".zattrs").read_text())
    info["scribble_unet"]["complete"] = False  # as if the pyramid was still to be built
    (out / ".zattrs").write_text(json.dumps(info))
    res = predict_to_zarr(ckpt, str(image), str(out), tile=32, progress=False)
    assert res.computed == 1 and any("damaged" in n for n in res.notes)
    np.testing.assert_array_equal(np.asarray(zarr.open_array(str(out / "labels/mask/0"))[...]), good)


def test_huge_class_count_error_line_is_short(tmp_path, capsys, image) -> None:
    path = craft(tmp_path, config={"n_classes": 10**6, "class_names": [f"c{i}" for i in range(10**6)]})
    code, _, err = run(capsys, "predict", "--model", path, "--image", image, "--out", tmp_path / "o", "--quiet")
    assert code == 2 and one_line(err)


# -- a full disk ---------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and a kernel that allows it: skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs a tmpfs mount, which needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_while_saving_a_model_is_one_line_and_keeps_the_old_one(small_disk, capsys) -> None:
    path = small_disk / "m.safetensors"
    save_checkpoint(path, make_checkpoint(width=2))
    before = path.read_bytes()
    with pytest.raises(ScribbleUNetError) as info:
        save_checkpoint(path, make_checkpoint(width=64))  # megabytes: does not fit
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert not [p for p in small_disk.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_while_creating_the_output_then_rerun_recovers(small_disk, tmp_path, capsys, model) -> None:
    img = tmp_path / "img.zarr"
    zarr.create_array(store=str(img), shape=(128, 128), chunks=(64, 64), dtype=np.uint8)[...] = 3
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * 1_020_000)
    out = small_disk / "p.zarr"
    args = ["predict", "--model", model, "--image", img, "--out", out, "--quiet", "--tile", "32"]
    code, _, err = run(capsys, *args)
    assert code == 2 and one_line(err), err
    filler.unlink()
    code, _, err = run(capsys, *args)
    assert code == 0, err
    assert json.loads((out / ".zattrs").read_text())["scribble_unet"]["complete"] is True


def test_resume_of_a_huge_grid_reads_only_the_written_flags(tmp_path) -> None:
    """A 10^6-px-wide image has millions of progress chunks: only those on disk may be read."""
    import zarr

    from scribble_unet.export.resume import _read_flags

    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="w", zarr_format=2)
    arr = root.create_array("progress", shape=(3000, 3000), chunks=(1, 1), dtype=np.uint8, fill_value=0)
    for iy, ix in ((0, 0), (5, 2999), (2999, 7)):
        arr[iy, ix] = 1
    (tmp_path / "out.zarr" / "progress" / "9.9").write_bytes(b"damaged")  # a truncated chunk file

    class NoBulkReads:
        dtype = arr.dtype

        def __getitem__(self, key):
            assert key is not Ellipsis and not isinstance(key, slice), "read the whole flag array"
            return arr[key]

    values, damaged = _read_flags(NoBulkReads(), (3000, 3000), "progress", tmp_path / "out.zarr" / "progress")
    assert values.shape == (3000, 3000) and int(values.sum()) == 3
    assert values[5, 2999] == 1 and values[2999, 7] == 1 and damaged == [(9, 9)]
