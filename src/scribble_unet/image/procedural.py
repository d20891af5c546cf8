"""A procedural sample image with rare, nuclei-like objects and its ground truth, of any size.

Every pixel is a pure function of ``(seed, level, y, x)``: the image is generated window by window,
at any pyramid level directly (level ``l`` is rendered at pixel centres ``2**l`` apart, never by
downsampling level 0), so a 65536² sample costs only the windows that are looked at.

The picture:

* a smooth, textured background (two octaves of value noise),
* rare bright ellipses ("nuclei", with some inner texture), at most one per ``cell x cell`` square of
  the plane and entirely inside it, present with probability ``density``,
* per-pixel noise whose amplitude shrinks as ``2**-l`` on coarser levels, as averaging would make it.

The ground truth is 1 inside an object (at the pixel centre) and 0 elsewhere.

Examples
--------
>>> s = ProceduralSample(SampleSpec(size=4096, seed=1))
>>> [lvl.shape for lvl in s.image_levels()]
[(4096, 4096), (2048, 2048), (1024, 1024)]
>>> s.render_image(0, 0, 64, 0, 64).dtype
dtype('uint16')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ScribbleUNetError
from .source import ImageSource

SIZES: dict[str, int] = {"small": 16384, "large": 65536}
"""Named sample sizes (side in pixels)."""

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

# Salts keep the random streams of the different ingredients independent.
_SALT_CELL = 1
_SALT_BG_COARSE = 2
_SALT_BG_FINE = 3
_SALT_INNER = 4
_SALT_NOISE = 5


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _hash(seed: int, salt: int, a: Any, b: Any, c: int = 0) -> np.ndarray:
    """A uint64 hash of integer arrays ``a`` and ``b`` (broadcast), keyed by seed, salt and ``c``."""
    a = np.asarray(a, dtype=np.int64).astype(np.uint64)
    b = np.asarray(b, dtype=np.int64).astype(np.uint64)
    key = _mix(np.asarray([seed * 1_000_003 + salt * 7919 + c], dtype=np.int64).astype(np.uint64))
    h = _mix(key ^ (a * _GOLDEN))
    return _mix(h ^ (b + _GOLDEN))


def _uniform(h: np.ndarray) -> np.ndarray:
    """Map uint64 hashes to floats in ``[0, 1)``."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


