"""The interface of every image: a 2D image of shape ``(C, Y, X)`` read window by window.

:func:`~scribble_unet.image.open_image` turns a path or an array into an :class:`ImageSource`. Sources are picklable (paths are reopened on the other
side), so dask workers read their tile plus halo straight from the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ImageSource:
    """A 2D image with channels, ``(C, Y, X)``, read lazily by windows.

    Attributes
    ----------
    shape_yx
        ``(Y, X)`` size of the full-resolution plane.
    n_channels
        Number of channels C (1 for grayscale).
    dtype
        Pixel type.
    name
        A label for messages and layer names.
    """

    shape_yx: tuple[int, int]
    n_channels: int
    dtype: np.dtype[Any]
    name: str = "image"

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` of every channel as an array ``(C, y1 - y0, x1 - x0)``.

        The window must lie inside the image.
        """
        raise NotImplementedError

    def to_dask(self) -> Any:
        """The whole image as a lazy dask array ``(C, Y, X)``."""
        raise NotImplementedError

    def levels(self) -> list[Any]:
        """Pyramid levels ``(C, Y_l, X_l)`` for display, full resolution first.

        Sources without a stored pyramid return ``[self.to_dask()]``.
        """
        return [self.to_dask()]

    @property
    def chunks_yx(self) -> tuple[int, int] | None:
        """Native chunk size of the storage in Y and X, when it has one."""
        return None

    def _check_window(self, y0: int, y1: int, x0: int, x1: int) -> None:
        h, w = self.shape_yx
        if not (0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w):
            raise IndexError(f"window [{y0}:{y1}, {x0}:{x1}] outside image of shape {self.shape_yx}")
