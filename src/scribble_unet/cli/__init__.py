"""The ``scribble-unet`` command line: ``main`` dispatches to the subcommands."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
