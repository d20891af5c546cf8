"""The napari plugin: readers, writer, sample data and dock widgets (the only Qt/napari code).

Everything heavy is imported lazily by the manifest's ``python_name`` entries, so napari starts
fast and ``import scribble_unet._napari`` imports neither napari nor Qt.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["open_demo_viewer"]


def open_demo_viewer(out_dir: str | os.PathLike[str], sample: str = "nuclei", show: bool = True) -> Any:
    """Open napari with a sample, a scribble project in ``out_dir`` and the Scribble U-Net widget.

    Parameters
    ----------
    out_dir
        Project folder for the scribbles, models and exports (created if missing).
    sample
        ``"nuclei"`` (the real 512² image), ``"small"`` (16384²) or ``"large"`` (65536²).
    show
        Show the window (``False`` for scripts and tests).

    Returns
    -------
    napari.Viewer
        The viewer; call ``napari.run()`` to hand control to the user.
    """
    from ._demo import open_demo_viewer as _open

    return _open(out_dir, sample=sample, show=show)
