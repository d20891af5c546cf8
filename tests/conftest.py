"""Shared test set-up: the tests mirror ``src/scribble_unet`` (``tests/<package>/test_*.py``).

This file sits at the top of ``tests/``: pytest (rootdir-based "prepend" imports, no
``__init__.py`` files) puts this folder on ``sys.path``, so every test imports the shared
``helpers`` module as ``from helpers import ...``. Test file names stay unique across folders.
"""
