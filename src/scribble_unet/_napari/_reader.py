"""Reader contribution: zarr arrays, OME-Zarr images (with their label images) and TIFF files.

Images come back as multiscale layers when they are large: a stored pyramid is used as is; a single
large array gets a display pyramid (:class:`~scribble_unet.image.display.DisplayPyramid`) whose coarse
levels are filled in a worker thread once the layer is in a viewer (:mod:`._display`), so neither
opening the image nor a zoomed-out view reads the whole image on the GUI thread. Its contrast limits
come from the central chunk, so napari computes none on the data (see :func:`._display.start_filling`
for the full range, set once the pass is over).

An export (an OME-Zarr group holding only label images) opens as its label images alone, each one
Labels layer with the class names and colours of its ``image-label`` metadata, as the live
prediction shows them; the export's bookkeeping arrays (``progress``, ``input_hash``, ...) and its
probabilities are never shown (open ``export.zarr/probabilities`` itself to see those).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError

LayerData = list[tuple[Any, dict[str, Any], str]]

_SUFFIXES = (".zarr", ".tif", ".tiff")
MULTISCALE_ABOVE = 2048
"""Images with a side larger than this are shown as multiscale layers (a single-scale layer is
loaded whole on the GUI thread: 4096² uint16 took 0.66 s)."""


def get_reader(path: str | list[str]) -> Callable[[Any], LayerData] | None:
    """Return :func:`read` when ``path`` looks like something this plugin reads, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    name = p.name.lower().rstrip("/")
    if name.endswith(_SUFFIXES):
        return read
    if p.is_dir() and any((p / m).exists() for m in ("zarr.json", ".zarray", ".zgroup")):
        return read
    return None


def strided_levels(array: Any, min_side: int = 1024) -> list[Any]:
    """A lazy display pyramid ``[a, a[::2, ::2], ...]`` over the last two axes of ``array``."""
    levels = [array]
    step = 2
    while max(array.shape[-2:]) // step >= min_side:
        levels.append(array[..., ::step, ::step])
        step *= 2
    return levels


def _image_layer(path: str) -> tuple[Any, dict[str, Any], str]:
    from ..image import open_image

    src = open_image(path)
    levels = [lvl if src.n_channels > 1 else lvl[0] for lvl in src.levels()]
    metadata: dict[str, Any] = {"scribble_unet_source": src, "path": os.fspath(path)}
    extra: dict[str, Any] = {}
    if len(levels) == 1 and max(src.shape_yx) > MULTISCALE_ABOVE:
        if src.n_channels == 1:
            from ._display import PYRAMID_KEY, display_pyramid

            pyramid = display_pyramid(levels[0])
            levels = pyramid.levels()
            metadata[PYRAMID_KEY] = pyramid
            if pyramid.dtype != np.uint8:  # napari shows uint8 as 0-255 without computing anything
                extra["contrast_limits"] = pyramid.estimate_range()
        else:
            levels = strided_levels(levels[0])
    kwargs: dict[str, Any] = {
        "name": src.name,
        "multiscale": len(levels) > 1,
        "metadata": metadata,
        **extra,
    }
    if src.n_channels > 1:
        kwargs["channel_axis"] = 0
    data = levels if len(levels) > 1 else levels[0]
    return data, kwargs, "image"


def _is_image_group(path: Path) -> bool:
    """Whether ``path`` is an image (an array, or a group with ``multiscales``), not only label images."""
    import zarr

    from ..ome.ngff import multiscales_attr

    try:
        node = zarr.open(path, mode="r")
    except Exception:  # not zarr (a TIFF, say): let the image reader decide
        return True
    if isinstance(node, zarr.Array):
        return True
    return bool(multiscales_attr(dict(node.attrs))) or not (path / "labels").exists()


def _label_style(image_label: Any) -> dict[str, Any]:
    """Layer keywords for NGFF ``image-label`` metadata: its colours, and its class names as features."""
    if not isinstance(image_label, dict):
        return {}
    out: dict[str, Any] = {}
    colors: dict[int | None, list[float]] = {None: [0.0, 0.0, 0.0, 0.0]}
    for c in image_label.get("colors") or []:
        if isinstance(c, dict) and isinstance(c.get("label-value"), int) and isinstance(c.get("rgba"), list):
            colors[c["label-value"]] = [float(v) / 255 for v in c["rgba"]][:4]
    if len(colors) > 1:
        from napari.utils.colormaps import DirectLabelColormap

        out["colormap"] = DirectLabelColormap(color_dict=colors)
    names = {p["label-value"]: str(p["class"]) for p in image_label.get("properties") or []
             if isinstance(p, dict) and isinstance(p.get("label-value"), int) and "class" in p}
    if names:
        values = sorted(names)
        out["features"] = {"index": values, "class": [names[v] for v in values]}
        out["class_names"] = [names[v] for v in values]
    return out


def _label_layers(path: Path) -> LayerData:
    """Label images under ``path/labels`` (OME-Zarr), each as a (multiscale) Labels layer."""
    import dask.array as da
    import zarr

    out: LayerData = []
    try:
        labels = zarr.open_group(path / "labels", mode="r")
    except Exception:  # no labels group: nothing to add
        return out
    attrs: dict[str, Any] = dict(labels.attrs)
    names = attrs.get("labels") or attrs.get("ome", {}).get("labels") or []
    for name in names:
        group = labels[name]
        gattrs: dict[str, Any] = dict(group.attrs)
        ms = gattrs.get("multiscales") or gattrs.get("ome", {}).get("multiscales")
        if not ms:
            continue
        levels = [da.from_zarr(group[d["path"]]) for d in ms[0]["datasets"]]
        image_label = gattrs.get("image-label") or gattrs.get("ome", {}).get("image-label")
        style = _label_style(image_label)
        meta = {"path": os.fspath(path / "labels" / name), "image-label": image_label}
        if "class_names" in style:
            meta["class_names"] = style.pop("class_names")
        data = levels if len(levels) > 1 else levels[0]
        out.append((data, {"name": name, "multiscale": len(levels) > 1, "metadata": meta, **style}, "labels"))
    return out


def read(path: str | list[str]) -> LayerData:
    """Read an image (and an OME-Zarr's label images) as napari layer data."""
    if isinstance(path, list):
        path = path[0]
    p = Path(path)
    layers: LayerData = []
    if not p.is_dir() or _is_image_group(p):
        try:
            layers.append(_image_layer(os.fspath(p)))
        except ScribbleUNetError:
            # An OME-Zarr group that holds only label images is still readable.
            if not (p / "labels").exists():
                raise
    if p.is_dir():
        layers.extend(_label_layers(p))
    if not layers:
        raise ScribbleUNetError(f"{path} holds no image or label image")
    return layers
