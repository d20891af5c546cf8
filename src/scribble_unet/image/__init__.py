"""Images in, never read whole: one interface over numpy, dask, zarr, OME-Zarr, TIFF and procedural images.

:func:`open_image` turns a path or an array into an :class:`ImageSource`, a 2D image of shape
``(C, Y, X)`` read window by window. One module per backend (:mod:`.array`, :mod:`.zarr_image`,
:mod:`.tiff_image`, :mod:`.procedural`); the axis rules live once in :mod:`.axes`.
"""

from __future__ import annotations

from .array import ArraySource
from .open import open_image, open_path
from .source import ImageSource

__all__ = ["ArraySource", "ImageSource", "open_image", "open_path"]
