"""napari's asynchronous slicing, turned on for the plugin's session.

By default napari reads the data of a new view on the GUI thread: after a pan, the image's chunks
for the new view are read (18 ms here for a 1920x1080 view of a zarr) in the same turn of the event
loop as the repaint that follows (about 100 ms of software OpenGL composition under Xvfb), and the
viewer stalls for their sum (118-185 ms measured, docs/performance-gui.md). napari's asynchronous
slicing (Preferences > Experimental > "Render Layers Asynchronously") reads on a worker thread and
repaints when the data is there, in separate turns of the loop.

The plugin turns that setting on while its widget is open, without writing napari's settings file for
it, and puts the user's own value back (and writes it) when the last widget closes: napari writes its
settings file for its own reasons meanwhile (adding a dock widget does), and the file must end with the
user's value. The Predict tab has a checkbox for it ("Load views in the background").
"""

from __future__ import annotations

from typing import Any

_STATE: dict[str, Any] = {"users": 0, "user_value": None}


def _settings() -> Any:
    from napari.settings import get_settings

    return get_settings()


def async_slicing() -> bool:
    """Whether napari slices layers asynchronously now."""
    return bool(_settings().experimental.async_)


def set_async_slicing(on: bool, *, save: bool = False) -> None:
    """Turn napari's asynchronous slicing on or off; written to the settings file only if ``save``."""
    settings = _settings()
    if bool(settings.experimental.async_) == bool(on):
        return
    saving = getattr(settings, "_save_on_change", True)
    if not save:
        settings._save_on_change = False
    try:
        settings.experimental.async_ = bool(on)
    finally:
        settings._save_on_change = saving


def acquire() -> None:
    """A widget opened: remember the user's value (first widget) and turn asynchronous slicing on."""
    if _STATE["users"] == 0:
        _STATE["user_value"] = async_slicing()
    _STATE["users"] += 1
    set_async_slicing(True)


def release() -> None:
    """A widget closed: the last one puts the user's own value back."""
    if _STATE["users"] == 0:
        return
    _STATE["users"] -= 1
    if _STATE["users"] == 0 and _STATE["user_value"] is not None:
        user_value = bool(_STATE["user_value"])
        _STATE["user_value"] = None
        # Saved as napari would: if napari wrote its settings file meanwhile (another preference
        # changed), the file holds the session's value, and this puts the user's back.
        set_async_slicing(user_value, save=True)