@dataclass(frozen=True)
class SampleSpec:
    """Parameters of a procedural sample.

    Parameters
    ----------
    size
        Side of the square full-resolution image in pixels.
    seed
        Random seed: the same spec always gives the same pixels.
    chunk
        Chunk side of the dask arrays at every level (and the smallest level's largest side).
    cell
        Side (px, full resolution) of the squares that hold at most one object each.
    density
        Probability that a cell holds an object (objects are rare: a few percent of cells).
    radius
        Smallest and largest mean object radius in px.
    """

    size: int = SIZES["small"]
    seed: int = 0
    chunk: int = 1024
    cell: int = 256
    density: float = 0.06
    radius: tuple[float, float] = (9.0, 24.0)

    def __post_init__(self) -> None:
        if self.size < 1 or self.chunk < 1:
            raise ScribbleUNetError(f"sample size and chunk must be positive, got {self.size}, {self.chunk}")
        if not 0.0 <= self.density <= 1.0:
            raise ScribbleUNetError(f"object density must be in [0, 1], got {self.density}")
        # An object (radius * 1.3 at most) must fit inside its cell's margin (0.15 * cell).
        if self.radius[1] * 1.3 > 0.15 * self.cell or self.radius[0] <= 0:
            raise ScribbleUNetError(f"object radius {self.radius} does not fit cells of {self.cell} px")

    @property
    def n_levels(self) -> int:
        """Number of pyramid levels: halve until the largest side fits one chunk."""
        n, side = 1, self.size
        while side > self.chunk:
            side = -(-side // 2)
            n += 1
        return n

    def level_shape(self, level: int) -> tuple[int, int]:
        """``(Y, X)`` of pyramid level ``level`` (sides halved, rounded up)."""
        side = self.size
        for _ in range(level):
            side = -(-side // 2)
        return side, side


def _value_noise(seed: int, salt: int, ys: np.ndarray, xs: np.ndarray, spacing: float) -> np.ndarray:
    """Smooth value noise in ``[0, 1]`` at full-resolution coordinates ``ys`` x ``xs`` (outer grid)."""
    gy, gx = ys / spacing, xs / spacing
    iy, ix = np.floor(gy).astype(np.int64), np.floor(gx).astype(np.int64)
    fy, fx = gy - iy, gx - ix
    fy = fy * fy * (3 - 2 * fy)
    fx = fx * fx * (3 - 2 * fx)
    y_lo, x_lo = int(iy.min()), int(ix.min())
    lat_y = np.arange(y_lo, int(iy.max()) + 2)
    lat_x = np.arange(x_lo, int(ix.max()) + 2)
    lattice = _uniform(_hash(seed, salt, lat_y[:, None], lat_x[None, :]))
    ry, rx = iy - y_lo, ix - x_lo
    v00 = lattice[ry][:, rx]
    v01 = lattice[ry][:, rx + 1]
    v10 = lattice[ry + 1][:, rx]
    v11 = lattice[ry + 1][:, rx + 1]
    top = v00 + (v01 - v00) * fx[None, :]
    bottom = v10 + (v11 - v10) * fx[None, :]
    return top + (bottom - top) * fy[:, None]


@dataclass(frozen=True)
class _Objects:
    """Objects of the cells touching a window: arrays of equal length."""

    cy: np.ndarray
    cx: np.ndarray
    a: np.ndarray  # semi-axis along the rotated u axis
    b: np.ndarray
    cos: np.ndarray
    sin: np.ndarray
    brightness: np.ndarray


class ProceduralSample:
    """Render windows of a procedural sample at any level, and build lazy dask pyramids of it.

    Parameters
    ----------
    spec
        The sample's parameters.
    """

    def __init__(self, spec: SampleSpec | None = None) -> None:
        self.spec = spec or SampleSpec()

    # ---- geometry ---------------------------------------------------------------------------

    def _objects(self, y0: float, y1: float, x0: float, x1: float) -> _Objects:
        """Objects whose cell overlaps the full-resolution box ``[y0, y1) x [x0, x1)``."""
        s = self.spec
        c = s.cell
        cys = np.arange(max(0, math.floor(y0 / c)), math.floor(max(y0, y1 - 1e-9) / c) + 1)
        cxs = np.arange(max(0, math.floor(x0 / c)), math.floor(max(x0, x1 - 1e-9) / c) + 1)
        my, mx = np.meshgrid(cys, cxs, indexing="ij")
        gy, gx = my.ravel(), mx.ravel()
        u = [_uniform(_hash(s.seed, _SALT_CELL, gy, gx, k)) for k in range(6)]
        keep = u[0] < s.density
        gy, gx = gy[keep], gx[keep]
        u = [v[keep] for v in u]
        r = s.radius[0] + (s.radius[1] - s.radius[0]) * u[3]
        ecc = 0.25 * u[4]
        theta = math.pi * u[5]
        return _Objects(
            cy=(gy + 0.15 + 0.7 * u[1]) * c,
            cx=(gx + 0.15 + 0.7 * u[2]) * c,
            a=r * (1 + ecc),
            b=r * (1 - ecc),
            cos=np.cos(theta),
            sin=np.sin(theta),
            brightness=0.55 + 0.45 * _uniform(_hash(s.seed, _SALT_CELL, gy, gx, 99)),
        )

    def _window(self, level: int, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Full-resolution coordinates of the pixel centres of a window of ``level``."""
        ny, nx = self.spec.level_shape(level)
        if not (0 <= y0 <= y1 <= ny and 0 <= x0 <= x1 <= nx):
            raise IndexError(f"window [{y0}:{y1}, {x0}:{x1}] outside level {level} of shape {(ny, nx)}")
        f = 2**level
        ys = (np.arange(y0, y1, dtype=np.float64) + 0.5) * f - 0.5
        xs = (np.arange(x0, x1, dtype=np.float64) + 0.5) * f - 0.5
        return ys, xs, f

    def _coverage(self, level: int, y0: int, y1: int, x0: int, x1: int,
                  soft: bool) -> list[tuple[slice, slice, np.ndarray, int]]:
        """Per object touching the window: its bounding box in the window, its coverage, its index.

        ``soft`` gives an anti-aliased coverage in ``[0, 1]`` with an edge one pixel of the level
        wide; otherwise 1 where the pixel centre is inside the object.
        """
        ys, xs, f = self._window(level, y0, y1, x0, x1)
        out: list[tuple[slice, slice, np.ndarray, int]] = []
        if ys.size == 0 or xs.size == 0:
            return out
        objs = self._objects(ys[0] - f, ys[-1] + f + 1, xs[0] - f, xs[-1] + f + 1)
        for i in range(objs.cy.size):
            ext = objs.a[i] + f
            # Pixels of the window whose centres lie within the object's extent (plus one pixel).
            iy0 = max(0, math.ceil((objs.cy[i] - ext + 0.5) / f - 0.5) - y0)
            iy1 = min(y1 - y0, math.floor((objs.cy[i] + ext + 0.5) / f - 0.5) - y0 + 1)
            ix0 = max(0, math.ceil((objs.cx[i] - ext + 0.5) / f - 0.5) - x0)
            ix1 = min(x1 - x0, math.floor((objs.cx[i] + ext + 0.5) / f - 0.5) - x0 + 1)
            if iy0 >= iy1 or ix0 >= ix1:
                continue
            dy = ys[iy0:iy1, None] - objs.cy[i]
            dx = xs[None, ix0:ix1] - objs.cx[i]
            u = dy * objs.cos[i] + dx * objs.sin[i]
            v = -dy * objs.sin[i] + dx * objs.cos[i]
            dn = np.sqrt((u / objs.a[i]) ** 2 + (v / objs.b[i]) ** 2)
            if soft:
                r_mean = 0.5 * (objs.a[i] + objs.b[i])
                cov = np.clip((1.0 - dn) * r_mean / f + 0.5, 0.0, 1.0)
            else:
                cov = (dn <= 1.0).astype(np.float64)
            out.append((slice(iy0, iy1), slice(ix0, ix1), cov, i))
        return out

    # ---- rendering --------------------------------------------------------------------------

    def render_image(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` of pyramid level ``level`` as uint16 ``(y1 - y0, x1 - x0)``."""
        s = self.spec
        ys, xs, f = self._window(level, y0, y1, x0, x1)
        if ys.size == 0 or xs.size == 0:
            return np.zeros((ys.size, xs.size), np.uint16)
        img = 0.12 + 0.10 * _value_noise(s.seed, _SALT_BG_COARSE, ys, xs, 600.0)
        # A finer octave, faded out where a pixel of the level is wider than the octave's features.
        img += 0.06 * min(1.0, 48.0 / f) * _value_noise(s.seed, _SALT_BG_FINE, ys, xs, 48.0)
        objs = self._objects(ys[0] - f, ys[-1] + f + 1, xs[0] - f, xs[-1] + f + 1)
        inner_amp = min(1.0, 6.0 / f)
        for sy, sx, cov, i in self._coverage(level, y0, y1, x0, x1, soft=True):
            inner: float | np.ndarray = 1.0
            if inner_amp > 0.05:
                inner = 1.0 - 0.25 * inner_amp * _value_noise(s.seed, _SALT_INNER, ys[sy], xs[sx], 6.0)
            bg = img[sy, sx]
            img[sy, sx] = bg + cov * (objs.brightness[i] * inner - bg)
        # Per-pixel noise, keyed by the pixel of this level so every window sees the same values.
        py = np.arange(y0, y1, dtype=np.int64)[:, None]
        px = np.arange(x0, x1, dtype=np.int64)[None, :]
        noise = _uniform(_hash(s.seed, _SALT_NOISE, py, px, level)) - 0.5
        img += noise * (0.035 * math.sqrt(12.0) / f)
        return np.clip(img * 4000.0 + 100.0, 0, 65535).astype(np.uint16)

    def render_truth(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Ground truth ``[y0:y1, x0:x1]`` of level ``level``: uint8, 1 inside objects, 0 elsewhere."""
        ys, xs, _ = self._window(level, y0, y1, x0, x1)
        out = np.zeros((ys.size, xs.size), np.uint8)
        for sy, sx, cov, _i in self._coverage(level, y0, y1, x0, x1, soft=False):
            out[sy, sx] |= cov.astype(np.uint8)
        return out

    # ---- lazy arrays ------------------------------------------------------------------------

    def _level_array(self, kind: Literal["image", "truth"], level: int) -> Any:
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph

        s = self.spec
        ny, nx = s.level_shape(level)
        c = s.chunk
        chunks = tuple(tuple(min(c, n - i) for i in range(0, n, c)) for n in (ny, nx))
        render = self.render_image if kind == "image" else self.render_truth
        dtype = np.uint16 if kind == "image" else np.uint8
        name = f"scribble-unet-sample-{kind}-{s.size}-{s.seed}-{s.chunk}-{s.cell}-{s.density}-{level}"
        dsk: dict[Any, Any] = {
            (name, iy, ix): (render, level, iy * c, min(ny, (iy + 1) * c), ix * c, min(nx, (ix + 1) * c))
            for iy in range(len(chunks[0]))
            for ix in range(len(chunks[1]))
        }
        graph = HighLevelGraph.from_collections(name, dsk, dependencies=[])
        return da.Array(graph, name, chunks=chunks, dtype=dtype, meta=np.empty((0, 0), dtype))

    def image_levels(self) -> list[Any]:
        """The image pyramid as lazy dask arrays ``(Y_l, X_l)`` uint16, full resolution first."""
        return [self._level_array("image", lvl) for lvl in range(self.spec.n_levels)]

    def truth_levels(self) -> list[Any]:
        """The ground-truth pyramid as lazy dask arrays ``(Y_l, X_l)`` uint8, full resolution first."""
        return [self._level_array("truth", lvl) for lvl in range(self.spec.n_levels)]

    def source(self) -> ProceduralSource:
        """The full-resolution image as an :class:`~scribble_unet.image.ImageSource`."""
        return ProceduralSource(self)

    @property
    def contrast_limits(self) -> tuple[float, float]:
        """Display range that suits the image."""
        return 400.0, 4200.0


class ProceduralSource(ImageSource):
    """Level 0 of a :class:`ProceduralSample` read window by window (for training and prediction)."""

    def __init__(self, sample: ProceduralSample) -> None:
        self.sample = sample
        self.shape_yx = sample.spec.level_shape(0)
        self.n_channels = 1
        self.dtype = np.dtype(np.uint16)
        self.name = f"procedural sample {sample.spec.size}² (seed {sample.spec.seed})"

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        self._check_window(y0, y1, x0, x1)
        return self.sample.render_image(0, y0, y1, x0, x1)[None]

    def to_dask(self) -> Any:
        return self.sample.image_levels()[0][None]

    def levels(self) -> list[Any]:
        return [lvl[None] for lvl in self.sample.image_levels()]

    @property
    def chunks_yx(self) -> tuple[int, int] | None:
        c = self.sample.spec.chunk
        return c, c


def procedural_sample(size: str | int = "small", seed: int = 0, **kwargs: Any) -> ProceduralSample:
    """A procedural sample by name (``"small"`` = 16384², ``"large"`` = 65536²) or side in px."""
    if isinstance(size, str):
        if size not in SIZES:
            raise ScribbleUNetError(f"unknown sample size {size!r}; use one of {', '.join(SIZES)} or a number")
        size = SIZES[size]
    return ProceduralSample(SampleSpec(size=int(size), seed=seed, **kwargs))
