"""Simulated user scribbles from a dense mask, for the demo, the tests and the quality benchmark.

A user annotating nuclei draws a short line through some of the objects and a few long strokes
through the background, leaving almost every pixel unlabelled. :func:`simulate_scribbles` imitates
that, reproducibly (seeded):

* object strokes: the skeleton (:func:`skimage.morphology.skeletonize`) of a random subset of the
  objects, thickened by ``brush`` and kept inside the object; round objects, whose skeleton is a dot,
  get a line of half their diameter through their centre along their major axis instead;
* background strokes: straight segments between random background points, kept more than ``margin``
  pixels away from every object (a careful user does not paint over edges), thickened by ``brush``;
* the total is capped at ``max_fraction`` of the image (1 % by default): strokes are taken in drawing
  order (object and background strokes alternating) and a stroke that would exceed the cap is skipped.

The result uses the scribble convention: 0 unlabelled, 1 background, ``c + 1`` for class ``c``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ScribbleUNetError


def simulate_scribbles(
    mask: np.ndarray,
    *,
    semantic: bool = False,
    object_share: float = 0.3,
    max_objects: int | None = None,
    n_background: int = 6,
    background_length: int | None = None,
    brush: int = 1,
    margin: int = 3,
    max_fraction: float = 0.01,
    seed: int = 0,
) -> np.ndarray:
    """Scribbles a user might paint on an image whose dense mask is ``mask``.

    Parameters
    ----------
    mask
        ``(Y, X)`` integer mask, 0 = background. An instance mask (each object its own id, all of one
        class) unless ``semantic``.
    semantic
        ``mask`` holds class numbers ``1..K``; object ``c`` pixels become scribble value ``c + 1`` and
        objects are the connected components of each class.
    object_share
        Share of the objects (of each class) that get a stroke; at least one per class.
    max_objects
        Upper bound on the number of object strokes per class (None: no bound).
    n_background
        Number of background strokes.
    background_length
        Length (px) of each background segment; default a quarter of the image's smaller side.
    brush
        Stroke width in pixels (1: one-pixel lines; 3: lines dilated by a 3x3 square, ...).
    margin
        Background strokes keep a (Euclidean) distance of more than ``margin`` px from every object.
    max_fraction
        Largest share of labelled pixels in the result.
    seed
        Seed; the same inputs and seed give the same scribbles.

    Returns
    -------
    numpy.ndarray
        ``uint8`` scribbles (``uint16`` when there are more than 254 classes), shape of ``mask``.
    """
    from scipy import ndimage as ndi
    from skimage.draw import line
    from skimage.measure import label as cc_label
    from skimage.morphology import skeletonize

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ScribbleUNetError(f"mask must be 2D, got shape {mask.shape}")
    if not np.issubdtype(mask.dtype, np.integer) and mask.dtype != np.bool_:
        raise ScribbleUNetError(f"mask must hold integers, got {mask.dtype}")
    if not 0 < object_share <= 1:
        raise ScribbleUNetError(f"object_share must be in (0, 1], got {object_share}")
    if not 0 < max_fraction <= 1:
        raise ScribbleUNetError(f"max_fraction must be in (0, 1], got {max_fraction}")
    if brush < 1 or margin < 0 or n_background < 0:
        raise ScribbleUNetError("brush must be >= 1, margin and n_background >= 0")
    rng = np.random.default_rng(seed)
    h, w = mask.shape
    classes = np.unique(mask[mask > 0]).astype(np.int64) if semantic else np.array([1], np.int64)
    dtype = np.uint16 if classes.size and classes.max() + 1 > 255 else np.uint8
    foot = np.ones((brush, brush), bool) if brush > 1 else None
    strokes: list[tuple[int, np.ndarray]] = []  # (value, flat positions), in drawing order

    fg = mask > 0
    per_class: list[list[tuple[int, np.ndarray]]] = []
    for c in classes:
        objects = cc_label(mask == c, connectivity=2) if semantic else mask.astype(np.int64)
        slices = ndi.find_objects(objects)
        ids = [i + 1 for i, s in enumerate(slices) if s is not None]
        if not ids:
            continue
        n = max(1, round(object_share * len(ids)))
        if max_objects is not None:
            n = min(n, max_objects)
        chosen = rng.choice(ids, size=min(n, len(ids)), replace=False)
        these: list[tuple[int, np.ndarray]] = []
        for i in chosen:
            sl = slices[int(i) - 1]
            assert sl is not None
            obj = objects[sl] == i
            skel = skeletonize(obj)
            # Round objects skeletonise to a dot; a user would still draw a short line across them:
            # half the object's equivalent diameter, through its centre, along its major axis.
            diameter = float(np.sqrt(4 * obj.sum() / np.pi))
            if skel.sum() < diameter / 2:
                skel |= _centre_line(obj, diameter / 2)
            if foot is not None:
                skel = ndi.binary_dilation(skel, foot) & obj
            ys, xs = np.nonzero(skel)
            if ys.size == 0:
                continue
            these.append((int(c) + 1, (ys + sl[0].start) * w + xs + sl[1].start))
        per_class.append(these)
    # Interleave classes so that the cap drops strokes of every class evenly.
    for k in range(max((len(t) for t in per_class), default=0)):
        for these in per_class:
            if k < len(these):
                strokes.append(these[k])

    # Background: points at least `margin` px away from every object.
    far = ndi.distance_transform_edt(~fg) > margin if fg.any() else np.ones_like(fg)
    length = background_length or max(8, min(h, w) // 4)
    cand = np.flatnonzero(far)
    bg_strokes: list[tuple[int, np.ndarray]] = []
    tries = 0
    while len(bg_strokes) < n_background and cand.size and tries < 20 * max(1, n_background):
        tries += 1
        y0, x0 = divmod(int(cand[rng.integers(cand.size)]), w)
        angle = rng.uniform(0, np.pi)
        y1 = int(np.clip(round(y0 + length * np.sin(angle)), 0, h - 1))
        x1 = int(np.clip(round(x0 + length * np.cos(angle)), 0, w - 1))
        ly, lx = line(y0, x0, y1, x1)
        seg = np.zeros((h, w), bool)
        seg[ly, lx] = True
        if foot is not None:
            seg = ndi.binary_dilation(seg, foot)
        seg &= far
        if seg.sum() < 4:
            continue
        bg_strokes.append((1, np.flatnonzero(seg)))
    # Alternate object and background strokes, so the cap keeps both kinds.
    merged: list[tuple[int, np.ndarray]] = []
    for k in range(max(len(strokes), len(bg_strokes))):
        if k < len(strokes):
            merged.append(strokes[k])
        if k < len(bg_strokes):
            merged.append(bg_strokes[k])

    out = np.zeros(h * w, dtype)
    budget = int(max_fraction * h * w)
    used = 0
    for value, pos in merged:
        new = pos[out[pos] == 0]
        if used + new.size > budget:
            if used == 0:  # always keep something: a first stroke trimmed to the budget
                new = new[:budget]
            else:
                continue
        out[new] = value
        used += new.size
    return out.reshape(h, w)


def _centre_line(obj: np.ndarray, length: float) -> np.ndarray:
    """A line of ``length`` px through the centroid of ``obj`` along its major axis, kept inside it."""
    from skimage.draw import line
    from skimage.measure import regionprops

    props = regionprops(obj.astype(np.uint8))[0]
    cy, cx = props.centroid
    # skimage's orientation is the angle between the row axis and the major axis.
    dy, dx = np.cos(props.orientation), np.sin(props.orientation)
    h = length / 2
    y0, x0 = round(cy - h * dy), round(cx - h * dx)
    y1, x1 = round(cy + h * dy), round(cx + h * dx)
    out = np.zeros(obj.shape, bool)
    ly, lx = line(y0, x0, y1, x1)
    ok = (ly >= 0) & (ly < obj.shape[0]) & (lx >= 0) & (lx < obj.shape[1])
    out[ly[ok], lx[ok]] = True
    return out & obj
