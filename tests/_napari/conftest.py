"""The viewer tests need napari, pytest-qt and a display (run the suite under xvfb-run)."""

from __future__ import annotations

import importlib.util
import os

_HAVE = all(importlib.util.find_spec(m) is not None for m in ("napari", "pytestqt"))
_DISPLAY = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))

# Modules that open a viewer are not even imported without them (test_napari_plugin.py needs neither).
collect_ignore = [] if (_HAVE and _DISPLAY) else [
    "test_napari_live.py", "test_napari_open.py", "test_napari_project.py", "test_napari_widgets.py"
]
