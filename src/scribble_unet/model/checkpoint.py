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
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import OptionTypeError, TrainOptions
from ..errors import CheckpointError, ScribbleUNetError
from ..ome.files import atomic_write, json_depth
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
    #: The file it was loaded from (None for a model made in memory); never removed by an overwrite.
    path: Path | None = field(default=None, compare=False)
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
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": checkpoint.config.to_json(),
        "normalization": checkpoint.normalization.to_json() if checkpoint.normalization else "null",
        "training": json.dumps(checkpoint.training, default=str),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint.state_dict.items()}
    # one writer for files: temporary file beside the target, fsync, rename; umask respected; a full
    # disk is one line and leaves the previous model intact; leftovers of a killed run are removed
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata), what=f"model {path}")
    return path


MAX_HEADER_BYTES = 16 << 20
"""Largest safetensors header read (the header of a depth-6 model with long training notes is < 1 MB)."""
MAX_JSON_DEPTH = 32
"""Deepest JSON nesting accepted in a header field (ours nest at most 4 levels)."""


def _loads(text: Any, what: str, path: Path) -> Any:
    if not isinstance(text, str):
        raise CheckpointError(f"{path} has a damaged scribble-unet header ({what} is not a string)")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path} has a damaged scribble-unet header ({what} is not valid JSON)") from e
    if json_depth(value) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{path} has a damaged scribble-unet header ({what} nests deeper than {MAX_JSON_DEPTH})")
    return value


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the JSON header of a checkpoint without touching the weights.

    Returns the decoded metadata: ``config``, ``normalization`` and ``training`` as dicts.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model file {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"model path {path} is a directory, not a model file")
    raw = _read_raw_header(path)
    meta = raw.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a scribble-unet model")
    if meta.get("format_version") != FORMAT_VERSION:
        version = str(meta.get("format_version"))[:20]
        raise CheckpointError(f"{path} has checkpoint format version {version}; this version reads {FORMAT_VERSION}")
    if "config" not in meta:
        raise CheckpointError(f"{path} has a damaged scribble-unet header (no config)")
    return {
        "config": _loads(meta["config"], "config", path),
        "normalization": _loads(meta.get("normalization", "null"), "normalization", path),
        "training": _loads(meta.get("training", "{}"), "training", path),
        "tensors": {k: v for k, v in raw.items() if k not in ("__metadata__", "__data_bytes__")},
        "data_bytes": raw["__data_bytes__"],
    }


def _read_raw_header(path: Path) -> dict[str, Any]:
    """The safetensors header as a dict (size and nesting capped); ``__data_bytes__`` added."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path} is not a scribble-unet model (file too short)")
            n = int.from_bytes(head, "little")
            size = os.fstat(f.fileno()).st_size
            if n <= 0 or n > size - 8:
                raise CheckpointError(
                    f"{path} is not a scribble-unet model (not a safetensors file; pickled .pt/.pth files "
                    "are refused because loading them could run code)"
                )
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path} has a header of {n} bytes, more than a scribble-unet model has")
            text = f.read(n)
    except OSError as e:
        raise CheckpointError(f"cannot read model file {path}: {e.strerror or e}") from e
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path} is not a scribble-unet model (unreadable header)") from e
    if not isinstance(header, dict) or json_depth(header) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{path} is not a scribble-unet model (unreadable header)")
    header["__data_bytes__"] = size - 8 - n
    return header


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
           "I64": torch.int64}


def _check_normalization(norm: Any, config: ModelConfig, path: Path) -> Normalization | None:
    """The normalisation of a header: per channel, finite and ordered (low < high), percentiles in order."""
    if norm is None:
        return None
    bad = f"{path} has a damaged scribble-unet header (normalisation"
    if not isinstance(norm, dict):
        raise CheckpointError(f"{bad} is not an object)")
    low, high = norm.get("low"), norm.get("high")
    if not (isinstance(low, list) and isinstance(high, list)):
        raise CheckpointError(f"{bad} low/high are not lists)")
    if len(low) != config.in_channels or len(high) != config.in_channels:
        raise CheckpointError(f"{bad} has {len(low)}/{len(high)} channels, the model {config.in_channels})")
    values = [*low, *high, norm.get("p_low", 1.0), norm.get("p_high", 99.8)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise CheckpointError(f"{bad} holds a value that is not a finite number)")
    if not all(lo < hi for lo, hi in zip(low, high, strict=True)):
        raise CheckpointError(f"{bad} low is not below high in every channel)")
    if not 0 <= values[-2] < values[-1] <= 100:
        raise CheckpointError(f"{bad} percentiles are not 0 <= low < high <= 100)")
    return Normalization.from_dict(norm)


def expected_tensors(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Names, shapes and dtypes of the weights of ``config``'s network, without allocating them."""
    with torch.device("meta"):
        model = UNet(config)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def _check_tensors(header: dict[str, Any], data_bytes: int, config: ModelConfig, path: Path) -> None:
    """Every tensor of the file is one the architecture has, with its shape, inside the file."""
    expected = expected_tensors(config)
    missing = set(expected) - set(header)
    extra = set(header) - set(expected)
    if missing or extra:
        raise CheckpointError(
            f"{path}: weights do not match the stored architecture "
            f"({len(missing)} missing, {len(extra)} unexpected tensors)"
        )
    for name, (shape, dtype) in expected.items():
        entry = header[name]
        got = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(got, list) or tuple(got) != shape:
            shown = str(got)[:60]
            raise CheckpointError(f"{path}: tensor {name} has shape {shown}, expected {shape}")
        kind = _DTYPES.get(str(entry.get("dtype")))
        if kind is None or kind.is_floating_point != dtype.is_floating_point:
            raise CheckpointError(f"{path}: tensor {name} has dtype {str(entry.get('dtype'))[:10]}")
        offsets = entry.get("data_offsets")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_bytes
                or offsets[1] - offsets[0] != math.prod(shape) * kind.itemsize):
            raise CheckpointError(f"{path}: tensor {name} lies outside the file (truncated or damaged)")


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`; never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_header(path)
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{path} has a damaged scribble-unet header (config is not an object)")
    try:
        config = ModelConfig.from_dict(meta["config"])
        if isinstance(meta["training"], dict) and meta["training"].get("train_config") is not None:
            if not isinstance(meta["training"]["train_config"], dict):
                raise CheckpointError(f"{path} has a damaged scribble-unet header (train_config)")
            TrainOptions(**meta["training"]["train_config"])
    except CheckpointError:
        raise
    except OptionTypeError as e:
        raise CheckpointError(f"{path} has a damaged scribble-unet header ({e})") from e
    except ScribbleUNetError as e:
        raise CheckpointError(f"{path}: {e}") from e
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path} has a damaged scribble-unet header ({type(e).__name__}: {e})") from e
    norm = _check_normalization(meta["normalization"], config, path)
    # shapes against the architecture BEFORE any tensor is allocated (a header cannot choose the memory)
    _check_tensors(meta["tensors"], meta["data_bytes"], config, path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: damaged weights ({one_line(e)})") from e
    if config.pixel_forest:  # the forest is refitted from these rows: refuse rows it cannot learn from
        values, rows = state.get("forest.row_values"), state.get("forest.rows")
        if values is None or rows is None or not bool(torch.isfinite(rows).all()) or (
                int(values.min()) < 0 or int(values.max()) > config.n_classes + 1):
            raise CheckpointError(f"{path}: damaged pixel forest (label values outside 0..{config.n_classes + 1} "
                                  "or non-finite features)")
    return Checkpoint(config, state, norm, meta["training"] if isinstance(meta["training"], dict) else {}, path)


def one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
