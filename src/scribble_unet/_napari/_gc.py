"""Python's cycle collector, kept off the old heap while a training run is under way.

A full ("generation 2") collection scans every object the process holds: with napari, Qt and torch
loaded that took 150-210 ms of the GUI thread here (benchmarks/gui_live.py records them), in
whichever handler happened to allocate, about once every minute or two of training. While a run is
under way the objects that were alive when it started are frozen (:func:`gc.freeze`): collections
then scan only what was made since. When the last run ends they are unfrozen, so cycles among them
are collected as before: nothing is kept for good.
"""

from __future__ import annotations

import gc

_HOLDERS: set[int] = set()


def hold(owner: object) -> None:
    """``owner`` starts a run: freeze the objects alive now (if no other run holds them already)."""
    if not _HOLDERS:
        gc.freeze()
    _HOLDERS.add(id(owner))


def release(owner: object) -> None:
    """``owner``'s run ended (or it closed): the last holder unfreezes them. Releasing twice is harmless."""
    if id(owner) not in _HOLDERS:
        return
    _HOLDERS.discard(id(owner))
    if not _HOLDERS:
        gc.unfreeze()


def holding() -> bool:
    """Whether a run holds the collector off the old heap now."""
    return bool(_HOLDERS)
