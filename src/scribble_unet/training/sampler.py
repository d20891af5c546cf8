"""Training tiles centred on labelled pixels, balanced between objects and background.

Random crops of an image where objects are rare are almost all background, and a network trained on
them learns that everything is background. :class:`TileSampler` instead centres every tile on a
labelled training pixel: with probability ``fg_share`` on a pixel of an object class (the class chosen
uniformly among the classes that have training pixels), otherwise on a background pixel. A tile
therefore always contains at least one labelled pixel.

Tiles near the border are completed by mirror reflection (:func:`~scribble_unet.inference.tiling.read_reflected`,
the same convention as prediction). Held-out validation strokes are set to 0 (unlabelled) in the
training labels, wherever they fall in the tile (reflected copies included).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ScribbleUNetError
from ..inference.tiling import read_reflected, reflect_index
from ..model.normalize import Normalization
from ..model.unet import ModelConfig, receptive_field
from .labels import StrokeSplit


@dataclass(frozen=True)
class Augment:
    """Random augmentations of a training tile; each can be turned off.

    Parameters
    ----------
    flips
        Random vertical and horizontal flips.
    rot90
        Random rotation by a multiple of 90 degrees.
    intensity
        Amplitude ``a`` of the intensity jitter on the normalised image: every channel becomes
        ``x * (1 + u) + v`` with ``u, v`` uniform in ``[-a, a]``. 0 disables it.
    elastic
        Elastic deformation as in the U-Net paper: displacement vectors on a coarse
        ``elastic_grid`` x ``elastic_grid`` grid, drawn from a Gaussian with ``elastic_sigma`` px
        standard deviation, interpolated bicubically to every pixel; the image is resampled linearly
        and the labels by nearest neighbour (order 0), so no label value is invented.
    elastic_sigma, elastic_grid
        Size of the displacements (px) and of the coarse grid.
    noise
        Largest standard deviation of additive Gaussian noise on the normalised image; each tile draws
        its level uniformly in ``[0, noise]``. 0 disables it.
    """

    flips: bool = True
    rot90: bool = True
    intensity: float = 0.1
    elastic: bool = False
    elastic_sigma: float = 10.0
    elastic_grid: int = 3
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.noise < 0:
            raise ScribbleUNetError(f"noise amplitude must be >= 0, got {self.noise}")
        if self.intensity < 0:
            raise ScribbleUNetError(f"intensity jitter must be >= 0, got {self.intensity}")
        if self.elastic_sigma < 0:
            raise ScribbleUNetError(f"elastic sigma must be >= 0, got {self.elastic_sigma}")
        if self.elastic_grid < 2:
            raise ScribbleUNetError(f"elastic grid must be at least 2, got {self.elastic_grid}")

    @property
    def margin(self) -> int:
        """Extra context read on each side so that elastic displacements stay inside real pixels."""
        return math.ceil(3 * self.elastic_sigma) if self.elastic and self.elastic_sigma > 0 else 0


NO_AUGMENT = Augment(flips=False, rot90=False, intensity=0.0, elastic=False)


def field_of_view(depth: int) -> int:
    """Side (px) of the window of input pixels that one output pixel of a depth-``depth`` U-Net sees."""
    left, right = receptive_field(depth)
    return left + right + 1


def check_tile(tile: int | None, config: ModelConfig) -> int:
    """The training tile side for ``config``: the smallest multiple of ``2**depth`` that covers the
    network's field of view when ``tile`` is None (at least 64), else ``tile`` rounded up to a multiple
    of ``2**depth``. A tile smaller than the field of view is refused: its centre pixel would not see
    the context it sees at prediction time.
    """
    a = config.align
    fov = field_of_view(config.depth)  # an input filter bank gets its context beside the tile
    if tile is None:
        return max(64, -(-fov // a) * a)
    if tile <= 0:
        raise ScribbleUNetError(f"tile size must be positive, got {tile}")
    t = -(-int(tile) // a) * a
    if t < fov:
        need = -(-fov // a) * a
        raise ScribbleUNetError(
            f"tile {tile} is smaller than the field of view of the network "
            f"({fov} px); use a tile of at least {need}"
        )
    return t


@dataclass
class Tile:
    """One training sample.

    Attributes
    ----------
    image
        ``(C, T, T)`` float32, normalised and augmented.
    labels
        ``(T, T)`` int64 scribble values, held-out strokes set to 0.
    weight
        ``(T, T)`` float32 per-pixel loss weights, or None.
    centre
        ``(value, y, x)``: the label value and image position the tile was centred on.
    """

    image: np.ndarray
    labels: np.ndarray
    weight: np.ndarray | None
    centre: tuple[int, int, int]


class TileSampler:
    """Draws training tiles centred on labelled pixels.

    Parameters
    ----------
    image
        An :class:`~scribble_unet.image.ImageSource` (``shape_yx``, ``n_channels``, ``read``).
    scribbles
        ``(Y, X)`` label array, read by windows.
    split
        Training/validation split of the labelled pixels (:func:`~.labels.split_strokes`); centres are
        drawn from its training pixels.
    tile
        Tile side in pixels.
    normalization
        Applied to every image tile (non-finite pixels become 0).
    fg_share
        Probability that a tile is centred on an object pixel rather than a background pixel.
    augment
        Augmentations (:class:`Augment`).
    weights
        Optional ``(Y, X)`` per-pixel loss weights (e.g. the U-Net border weight map), read like the
        labels.
    context
        Extra image pixels on each side of a tile (labels and weights stay ``tile`` wide): the reach of
        the model's input filter bank, so its responses in the tile are those of prediction.
    """

    def __init__(
        self,
        image: Any,
        scribbles: Any,
        split: StrokeSplit,
        tile: int,
        normalization: Normalization,
        fg_share: float = 0.5,
        augment: Augment = NO_AUGMENT,
        weights: Any | None = None,
        context: int = 0,
    ) -> None:
        if not 0.0 <= fg_share <= 1.0:
            raise ScribbleUNetError(f"foreground share must be in [0, 1], got {fg_share}")
        if tile <= 0:
            raise ScribbleUNetError(f"tile size must be positive, got {tile}")
        self.image = image
        self.scribbles = scribbles
        self.split = split
        self.tile = int(tile)
        self.normalization = normalization
        self.fg_share = float(fg_share)
        self.augment = augment
        self.weights = weights
        self.context = int(context)
        self.shape: tuple[int, int] = tuple(image.shape_yx)

    def set_split(self, split: StrokeSplit) -> None:
        """Use a new split (after the scribbles changed)."""
        self.split = split

    # ------------------------------------------------------------------ centres
    def draw_centre(self, rng: np.random.Generator, on_object: bool | None = None) -> tuple[int, int, int]:
        """Choose ``(value, y, x)``: object with probability ``fg_share``, else background.

        ``on_object`` forces the side (used to stratify batches). When only objects or only background
        have training pixels, that side is always used. The object class is drawn uniformly among the
        classes that have training pixels, then the pixel uniformly among that class's pixels.
        """
        counts = self.split.train_counts
        objects = sorted(v for v in counts if v >= 2)
        has_bg = 1 in counts
        if not objects and not has_bg:
            raise ScribbleUNetError("no labelled training pixel to centre a tile on")
        if on_object is None:
            on_object = bool(rng.random() < self.fg_share)
        if objects and (on_object or not has_bg):
            value = objects[int(rng.integers(len(objects)))]
        else:
            value = 1
        y, x = self.split.sample_train(value, rng)
        return value, y, x

    # ------------------------------------------------------------------ reading
    def _read_plane(self, array: Any, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        def read(a: int, b: int, c: int, d: int) -> np.ndarray:
            return np.asarray(array[a:b, c:d])[None]

        return read_reflected(read, self.shape, y0, y1, x0, x1)[0]

    def read_labels(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Training labels of a window (reflected beyond the borders), held-out strokes set to 0."""
        h, w = self.shape
        iy = reflect_index(np.arange(y0, y1), h)
        ix = reflect_index(np.arange(x0, x1), w)
        ry0, ry1 = int(iy.min()), int(iy.max()) + 1
        rx0, rx1 = int(ix.min()), int(ix.max()) + 1
        block = np.array(self.scribbles[ry0:ry1, rx0:rx1], dtype=np.int64)
        ys, xs = self.split.held_out_in(ry0, ry1, rx0, rx1)
        block[ys - ry0, xs - rx0] = 0
        return block[iy - ry0][:, ix - rx0]

    def read_window(
        self, y0: int, y1: int, x0: int, x1: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Normalised image, training labels and weights of a window (may extend past the image)."""
        img = read_reflected(self.image.read, self.shape, y0, y1, x0, x1)
        img = self.normalization.apply(img, nan_policy="zero")
        labels = self.read_labels(y0, y1, x0, x1)
        weight = None
        if self.weights is not None:
            weight = self._read_plane(self.weights, y0, y1, x0, x1).astype(np.float32)
        return img, labels, weight

    # ------------------------------------------------------------------ tiles
    def sample(self, rng: np.random.Generator, on_object: bool | None = None) -> Tile:
        """Draw one augmented training tile (``on_object`` as in :meth:`draw_centre`)."""
        value, y, x = self.draw_centre(rng, on_object)
        t, c = self.tile, self.context
        m = self.augment.margin + c
        y0, x0 = y - t // 2, x - t // 2
        img, labels, weight = self.read_window(y0 - m, y0 + t + m, x0 - m, x0 + t + m)
        img, labels, weight = augment_tile(img, labels, weight, self.augment, rng, margin=m, context=c)
        return Tile(img, labels, weight, (value, y, x))

    def batch(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``n`` tiles stacked: images ``(n, C, T + 2 context, T + 2 context)``, labels ``(n, T, T)``, weights or None.

        Batches are stratified: ``n * fg_share`` of the tiles are object-centred (the fractional part
        decided at random), so the expected share is ``fg_share`` as for single draws, but every batch
        has (nearly) the same make-up. Batch statistics (BatchNorm) then do not swing between
        background-only batches, where noise is all the variance there is, and object-rich ones.
        """
        k = int(np.floor(n * self.fg_share))
        k += int(rng.random() < n * self.fg_share - k)
        sides = np.zeros(n, bool)
        sides[rng.permutation(n)[:k]] = True
        tiles = [self.sample(rng, bool(side)) for side in sides]
        images = np.stack([t.image for t in tiles])
        labels = np.stack([t.labels for t in tiles])
        weights = None
        if self.weights is not None:
            weights = np.stack([t.weight for t in tiles])  # type: ignore[misc]
        return images, labels, weights


# ---------------------------------------------------------------------- augmentation
def elastic_field(
    size: int, sigma: float, grid: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random displacement field ``(dy, dx)``, each ``(size, size)``.

    Gaussian displacements (std ``sigma`` px) on a ``grid`` x ``grid`` lattice spanning the tile,
    interpolated bicubically.
    """
    from scipy import ndimage as ndi

    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    # Sample the bicubic spline of the lattice at every pixel (lattice corners on the tile corners).
    pos = np.linspace(0, grid - 1, size)
    gy, gx = np.meshgrid(pos, pos, indexing="ij")
    out = [ndi.map_coordinates(c, [gy, gx], order=3, mode="nearest") for c in coarse]
    return out[0], out[1]


def _apply_field(
    arr: np.ndarray, dy: np.ndarray, dx: np.ndarray, order: int
) -> np.ndarray:
    from scipy import ndimage as ndi

    n = dy.shape[0]
    yy, xx = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
    coords = [yy + dy, xx + dx]
    return ndi.map_coordinates(arr, coords, order=order, mode="mirror")


def augment_tile(
    image: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray | None,
    augment: Augment,
    rng: np.random.Generator,
    margin: int = 0,
    context: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Augment a tile read with ``margin`` extra pixels on each side; returns the central part (the image
    keeps ``context <= margin`` pixels more on each side, for the model's input filters).

    The elastic deformation, when on, is applied to the whole window before cropping, so it pulls in
    real context instead of mirrored tile edges. If it would leave the tile without any labelled pixel
    (a thin stroke can slip between nearest-neighbour samples) the undeformed tile is kept, so a
    training tile always carries a label.
    """
    s = labels.shape[0]
    t = s - 2 * margin
    crop = (slice(margin, margin + t), slice(margin, margin + t))
    lo, hi = margin - context, margin + t + context
    icrop = (slice(None), slice(lo, hi), slice(lo, hi))
    if augment.elastic and augment.elastic_sigma > 0:
        dy, dx = elastic_field(s, augment.elastic_sigma, augment.elastic_grid, rng)
        lab_e = _apply_field(labels, dy, dx, order=0)[crop]
        if lab_e.any() or not labels[crop].any():
            image = np.stack([_apply_field(c, dy, dx, order=1) for c in image]).astype(np.float32)
            labels = lab_e
            if weight is not None:
                weight = _apply_field(weight, dy, dx, order=1).astype(np.float32)[crop]
            image = image[icrop]
        else:
            image, labels = image[icrop], labels[crop]
            weight = weight[crop] if weight is not None else None
    else:
        image, labels = image[icrop], labels[crop]
        weight = weight[crop] if weight is not None else None

    ops: list[Callable[[np.ndarray], np.ndarray]] = []
    if augment.flips:
        if rng.random() < 0.5:
            ops.append(lambda a: a[..., ::-1, :])
        if rng.random() < 0.5:
            ops.append(lambda a: a[..., :, ::-1])
    if augment.rot90:
        k = int(rng.integers(4))
        if k:
            ops.append(lambda a: np.rot90(a, k, axes=(-2, -1)))
    for op in ops:
        image, labels = op(image), op(labels)
        weight = op(weight) if weight is not None else None
    image = np.ascontiguousarray(image, dtype=np.float32)
    labels = np.ascontiguousarray(labels)
    if weight is not None:
        weight = np.ascontiguousarray(weight, dtype=np.float32)
    if augment.intensity > 0:
        a = augment.intensity
        c = image.shape[0]
        scale = 1.0 + rng.uniform(-a, a, size=(c, 1, 1))
        shift = rng.uniform(-a, a, size=(c, 1, 1))
        image = (image * scale + shift).astype(np.float32)
    if augment.noise > 0:
        sd = augment.noise * rng.random()
        image = image + rng.normal(0.0, sd, size=image.shape).astype(np.float32)
    return image, labels, weight
