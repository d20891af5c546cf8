"""The core never imports napari, Qt, magicgui or superqt (a script or a dask worker may lack them)."""

import subprocess
import sys
import textwrap

FORBIDDEN = ["napari", "qtpy", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy"]


def test_core_modules_import_without_gui_packages() -> None:
    code = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        FORBIDDEN = {FORBIDDEN!r}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in FORBIDDEN:
                    raise ImportError(f"core imported {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        import scribble_unet
        names = [m.name for m in pkgutil.walk_packages(scribble_unet.__path__, "scribble_unet.")
                 if not m.name.startswith("scribble_unet._napari")]
        for name in names:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
        assert not loaded, loaded
        print(len(names))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert int(res.stdout.strip()) >= 8  # the walk really found the core modules


def test_package_import_is_light() -> None:
    """`import scribble_unet` (what napari does at start-up via the manifest) pulls in neither torch nor dask."""
    code = "import sys, scribble_unet; print(any(m in sys.modules for m in ('torch', 'dask')))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
