"""Instance labels from a predicted mask: connected regions, optionally split by a distance-transform
watershed. Pure numpy/scipy/scikit-image functions; :mod:`scribble_unet.export.instances` runs them
chunk by chunk over a whole image.

The definition (what the whole-image function :func:`instance_labels` computes, and what the tiled
export reproduces exactly, see ``docs/instances.md``):

1. **Regions**: connected sets of pixels with the same non-zero mask value, 8-connected (pixels that
   touch by a corner belong together): ``skimage.measure.label(mask, background=0, connectivity=2)``.
   Two touching objects of different classes are two regions.
2. **Split** (optional): a region whose bounding box is at most ``max_extent`` px in both axes is split
   on its own, independently of everything around it: the Euclidean distance transform of the region
   (everything outside it counts as background), markers at its h-maxima (height ``h``), markers
   closer than ``min_distance`` to a higher one dropped, then a watershed of the negated distance from
   the markers inside the region. A region with one marker stays whole; a region larger than
   ``max_extent`` stays whole (it is a tissue sheet or a huge clump, not a clump of a few objects).

Because the split of a region depends on the region alone, it is translation invariant, and a tiled pass
whose window includes every small region touching its chunk gives exactly the whole-image result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SplitOptions:
    """How touching objects are split, all derived from one object diameter (px).

    Attributes
    ----------
    object_diameter
        Typical object diameter in pixels.
    max_extent
        Regions larger than this (bounding box, px, either axis) are not split. Default: 4 diameters
        (a clump of a few objects). It is also the halo the tiled pass reads around each chunk.
    h
        Smallest height of a distance-transform maximum that seeds an object: the object's radius must
        exceed the width of its neck to its neighbour by this much. Default: diameter / 8.
    min_distance
        Seeds closer than this (px) to a higher seed are dropped. Default: diameter / 2.
    """

    object_diameter: float
    max_extent: int = 0
    h: float = 0.0
    min_distance: float = 0.0

    def __post_init__(self) -> None:
        d = float(self.object_diameter)
        if not (math.isfinite(d) and d >= 1):
            raise ValueError(f"object diameter must be at least 1 px, got {self.object_diameter}")
        if self.max_extent <= 0:
            object.__setattr__(self, "max_extent", math.ceil(4 * d))
        if self.h <= 0:
            object.__setattr__(self, "h", max(0.5, d / 8))
        if self.min_distance <= 0:
            object.__setattr__(self, "min_distance", max(1.0, d / 2))

    @property
    def halo(self) -> int:
        """Pixels read around a chunk so that every splittable region touching the chunk or the
        one-pixel ring around it lies wholly inside the window: ``max_extent + 1``."""
        return self.max_extent + 1


def regions(mask: np.ndarray) -> np.ndarray:
    """Connected regions of equal non-zero value (8-connected), labelled 1..n (int32)."""
    from skimage.measure import label

    return np.asarray(label(np.asarray(mask), background=0, connectivity=2), dtype=np.int32)


def split_region(region: np.ndarray, options: SplitOptions) -> np.ndarray:
    """Split one region (a boolean crop holding the whole region) into objects labelled 1..k (int32).

    Depends only on the region's shape (translation invariant): the crop is padded by one pixel of
    background, so what lies outside the region never matters.
    """
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    fg = np.pad(np.asarray(region, dtype=bool), 1)
    dist = ndi.distance_transform_edt(fg)
    maxima = h_maxima(dist, options.h)
    seeds = np.asarray(label(maxima & fg, connectivity=2), dtype=np.int32)
    n = int(seeds.max())
    out = fg.astype(np.int32)
    if n > 1:
        # one point per seed: its first pixel in raster order (translation invariant)
        flat = seeds.ravel()
        idx = np.flatnonzero(flat)
        first = np.full(n + 1, -1, dtype=np.int64)
        first[flat[idx][::-1]] = idx[::-1]  # the last write per seed wins: the first pixel
        pts = first[1:]
        heights = dist.ravel()[pts]
        order = np.lexsort((pts, -heights))  # highest first; ties by raster position
        ys, xs = np.divmod(pts, fg.shape[1])
        kept: list[int] = []
        for i in order:
            if all((ys[i] - ys[j]) ** 2 + (xs[i] - xs[j]) ** 2 >= options.min_distance**2 for j in kept):
                kept.append(int(i))
        if len(kept) > 1:
            renum = np.zeros(n + 1, dtype=np.int32)
            renum[np.asarray(kept) + 1] = np.arange(1, len(kept) + 1, dtype=np.int32)
            markers = renum[seeds]
            out = np.asarray(watershed(-dist, markers, mask=fg), dtype=np.int32)
    return out[1:-1, 1:-1]


def label_window(
    window: np.ndarray,
    core: tuple[int, int, int, int],
    options: SplitOptions | None,
    open_edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
) -> np.ndarray:
    """Objects of ``window`` within ``core`` (window coordinates ``y0, y1, x0, x1``), labelled 1..n.

    Parameters
    ----------
    window
        The mask around the core.
    core
        The part to label. Pixels of the window outside it are context.
    options
        ``None``: regions only (no split).
    open_edges
        Which window sides (top, bottom, left, right) lie inside the image rather than on its border:
        a region touching one of them continues outside the window, so it is treated as larger than
        ``max_extent`` and not split (the halo makes that the truth for regions touching the core).

    Returns
    -------
    int32 array of the core's shape: 0 background, 1..n the objects touching the core, numbered by first
    pixel in raster order. Two core pixels share a value exactly when they are the same object.
    """
    y0, y1, x0, x1 = core
    reg = regions(window)
    if options is not None and reg.max() > 0:
        reg = _split_regions(reg, core, options, open_edges)
    return _consecutive(reg[y0:y1, x0:x1])


def _split_regions(
    reg: np.ndarray, core: tuple[int, int, int, int], options: SplitOptions,
    open_edges: tuple[bool, bool, bool, bool],
) -> np.ndarray:
    """Replace each splittable region touching ``core`` by its objects (new ids above the regions')."""
    from scipy import ndimage as ndi

    y0, y1, x0, x1 = core
    h, w = reg.shape
    out = reg.astype(np.int64)
    next_id = int(reg.max()) + 1
    in_core = np.unique(reg[y0:y1, x0:x1])
    boxes = ndi.find_objects(reg)
    top, bottom, left, right = open_edges
    for rid in in_core[in_core > 0]:
        sy, sx = boxes[rid - 1]
        if max(sy.stop - sy.start, sx.stop - sx.start) > options.max_extent:
            continue
        if (top and sy.start == 0) or (bottom and sy.stop == h) or (left and sx.start == 0) or (
            right and sx.stop == w
        ):
            continue  # continues outside the window: larger than the halo, hence than max_extent
        crop = reg[sy, sx] == rid
        parts = split_region(crop, options)
        if parts.max() > 1:
            sub = out[sy, sx]
            sub[crop] = parts[crop] + (next_id - 1)
            next_id += int(parts.max())
    return out


def _consecutive(lab: np.ndarray) -> np.ndarray:
    """Relabel to 1..n by first pixel in raster order (0 stays 0)."""
    values, first, inverse = np.unique(lab.ravel(), return_index=True, return_inverse=True)
    nonzero = np.flatnonzero(values != 0)
    ids = np.zeros(len(values), dtype=np.int32)
    ids[nonzero[np.argsort(first[nonzero], kind="stable")]] = np.arange(1, len(nonzero) + 1, dtype=np.int32)
    return ids[inverse].reshape(lab.shape)


def label_chunk(
    window: np.ndarray,
    core: tuple[int, int, int, int],
    ring: tuple[int, int, int, int],
    options: SplitOptions | None,
    open_edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
) -> tuple[np.ndarray, np.ndarray]:
    """Objects of a chunk and of the one-pixel ring around it, as one window sees them.

    ``core`` and ``ring`` are rectangles ``(y0, y1, x0, x1)`` in window coordinates, ``ring``
    containing ``core`` (the core grown by one pixel, clipped to the image). Returns the core's labels
    (int32, 1..n by first pixel in raster order) and the ring rectangle's labels with the same ids for
    the same objects and 0 for objects absent from the core: a core pixel and a neighbouring pixel of
    the next chunk are the same object exactly when the ring says so.
    """
    ry0, _, rx0, _ = ring
    y0, y1, x0, x1 = core
    lab = label_window(window, ring, options, open_edges)
    inner = lab[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]
    core_lab = _consecutive(inner)
    table = np.zeros(int(lab.max()) + 1, dtype=np.int32)
    table[inner.ravel()] = core_lab.ravel()
    table[0] = 0
    return core_lab, table[lab]


def instance_labels(mask: np.ndarray, split: bool = True, object_diameter: float | None = None,
                    options: SplitOptions | None = None) -> np.ndarray:
    """Instance labels (int32, 1..n) of a whole mask held in memory: the reference the tiled export
    reproduces exactly.

    ``split=False``: the regions (``skimage.measure.label(mask, connectivity=2)`` up to numbering).
    Otherwise ``options`` or ``SplitOptions(object_diameter)``.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((5, 9), np.uint8); m[1:4, 1:3] = 1; m[1:4, 5:8] = 2
    >>> instance_labels(m, split=False)[2].tolist()
    [0, 1, 1, 0, 0, 2, 2, 2, 0]
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D, got shape {mask.shape}")
    opts = None
    if split:
        if options is None:
            if object_diameter is None:
                raise ValueError("splitting touching objects needs an object diameter")
            options = SplitOptions(object_diameter)
        opts = options
    h, w = mask.shape
    return label_window(mask, (0, h, 0, w), opts)
