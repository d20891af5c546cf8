"""The label rule, in one place: scribble values, class names and colours.

Scribbles: ``0`` unlabelled (ignored by every loss), ``1`` background, ``k + 1`` object class
``k`` (``k = 1..K``). Masks (predictions, exports): ``0`` background, ``k`` class ``k``. So a mask
class ``k`` is scribble value ``k + 1``, and a napari Labels layer of scribbles names value ``v``
``["background", *class_names][v - 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

UNLABELLED = 0
BACKGROUND = 1
FIRST_CLASS = 2
"""Scribble value of the first object class."""


@dataclass(frozen=True)
class LabelScheme:
    """The label values, names and colours of K named object classes.

    Examples
    --------
    >>> s = LabelScheme(("nucleus", "mitosis"))
    >>> s.values, s.names()[3], s.describe()
    ([2, 3], 'mitosis', '0 unlabelled, 1 background, 2 nucleus, 3 mitosis')
    """

    class_names: tuple[str, ...]

    def __init__(self, class_names: Sequence[str]) -> None:
        object.__setattr__(self, "class_names", tuple(class_names))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def values(self) -> list[int]:
        """Scribble values of the object classes: ``2..K+1``."""
        return [self.value_of(k) for k in range(1, self.n_classes + 1)]

    @staticmethod
    def value_of(k: int) -> int:
        """Scribble value of object class ``k`` (1-based; 0 is background in a mask)."""
        return k + 1

    def names(self) -> dict[int, str]:
        """Scribble value -> name: ``1 -> "background"``, ``k + 1 -> class_names[k - 1]``."""
        return {BACKGROUND: "background", **{self.value_of(k): n for k, n in enumerate(self.class_names, 1)}}

    def layer_names(self) -> list[str]:
        """Names of scribble values ``1..K+1`` in order (a napari Labels layer's ``class_names``)."""
        return ["background", *self.class_names]

    def values_text(self) -> str:
        """The object classes' values in words: ``"value 2"`` or ``"values 2..K+1"``."""
        k = self.n_classes
        return f"value {FIRST_CLASS}" if k == 1 else f"values {FIRST_CLASS}..{self.value_of(k)}"

    def describe(self, unlabelled: str = "unlabelled") -> str:
        """The label values as words, e.g. ``"0 unlabelled, 1 background, 2 nucleus"``."""
        parts = [f"{UNLABELLED} {unlabelled}", f"{BACKGROUND} background"]
        parts += [f"{v} {name}" for v, name in zip(self.values, self.class_names, strict=True)]
        return ", ".join(parts)

    def mask_colors(self) -> dict[int, tuple[float, float, float, float]]:
        """Colours (RGBA, 0..1) of mask values ``1..K``, as in exported label images."""
        from .ome.ngff import class_colors

        return {k: tuple(c / 255 for c in rgba) for k, rgba in enumerate(class_colors(self.n_classes), 1)}  # type: ignore[misc]


def scribble_values(mask: np.ndarray) -> np.ndarray:
    """Scribble-style values of a mask: background 0 -> 1, class ``k`` -> ``k + 1`` (int64)."""
    return mask.astype(np.int64) + 1
