"""OME-Zarr (NGFF 0.4) metadata for the images and label images this package writes.

Version 0.4 (zarr format 2) is what napari-ome-zarr, ome-zarr-py, Fiji's MoBIE/n5-viewer and QuPath
read today; the arrays are written with zarr-python 3 in format 2.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputImageError

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


# Reading


def multiscales_attr(attrs: dict[str, Any]) -> Any:
    """The ``multiscales`` list of NGFF 0.5 (under ``"ome"``) or of 0.4 and earlier (top level)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        return ome["multiscales"]
    return attrs.get("multiscales")


def parse_multiscales(
    multiscales: Any, path: Path
) -> tuple[list[str], list[tuple[str, str]] | None]:
    """Dataset paths and axis roles of the first multiscale image listed in the metadata."""
    bad = InputImageError(f"{path} has malformed OME-Zarr 'multiscales' metadata")
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise bad
    ms = multiscales[0]
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise bad
    paths = [d.get("path") if isinstance(d, dict) else None for d in datasets]
    if not all(isinstance(p, str) and p for p in paths):
        raise bad
    return [str(p) for p in paths], ome_axes(ms.get("axes"), path)


def ome_axes(axes: Any, path: Path) -> list[tuple[str, str]] | None:
    """Axis roles from NGFF ``axes``: dicts (0.4+), plain names (0.3), or absent (0.1/0.2: TCZYX)."""
    if axes is None:
        names = ["t", "c", "z", "y", "x"]
        types: list[str | None] = ["time", "channel", "space", "space", "space"]
    elif isinstance(axes, list) and all(isinstance(a, str) for a in axes):
        names = [a.lower() for a in axes]
        types = [None] * len(names)
    elif isinstance(axes, list) and all(
        isinstance(a, dict) and isinstance(a.get("name"), str) for a in axes
    ):
        names = [a["name"].lower() for a in axes]
        types = [a.get("type") if isinstance(a.get("type"), str) else None for a in axes]
    else:
        raise InputImageError(f"{path} has malformed OME-Zarr 'axes' metadata")
    roles: list[str] = []
    for n, t in zip(names, types, strict=True):
        if n in ("y", "x"):
            roles.append(n)
        elif t == "channel" or n == "c":
            roles.append("c")
        elif t == "time" or n == "t":
            roles.append("t")
        elif n == "z":
            roles.append("z")
        else:
            roles.append(n)
    if "y" not in roles or "x" not in roles:
        # Spatial axes named otherwise: the last two of type "space" are the image plane.
        spatial = [i for i, t in enumerate(types) if t == "space"]
        if len(spatial) >= 2 and "y" not in roles and "x" not in roles:
            roles[spatial[-2]], roles[spatial[-1]] = "y", "x"
    return list(zip(roles, names, strict=True))
