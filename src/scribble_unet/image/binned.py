"""An image and its scribbles seen at a coarser working resolution (integer binning).

Large objects need a field of view the network does not have at full resolution; rather than a deeper
(and, on a CPU, much slower) network, the network works on the image binned by an integer factor
``f``: working pixel ``(i, j)`` is the mean of the full-resolution block ``[i f, (i + 1) f) x
[j f, (j + 1) f)``. The working image has ``ceil(Y / f) x ceil(X / f)`` pixels; a block cut by the
image's bottom or right border is the mean of the pixels it has. Scribbles are binned with the
maximum (an object stroke crossing a block labels it; unlabelled stays 0 only where the block holds no
label), so a one-pixel stroke survives binning.

Both views are defined block by block, so any window of the working image is computed from the
full-resolution window under it alone: tiled prediction at the working resolution stays exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .source import ImageSource


def binned_length(n: int, factor: int) -> int:
    """Number of working pixels along an axis of ``n`` full-resolution pixels."""
    return -(-int(n) // int(factor))


def _block_reduce(block: np.ndarray, factor: int, axis: int, how: str) -> np.ndarray:
    n = block.shape[axis]
    starts = np.arange(0, n, factor)
    if how == "max":
        return np.maximum.reduceat(block, starts, axis=axis)
    sums = np.add.reduceat(block, starts, axis=axis)
    counts = np.minimum(factor, n - starts).astype(np.float32)
    shape = [1] * block.ndim
    shape[axis] = len(starts)
    return sums / counts.reshape(shape)


def bin_mean(block: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of the last two axes (partial blocks at the end averaged)."""
    if factor == 1:
        return block
    out = _block_reduce(block.astype(np.float32, copy=False), factor, block.ndim - 2, "mean")
    return _block_reduce(out, factor, block.ndim - 1, "mean").astype(np.float32, copy=False)


def bin_max(block: np.ndarray, factor: int) -> np.ndarray:
    """Maximum over ``factor x factor`` blocks of the last two axes."""
    if factor == 1:
        return block
    out = _block_reduce(block, factor, block.ndim - 2, "max")
    return _block_reduce(out, factor, block.ndim - 1, "max")


class BinnedSource(ImageSource):
    """``source`` binned by ``factor`` (block means, float32), read window by window."""

    def __init__(self, source: ImageSource, factor: int) -> None:
        if int(factor) != factor or factor < 1:
            raise ValueError(f"binning factor must be a positive whole number, got {factor}")
        self.source = source
        self.factor = int(factor)
        h, w = source.shape_yx
        self.shape_yx = (binned_length(h, self.factor), binned_length(w, self.factor))
        self.n_channels = source.n_channels
        self.dtype = np.dtype(np.float32)
        self.name = f"{source.name} (binned {self.factor}x)"

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        self._check_window(y0, y1, x0, x1)
        f = self.factor
        h, w = self.source.shape_yx
        raw = self.source.read(y0 * f, min(y1 * f, h), x0 * f, min(x1 * f, w))
        return bin_mean(raw, f)


class BinnedLabels:
    """A ``(Y, X)`` scribble array binned by ``factor`` with the block maximum (``how="mean"``: the
    block mean, for per-pixel weights); sliced like an array, ``labels[y0:y1, x0:x1]``."""

    def __init__(self, labels: Any, factor: int, how: str = "max") -> None:
        if how not in ("max", "mean"):
            raise ValueError(f"how must be 'max' or 'mean', got {how!r}")
        self.labels = labels
        self.how = how
        self.factor = int(factor)
        h, w = (int(s) for s in labels.shape)
        self.full_shape = (h, w)
        self.shape = (binned_length(h, self.factor), binned_length(w, self.factor))
        self.dtype = np.dtype(labels.dtype) if how == "max" else np.dtype(np.float32)
        self.ndim = 2
        chunks = getattr(labels, "chunks", None)
        if chunks is not None and len(chunks) == 2 and all(isinstance(c, int) for c in chunks):
            self.chunks: tuple[int, int] | None = (
                max(1, int(chunks[0]) // self.factor),
                max(1, int(chunks[1]) // self.factor),
            )
        else:
            self.chunks = None

    def __getitem__(self, key: Any) -> np.ndarray:
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) for k in key)):
            raise TypeError("binned labels are read with two slices, labels[y0:y1, x0:x1]")
        (y0, y1, _), (x0, x1, _) = (k.indices(n) for k, n in zip(key, self.shape, strict=True))
        f = self.factor
        h, w = self.full_shape
        block = np.asarray(self.labels[y0 * f : min(y1 * f, h), x0 * f : min(x1 * f, w)])
        return bin_max(block, f) if self.how == "max" else bin_mean(block, f)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[0 : self.shape[0], 0 : self.shape[1]]
        return out if dtype is None else out.astype(dtype)

    def working_region(self, region: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The working-resolution region covering full-resolution region ``(y0, y1, x0, x1)``."""
        f = self.factor
        y0, y1, x0, x1 = region
        return y0 // f, binned_length(y1, f), x0 // f, binned_length(x1, f)
