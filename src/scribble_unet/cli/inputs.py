"""Images given on the command line: what ``train`` and ``predict`` read (the napari reader and the
library take what :func:`~scribble_unet.image.open_image` takes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError


def open_cli_image(path: str | Path, channel_axis: int | None = None) -> Any:
    """The ``--image`` of ``train`` and ``predict``: anything :func:`~scribble_unet.image.open_image` reads, or a ``.npy`` file."""
    from ..image import open_image

    p = Path(path)
    if p.suffix.lower() == ".npy" and p.is_file():
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise ScribbleUNetError(f"image {p} is not a readable .npy array ({e})") from e
        return open_image(arr, channel_axis=channel_axis, name=p.stem)
    return open_image(str(p), channel_axis=channel_axis)
