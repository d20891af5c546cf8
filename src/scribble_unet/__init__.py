"""napari-scribble-unet: train a U-Net from sparse scribbles and predict lazily on huge images.

The core (everything outside :mod:`scribble_unet._napari`) is Qt-free and can be used from scripts, the
``scribble-unet`` command line and dask workers. Heavy imports (torch, dask) happen in the submodules,
so importing this package is cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
