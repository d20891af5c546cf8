import json
import pickle

import numpy as np
import pytest
import torch

from helpers import make_checkpoint
from scribble_unet.errors import CheckpointError, ScribbleUNetError
from scribble_unet.inference.predict import predict_array
from scribble_unet.model.checkpoint import load_checkpoint, read_header, save_checkpoint


def test_roundtrip_keeps_weights_config_and_normalisation(tmp_path) -> None:
    ckpt = make_checkpoint(depth=2, width=4, channels=2, classes=2)
    ckpt.training["steps"] = 12
    path = save_checkpoint(tmp_path / "m.safetensors", ckpt)
    back = load_checkpoint(path)
    assert back.config == ckpt.config
    assert back.normalization == ckpt.normalization
    assert back.training["steps"] == 12
    assert back.token == ckpt.token
    img = np.random.default_rng(0).random((2, 20, 30)).astype(np.float32)
    from scribble_unet.image import ArraySource

    a = predict_array(ckpt, ArraySource(img, 0), device="cpu")[0]
    b = predict_array(back, ArraySource(img, 0), device="cpu")[0]
    assert np.array_equal(a, b)


def test_header_is_plain_json(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", make_checkpoint(classes=1))
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    assert meta["format"] == "scribble-unet"
    assert json.loads(meta["config"])["depth"] == 2
    assert read_header(path)["normalization"]["low"] == [0.0]


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["pickle", "torch"])
def test_file_crafted_to_run_code_is_refused(tmp_path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"state_dict": _Evil(str(marker))}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="not a scribble-unet model"):
        load_checkpoint(path)
    assert not marker.exists()


def test_other_safetensors_file_is_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "x.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a scribble-unet model"):
        load_checkpoint(tmp_path / "x.safetensors")


def test_missing_and_truncated_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    path = save_checkpoint(tmp_path / "m.safetensors", make_checkpoint())
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.safetensors")


def test_save_is_atomic_and_checks_folder(tmp_path) -> None:
    with pytest.raises(ScribbleUNetError, match="does not exist"):
        save_checkpoint(tmp_path / "no" / "m.safetensors", make_checkpoint())
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, make_checkpoint())
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left


@pytest.mark.parametrize(
    ("config", "norm", "match"),
    [
        ('{"depth": "3"}', "null", "damaged scribble-unet header"),
        ('{"depth": 3, "class_names": 5}', "null", "damaged scribble-unet header"),
        ('{"depth": 3, "colour": 1}', "null", "unknown model config keys: colour"),
        ('{"depth": 3}', '{"lo": [0]}', "damaged scribble-unet header"),
    ],
)
def test_malformed_header_is_one_line_error(tmp_path, config: str, norm: str, match: str) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    meta = {"format": "scribble-unet", "format_version": "1", "config": config, "normalization": norm, "training": "{}"}
    save_file({"w": torch.zeros(1)}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)
