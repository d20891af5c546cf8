"""OME-Zarr (NGFF 0.4) metadata for the images and label images this package writes.

Version 0.4 (zarr format 2) is what napari-ome-zarr, ome-zarr-py, Fiji's MoBIE/n5-viewer and QuPath
read today; the arrays are written with zarr-python 3 in format 2.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

NGFF_VERSION = "0.4"


def _axes(axes: str) -> list[dict[str, str]]:
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    return [{"name": a, "type": kinds[a]} for a in axes]


def multiscales(name: str, axes: str, n_levels: int, factor: int = 2) -> list[dict[str, Any]]:
    """``multiscales`` attribute for ``n_levels`` levels ``"0"``, ``"1"``, ... downsampled in y and x."""
    datasets = []
    for level in range(n_levels):
        scale = [float(factor**level) if a in "yx" else 1.0 for a in axes]
        datasets.append({"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    return [{"version": NGFF_VERSION, "name": name, "axes": _axes(axes), "datasets": datasets}]


def class_colors(n: int) -> list[list[int]]:
    """Distinct, saturated RGBA colours for ``n`` classes (golden-ratio hue steps)."""
    out = []
    for k in range(n):
        r, g, b = colorsys.hsv_to_rgb((0.12 + 0.618034 * k) % 1.0, 0.85, 1.0)
        out.append([int(r * 255), int(g * 255), int(b * 255), 255])
    return out


def image_label(class_names: Sequence[str], source_image: str | None = None) -> dict[str, Any]:
    """``image-label`` attribute: value ``k`` (1..K) is class ``class_names[k - 1]``; 0 is background."""
    colors = [{"label-value": 0, "rgba": [0, 0, 0, 0]}]
    props: list[dict[str, Any]] = [{"label-value": 0, "class": "background"}]
    for k, (name, rgba) in enumerate(zip(class_names, class_colors(len(class_names)), strict=True), start=1):
        colors.append({"label-value": k, "rgba": rgba})
        props.append({"label-value": k, "class": name})
    meta: dict[str, Any] = {"version": NGFF_VERSION, "colors": colors, "properties": props}
    if source_image is not None:
        meta["source"] = {"image": source_image}
    return meta
