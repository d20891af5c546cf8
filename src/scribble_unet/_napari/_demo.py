"""Open napari with a sample image, a scribble project and the Scribble U-Net widget."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def open_demo_viewer(out_dir: str | os.PathLike[str], sample: str = "nuclei", show: bool = True) -> Any:
    """See :func:`scribble_unet._napari.open_demo_viewer`."""
    import napari

    from ._sample_data import large_sample, nuclei_sample, small_sample

    makers = {"nuclei": nuclei_sample, "small": small_sample, "large": large_sample}
    if sample not in makers:
        raise ValueError(f"unknown sample {sample!r}; use one of {', '.join(makers)}")
    viewer = napari.Viewer(show=show, title="Scribble U-Net demo")
    layers = []
    for data, kwargs, kind in makers[sample]():
        layers.append(getattr(viewer, f"add_{kind}")(data, **kwargs))
    _, widget = viewer.window.add_plugin_dock_widget("napari-scribble-unet", "Scribble U-Net")
    out = Path(out_dir)
    widget.data.folder_edit.setText(str(out / "project"))
    widget.data._refresh_layers()
    widget.data.image_combo.setCurrentText(layers[0].name)
    widget.data.open_project()
    ctrl = widget.controller
    if ctrl.scribble_layer is not None:
        viewer.layers.selection.active = ctrl.scribble_layer
    return viewer


def run_viewer(viewer: Any) -> None:
    """Hand control to the user until the napari window is closed."""
    import napari

    napari.run()
