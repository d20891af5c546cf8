"""Exact, lazy, tiled prediction.

* :class:`ChunkPredictor` computes the class probabilities of one output chunk from its input window
  (chunk + halo, reflected at the image borders); it is picklable and builds its network once per
  process, so the same object serves threads, processes and dask.distributed workers.
* :func:`predict_lazy` wraps it in dask arrays with ONE task per output chunk and no other
  dependencies: asking for a region computes only the chunks it touches.
* :func:`~scribble_unet.export.to_zarr.predict_to_zarr` (in :mod:`scribble_unet.export`) writes the
  mask and optionally the probabilities chunk by chunk, resumably.

Probabilities have shape ``(K, Y, X)``: for one class (K = 1), the sigmoid of the single logit; for
K > 1 the softmax probabilities of the K object classes (background is ``1 - sum``). The mask holds
0 for background and k for class k (scribble value k + 1).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputImageError, ScribbleUNetError
from ..image import ImageSource, open_image
from ..image.binned import BinnedSource
from ..model.checkpoint import Checkpoint
from ..model.normalize import NanPolicy, Normalization
from .borders import GRADIENT_HALO, REACH, gradient_magnitude, snap_to_edges
from .device import resolve_device
from .probabilities import logits_to_probabilities, probabilities_to_mask
from .resample import needed_range, upsample
from .tiling import TileGrid, read_reflected, reflect_index, round_tile
from .window_net import WindowNet

DEFAULT_TILE = 512
PIECE = 256
"""On the CPU, a chunk is computed in pieces of about this side (px at the network's resolution),
``round(side / PIECE)`` per axis; the whole-image pass (``tile=0``) is one piece."""

_MODEL_CACHE: dict[tuple[str, str], WindowNet] = {}
_MODEL_LOCK = threading.Lock()


def _cached_model(checkpoint: Checkpoint, device: str) -> WindowNet:
    key = (checkpoint.token, device)
    if device.startswith("cuda"):
        # TF32 convolutions round to 10-bit mantissas: tiles and the whole pass would differ by ~1e-3
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    with _MODEL_LOCK:
        model = _MODEL_CACHE.get(key)
        if model is None:
            # oneDNN convolutions run about 1.4x faster on NHWC tensors (docs/performance.md)
            model = WindowNet(checkpoint.build(device), channels_last=device == "cpu")
            _MODEL_CACHE.clear()  # keep one model per process: old checkpoints are not reused
            _MODEL_CACHE[key] = model
        return model


def _pieces(n: int, piece: int, align: int) -> list[tuple[int, int]]:
    """Split ``[0, n)`` into about ``n / piece`` near-equal parts starting on multiples of ``align``."""
    k = max(1, round(n / piece)) if piece else 1
    part = -(-n // k)  # ceil(n / k)
    step = -(-part // align) * align
    return [(a, min(n, a + step)) for a in range(0, n, step)]


class ChunkPredictor:
    """Probabilities of output chunks of one image under one checkpoint.

    Parameters
    ----------
    checkpoint
        The model. Its normalisation is used; a checkpoint without one needs ``normalization``.
    image
        The image (anything :func:`~scribble_unet.image.open_image` takes).
    tile
        Output chunk side, rounded to a multiple of ``2**depth`` (the rounding is reported in
        :attr:`notes`); 0 predicts the whole image as one chunk.
    nan_policy
        ``"error"`` refuses NaN/inf pixels; ``"zero"`` predicts them as normalised value 0.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    snap
        Mask borders on image edges (:mod:`.borders`); None follows the model's ``snap_borders``.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        image: Any,
        tile: int = DEFAULT_TILE,
        nan_policy: NanPolicy = "error",
        device: str = "auto",
        normalization: Normalization | None = None,
        snap: bool | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.source: ImageSource = open_image(image)
        cfg = checkpoint.config
        if self.source.n_channels != cfg.in_channels:
            raise InputImageError(
                f"image has {self.source.n_channels} channel(s) but the model expects {cfg.in_channels}"
            )
        norm = normalization or checkpoint.normalization
        if norm is None:
            raise ScribbleUNetError("the model has no normalisation statistics; pass normalization=")
        if norm.n_channels != cfg.in_channels:
            raise ScribbleUNetError(
                f"normalisation has {norm.n_channels} channel(s) but the model expects {cfg.in_channels}"
            )
        self.normalization = norm
        self.nan_policy: NanPolicy = nan_policy
        if nan_policy not in ("error", "zero"):
            raise ScribbleUNetError(f"nan policy must be 'error' or 'zero', got {nan_policy!r}")
        self.device = str(resolve_device(device))
        self.snap = bool(checkpoint.config.snap_borders if snap is None else snap)
        self.notes: list[str] = []
        # The network runs on the working image (the image binned by cfg.scale); chunks of the
        # full-resolution output start on multiples of align * scale.
        self.work: ImageSource = self.source if cfg.scale == 1 else BinnedSource(self.source, cfg.scale)
        a = cfg.full_align
        self.align = cfg.align
        self.grid_kind = "whole" if tile == 0 else "tiled"
        if tile == 0:
            self.grid = TileGrid.whole(self.source.shape_yx, cfg.halo * cfg.scale, a)
        else:
            rounded = round_tile(tile, a)
            if rounded != tile:
                self.notes.append(f"tile {tile} rounded to {rounded} (a multiple of {a})")
            self.grid = TileGrid(self.source.shape_yx, rounded, cfg.halo * cfg.scale, a)

    @property
    def n_classes(self) -> int:
        return self.checkpoint.config.n_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.checkpoint.config.class_names

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def window(self, iy: int, ix: int) -> np.ndarray:
        """Normalised network input ``(C, h, w)`` for chunk ``(iy, ix)`` (full resolution models)."""
        y0, y1, x0, x1 = self.grid.input_window(iy, ix)
        return self._input(y0, y1, x0, x1)

    def _input(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Normalised working-resolution input window (may extend past the image: reflected)."""
        src = self.work
        raw = read_reflected(src.read, src.shape_yx, y0, y1, x0, x1)
        if self.nan_policy == "error" and np.issubdtype(raw.dtype, np.floating):
            bad = ~np.isfinite(raw)
            if bad.any():
                _, by, bx = (int(v[0]) for v in np.nonzero(bad))
                h, w = src.shape_yx
                f = self.checkpoint.config.scale
                py = int(reflect_index(np.array(y0 + by), h)) * f
                px = int(reflect_index(np.array(x0 + bx), w)) * f
                where = f"at y={py}, x={px}" if f == 1 else f"in the {f}x{f} block at y={py}, x={px}"
                raise InputImageError(
                    f"image has NaN/inf pixels (one {where}); "
                    "pass --nan-policy zero (nan_policy='zero') to predict them as normalised 0"
                )
        return self.normalization.apply(raw, "zero")

    def _forward(self, x: np.ndarray, margin: int) -> torch.Tensor:
        """Probabilities ``(K, h - 2 margin, w - 2 margin)`` of the centre of input window ``x``.

        On the CPU a centre of 1.5 :data:`PIECE` px or more is computed in pieces (each from its own
        sub-window of ``x`` with the same margin, so each is exact): the feature maps of a piece stay in
        the core's cache, which measured faster than one large forward pass or a batch of pieces.
        """
        model = _cached_model(self.checkpoint, self.device)
        t = torch.from_numpy(x)[None].to(self.device)
        if self.device == "cpu":
            t = t.contiguous(memory_format=torch.channels_last)
        h, w = t.shape[-2] - 2 * margin, t.shape[-1] - 2 * margin
        piece = PIECE if self.device == "cpu" and self.grid_kind == "tiled" else 0
        ys, xs = _pieces(h, piece, self.align), _pieces(w, piece, self.align)
        if len(ys) == 1 and len(xs) == 1:
            return logits_to_probabilities(model(t, margin))[0]
        out = torch.empty((self.n_classes, h, w), dtype=torch.float32, device=t.device)
        for y0, y1 in ys:
            for x0, x1 in xs:
                sub = t[..., y0 : y1 + 2 * margin, x0 : x1 + 2 * margin]
                out[:, y0:y1, x0:x1] = logits_to_probabilities(model(sub, margin))[0]
        return out

    @torch.inference_mode()
    def probabilities(self, iy: int, ix: int) -> np.ndarray:
        """Object-class probabilities ``(K, h, w)`` (float32) of output chunk ``(iy, ix)``."""
        y0, y1, x0, x1 = self.grid.chunk_bounds(iy, ix)
        if self.checkpoint.config.scale != 1:
            return self.window_probabilities(y0, y1, x0, x1)
        prob = self._forward(self.window(iy, ix), self.grid.halo)
        return prob[:, : y1 - y0, : x1 - x0].float().cpu().numpy()

    @torch.inference_mode()
    def window_probabilities(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Probabilities of any full-resolution window inside the image: the network runs on the
        working-resolution rows and columns the window needs (interpolates from), with its origin on
        the pooling grid and the usual halo (so they equal the whole working-image pass), then
        :func:`~.resample.upsample` (the identity at scale 1)."""
        cfg = self.checkpoint.config
        f, a, halo = cfg.scale, cfg.align, cfg.halo
        hl, wl = self.work.shape_yx
        ly0, ly1 = needed_range(y0, y1, f, hl)
        lx0, lx1 = needed_range(x0, x1, f, wl)
        ly0, lx0 = ly0 // a * a, lx0 // a * a
        h = -(-(ly1 - ly0) // a) * a
        w = -(-(lx1 - lx0) // a) * a
        x = self._input(ly0 - halo, ly0 + h + halo, lx0 - halo, lx0 + w + halo)
        prob = self._forward(x, halo)[:, : ly1 - ly0, : lx1 - lx0]
        low = prob.float().cpu().numpy()
        return upsample(low, f, (ly0, lx0), (hl, wl), (y0, y1, x0, x1))

    def outputs(self, iy: int, ix: int) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``(K, h, w)`` and mask ``(h, w)`` of output chunk ``(iy, ix)``.

        With snapping on, the probabilities are computed for the chunk and :data:`~.borders.REACH` + 1 px
        around it (inside the image) and the mask's unsure pixels are flooded over the image's gradient
        there (:func:`~.borders.snap_to_edges`); the chunk's pixels then equal the whole-image result.
        """
        if not self.snap:
            prob = self.probabilities(iy, ix)
            return prob, probabilities_to_mask(prob)
        y0, y1, x0, x1 = self.grid.chunk_bounds(iy, ix)
        hgt, wid = self.source.shape_yx
        r = REACH + 1
        wy0, wy1, wx0, wx1 = max(0, y0 - r), min(hgt, y1 + r), max(0, x0 - r), min(wid, x1 + r)
        prob = self.window_probabilities(wy0, wy1, wx0, wx1)
        mask = snap_to_edges(prob, self.window_gradient(wy0, wy1, wx0, wx1))
        iy0, ix0 = y0 - wy0, x0 - wx0
        inner = (slice(iy0, iy0 + y1 - y0), slice(ix0, ix0 + x1 - x0))
        return np.ascontiguousarray(prob[:, inner[0], inner[1]]), np.ascontiguousarray(mask[inner])

    def window_gradient(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Gradient magnitude (:func:`~.borders.gradient_magnitude`) of the normalised full-resolution
        image over a window, from the window plus its context (reflected at the image's borders), so
        any window equals the same pixels of the whole image's."""
        gh = GRADIENT_HALO
        raw = read_reflected(self.source.read, self.source.shape_yx, y0 - gh, y1 + gh, x0 - gh, x1 + gh)
        return gradient_magnitude(self.normalization.apply(raw, "zero"))[gh:-gh, gh:-gh]

    def mask(self, iy: int, ix: int) -> np.ndarray:
        return self.outputs(iy, ix)[1]


@dataclass
class LazyPrediction:
    """Dask views of a prediction: one task per output chunk, computed on demand."""

    probabilities: Any  # dask.array (K, Y, X) float32
    mask: Any  # dask.array (Y, X) uint8
    predictor: ChunkPredictor

    @property
    def grid(self) -> TileGrid:
        return self.predictor.grid


def _outputs_task(predictor: ChunkPredictor, iy: int, ix: int) -> tuple[np.ndarray, np.ndarray]:
    return predictor.outputs(iy, ix)


def _part(outputs: tuple[np.ndarray, np.ndarray], i: int) -> np.ndarray:
    return outputs[i]


def predict_lazy(
    checkpoint: Checkpoint,
    image: Any,
    tile: int = DEFAULT_TILE,
    nan_policy: NanPolicy = "error",
    device: str = "auto",
    normalization: Normalization | None = None,
    snap: bool | None = None,
) -> LazyPrediction:
    """Lazy probabilities and mask of ``image`` as dask arrays.

    One task per output chunk computes its probabilities and mask (:meth:`ChunkPredictor.outputs`),
    reading its window straight from the source; the two arrays are views of those tasks. Slicing a
    region and computing it runs only the chunks the region touches (computing the probabilities and
    the mask in one ``dask.compute`` runs each chunk once).

    Examples
    --------
    >>> import numpy as np
    >>> from scribble_unet.model import ModelConfig, build_model
    >>> from scribble_unet.model.checkpoint import Checkpoint
    >>> from scribble_unet.model.normalize import Normalization
    >>> ckpt = Checkpoint.from_model(build_model(ModelConfig(depth=2, width=4), seed=0),
    ...                              Normalization.identity(1))
    >>> pred = predict_lazy(ckpt, np.zeros((100, 70), np.float32), tile=32)
    >>> pred.mask.shape, pred.mask.chunks
    ((100, 70), ((32, 32, 32, 4), (32, 32, 6)))
    """
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    predictor = ChunkPredictor(checkpoint, image, tile, nan_policy, device, normalization, snap)
    grid = predictor.grid
    k = predictor.n_classes
    token = uuid.uuid4().hex
    both = f"scribble-unet-outputs-{token}"
    name = f"scribble-unet-probabilities-{token}"
    mask_name = f"scribble-unet-mask-{token}"
    dsk: dict[Any, Any] = {(both, iy, ix): (_outputs_task, predictor, iy, ix) for iy, ix in grid}
    dsk.update({(name, 0, iy, ix): (_part, (both, iy, ix), 0) for iy, ix in grid})
    dsk.update({(mask_name, iy, ix): (_part, (both, iy, ix), 1) for iy, ix in grid})
    prob = da.Array(HighLevelGraph.from_collections(name, dsk, dependencies=[]), name, chunks=((k,), *grid.chunks), dtype=np.float32,
                    meta=np.empty((0, 0, 0), np.float32))
    mask_dtype = np.uint8 if k < 255 else np.uint16
    mask = da.Array(HighLevelGraph.from_collections(mask_name, dsk, dependencies=[]), mask_name, chunks=grid.chunks, dtype=mask_dtype, meta=np.empty((0, 0), mask_dtype))
    return LazyPrediction(prob, mask, predictor)


def predict_array(
    checkpoint: Checkpoint, image: Any, tile: int = 0, **kwargs: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``(K, Y, X)`` and mask ``(Y, X)`` of a small image, as numpy arrays."""
    import dask

    pred = predict_lazy(checkpoint, image, tile=tile, **kwargs)
    prob, mask = dask.compute(pred.probabilities, pred.mask, scheduler="synchronous")
    return prob, mask
