"""Axis rules, once: where the y, x and channel axes of a stored array are, from whatever the file says."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputImageError

# Roles an axis can play. "?" is an axis whose meaning the file does not say (tifffile's "Q", "I", ...,
# or a plain array); any other string is a named axis that must have length 1 (t, z, or a custom one).
Y, X, C, UNKNOWN = "y", "x", "c", "?"


@dataclass(frozen=True)
class Layout:
    """Where the y, x and channel axes sit in a stored array; every other axis has length 1."""

    ndim: int
    y: int
    x: int
    c: int | None

    def index(self, ys: slice, xs: slice, cs: slice) -> tuple[int | slice, ...]:
        """Stored-array index for a window; length-1 axes are indexed with 0 so they drop out."""
        idx: list[int | slice] = [0] * self.ndim
        idx[self.y] = ys
        idx[self.x] = xs
        if self.c is not None:
            idx[self.c] = cs
        return tuple(idx)

    def to_cyx(self, block: np.ndarray) -> np.ndarray:
        """Reorder a block indexed with :meth:`index` (kept axes in stored order) to ``(C, y, x)``."""
        kept = sorted(a for a in (self.c, self.y, self.x) if a is not None)
        order = [kept.index(a) for a in (self.c, self.y, self.x) if a is not None]
        out = block.transpose(order)
        return out if self.c is not None else out[None]


def make_layout(
    axes: Sequence[tuple[str, str]] | None,
    shape: tuple[int, ...],
    channel_axis: int | None,
    where: str,
) -> Layout:
    """Work out the :class:`Layout` of an array from its axis roles (``(role, name)`` per axis).

    ``axes`` is None when the storage says nothing about its axes: then the array must be 2D, or 3D
    with the channel axis given or guessed by the rule of :func:`guess_channel_axis`.
    """
    ndim = len(shape)
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise InputImageError(
                f"channel_axis={channel_axis} is out of range for {where}, which has {ndim} axes {shape}"
            )
        channel_axis %= ndim

    if axes is None:
        if ndim == 2:
            if channel_axis is not None:
                raise InputImageError(
                    f"{where} is a 2D image and has no channel axis; drop channel_axis"
                )
            return Layout(2, 0, 1, None)
        if ndim == 3:
            c3 = channel_axis if channel_axis is not None else guess_channel_axis(shape)
            y3, x3 = (a for a in range(3) if a != c3)
            return Layout(3, y3, x3, c3)
        raise InputImageError(
            f"{where} has {ndim} axes {shape}; only 2D images (Y, X) with an optional channel axis are supported"
        )

    if len(axes) != ndim:
        raise InputImageError(
            f"{where}: its metadata names {len(axes)} axes but the array has {ndim} {shape}"
        )
    roles = [role for role, _ in axes]
    axes_text = "".join(n if len(n) == 1 else f"[{n}]" for _, n in axes)

    # Named axes that are neither channels nor y/x (t, z, ...) are fine only with length 1.
    for (role, axname), size in zip(axes, shape, strict=True):
        if role in (Y, X, C, UNKNOWN) or size == 1:
            continue
        if role == "t":
            what = f"{size} time points"
        elif role == "z":
            what = f"{size} z planes"
        else:
            what = f"{size} entries along axis '{axname}'"
        raise InputImageError(
            f"{where} has {what}; only 2D images are supported for now (axes {axes_text}, "
            f"shape {shape}; save one plane, or a projection, as its own image)"
        )
    for role in (Y, X):
        if roles.count(role) != 1:
            raise InputImageError(
                f"{where}: cannot find exactly one {role} axis in its axes {axes_text}"
            )
    y, x = roles.index(Y), roles.index(X)

    channels = [i for i, r in enumerate(roles) if r == C]
    unknown = [i for i, r in enumerate(roles) if r == UNKNOWN and shape[i] > 1]
    if len(channels) > 1 and sum(shape[i] > 1 for i in channels) > 1:
        raise InputImageError(
            f"{where} has more than one channel axis (axes {axes_text}, shape {shape}); "
            "only 2D images with one channel axis are supported"
        )
    if (channels and unknown) or len(unknown) > 1:
        raise InputImageError(
            f"{where} has {ndim} axes (axes {axes_text}, shape {shape}); "
            "only 2D images with an optional channel axis are supported"
        )
    c: int | None
    if channels:
        # Prefer the one channel axis longer than 1 (an OME-TIFF can list both C and S of length 1).
        c = max(channels, key=lambda i: shape[i])
    elif unknown:
        (c,) = unknown
        if channel_axis is None and shape[c] > 16:
            raise InputImageError(
                f"cannot tell whether axis {c} (length {shape[c]}) of {where} holds channels or planes "
                f"(axes {axes_text}, shape {shape}); pass channel_axis (--channel-axis) if it holds channels"
            )
    else:
        c = None
    if channel_axis is not None and channel_axis != c:
        said = f"axis {c}" if c is not None else "no axis"
        raise InputImageError(
            f"channel_axis={channel_axis} disagrees with {where}, whose axes {axes_text} put the channels on "
            f"{said}; drop channel_axis"
        )
    return Layout(ndim, y, x, c)


# --------------------------------------------------------------------------------------------------
# Sources


def guess_channel_axis(shape: tuple[int, ...]) -> int:
    """Channel axis of a 3D array: the one axis with at most 16 entries, when exactly one has."""
    small = [i for i, s in enumerate(shape) if s <= 16]
    if len(small) == 1:
        return small[0]
    raise InputImageError(
        f"cannot tell which axis of shape {shape} holds the channels; pass channel_axis (--channel-axis)"
    )
