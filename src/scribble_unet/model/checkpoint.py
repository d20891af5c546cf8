"""Model files: weights plus JSON configuration, loaded without unpickling anything.

A checkpoint is one `safetensors <https://huggingface.co/docs/safetensors>`_ file. Its header (plain
JSON at the start of the file) carries, as strings:

``format``            ``"scribble-unet"``
``format_version``    ``"1"``
``config``            the :class:`~scribble_unet.model.unet.ModelConfig` as JSON
``normalization``     the :class:`~scribble_unet.model.normalize.Normalization` as JSON, or ``"null"``
``training``          JSON about how the weights were made (steps, loss, ...); models trained by
                      :class:`~scribble_unet.training.trainer.Trainer` also carry the whole run
                      configuration under ``train_config`` (:class:`~scribble_unet.config.TrainOptions`),
                      validated when the file is read (older files without it still load)

Tensors are raw little-endian buffers, so loading runs no code from the file: a pickle (or a
``torch.save`` file crafted to run code when unpickled) is refused with :class:`CheckpointError`.
Files are written to a temporary name and renamed, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import OptionTypeError, TrainOptions
from ..errors import CheckpointError, ScribbleUNetError
from .normalize import Normalization
from .unet import ModelConfig, UNet, build_model

FORMAT = "scribble-unet"
FORMAT_VERSION = "1"


@dataclass
class Checkpoint:
    """A loaded model: configuration, normalisation, weights and training notes."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    normalization: Normalization | None = None
    training: dict[str, Any] = field(default_factory=dict)
    _token: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def train_config(self) -> TrainOptions | None:
        """The configuration of the run that trained these weights (None for untrained models and older files)."""
        raw = self.training.get("train_config")
        return TrainOptions(**raw) if isinstance(raw, dict) else None

    def build(self, device: str | torch.device = "cpu") -> UNet:
        """Instantiate the network with these weights, in eval mode (BatchNorm uses running stats)."""
        model = build_model(self.config)
        model.load_state_dict(self.state_dict)
        model.eval()
        return model.to(device)

    @property
    def token(self) -> str:
        """A short content hash identifying these weights (used to key caches and resumable outputs).

        Computed once: every predicted chunk asks for it, and hashing the weights costs milliseconds.
        """
        if self._token is None:
            self._token = self._compute_token()
        return self._token

    def _compute_token(self) -> str:
        import hashlib

        h = hashlib.sha256()
        h.update(self.config.to_json().encode())
        h.update((self.normalization.to_json() if self.normalization else "null").encode())
        for k in sorted(self.state_dict):
            h.update(k.encode())
            h.update(self.state_dict[k].detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    @classmethod
    def from_model(
        cls,
        model: UNet,
        normalization: Normalization | None = None,
        training: dict[str, Any] | None = None,
    ) -> Checkpoint:
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return cls(model.config, state, normalization, dict(training or {}))


def check_model_path(path: str | os.PathLike[str]) -> Path:
    """Refuse, in one line, a model path that cannot be written: a folder, a missing or read-only parent."""
    path = Path(path)
    if path.is_dir():
        raise ScribbleUNetError(f"model path {path} is a directory; give a file name such as model.safetensors")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ScribbleUNetError(f"folder {parent} for the model does not exist")
    if not os.access(parent, os.W_OK):
        raise ScribbleUNetError(f"folder {parent} for the model is not writable")
    return path


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, then rename)."""
    from safetensors.torch import save_file

    path = check_model_path(path)
    parent = path.parent
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": checkpoint.config.to_json(),
        "normalization": checkpoint.normalization.to_json() if checkpoint.normalization else "null",
        "training": json.dumps(checkpoint.training, default=str),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint.state_dict.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the JSON header of a checkpoint without touching the weights.

    Returns the decoded metadata: ``config``, ``normalization`` and ``training`` as dicts.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model file {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"model path {path} is a directory, not a model file")
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is not a scribble-unet model (file too short)")
        n = int.from_bytes(head, "little")
        size = path.stat().st_size
        if n <= 0 or n > min(size - 8, 100_000_000):
            raise CheckpointError(
                f"{path} is not a scribble-unet model (not a safetensors file; pickled .pt/.pth files "
                "are refused because loading them could run code)"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path} is not a scribble-unet model (unreadable header)") from e
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a scribble-unet model")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {meta.get('format_version')}; this version reads {FORMAT_VERSION}"
        )
    try:
        return {
            "config": json.loads(meta["config"]),
            "normalization": json.loads(meta.get("normalization", "null")),
            "training": json.loads(meta.get("training", "{}")),
        }
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has a damaged scribble-unet header ({e})") from e


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`; never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_header(path)
    try:
        config = ModelConfig.from_dict(meta["config"])
        norm = Normalization.from_dict(meta["normalization"]) if meta["normalization"] else None
        if isinstance(meta["training"], dict) and meta["training"].get("train_config") is not None:
            TrainOptions(**meta["training"]["train_config"])
    except OptionTypeError as e:
        raise CheckpointError(f"{path} has a damaged scribble-unet header ({e})") from e
    except ScribbleUNetError as e:
        raise CheckpointError(f"{path}: {e}") from e
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path} has a damaged scribble-unet header ({type(e).__name__}: {e})") from e
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: damaged weights ({e})") from e
    model = build_model(config)
    expected = model.state_dict()
    missing = set(expected) - set(state)
    extra = set(state) - set(expected)
    if missing or extra:
        raise CheckpointError(
            f"{path}: weights do not match the stored architecture "
            f"({len(missing)} missing, {len(extra)} unexpected tensors)"
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: tensor {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    return Checkpoint(config, state, norm, meta["training"])
