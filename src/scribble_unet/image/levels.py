"""The array protocol napari needs of one lazily computed pyramid level."""

from __future__ import annotations

from typing import Any

import numpy as np


class ArrayView2D:
    """The part of the array protocol napari reads besides indexing: ``ndim``, ``size``, ``len()`` and
    ``np.asarray`` for a read-only 2D array with a ``shape`` and a ``dtype``; subclasses set those and
    implement ``__getitem__``."""

    ndim = 2
    shape: tuple[int, int]

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self[:, :])
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        raise NotImplementedError


class LevelArray(ArrayView2D):
    """A read-only ``(Y_l, X_l)`` uint8 level ``level`` of an image of full size ``full_shape``.

    Supplies ``shape``, ``dtype``, ``ndim``, ``size``, ``len()`` and ``np.asarray``; subclasses
    implement ``__getitem__``.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, full_shape: tuple[int, int], level: int) -> None:
        self.level = level
        f = 2**level
        self.shape = (-(-full_shape[0] // f), -(-full_shape[1] // f))
