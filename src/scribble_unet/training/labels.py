"""Where the scribbles are: a per-chunk index of labelled pixels, and the held-out validation strokes.

Scribbles are a 2D integer array ``(Y, X)`` (numpy, zarr, dask, or anything with ``shape``, ``dtype``
and ``__getitem__``) that may be far larger than memory, while the labelled pixels are few (about 1 %
or less). :class:`LabelIndex` therefore reads the array one chunk at a time and keeps, per chunk and per
label value, the flat positions ``y * X + x`` of the labelled pixels. A chunk without labels costs one
read and nothing more. When the user paints, :meth:`LabelIndex.update` re-reads only the chunks that
changed.

:func:`split_strokes` turns the index into a training/validation split by whole strokes (connected
components of one label value), so that validation measures how well the model generalises to a
stroke it has never seen, not to the neighbours of pixels it trained on.

Label values: 0 unlabelled, 1 background, ``k + 1`` object class ``k`` (``k = 1..K``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..classes import LabelScheme
from ..errors import ScribbleUNetError

Region = tuple[int, int, int, int]
"""A window ``(y0, y1, x0, x1)`` in pixels, end-exclusive."""

ChunkId = tuple[int, int]

DEFAULT_CHUNK = 256
"""Chunk side used for arrays that have no native chunks (numpy)."""


def describe_values(class_names: Sequence[str]) -> str:
    """The declared label values as words, e.g. ``"0 unlabelled, 1 background, 2 nucleus"``."""
    return LabelScheme(class_names).describe()


def _native_chunks(array: Any) -> tuple[int, int] | None:
    chunks = getattr(array, "chunks", None)
    if not chunks or len(chunks) != 2:
        return None
    if isinstance(chunks[0], tuple):  # dask: a tuple of chunk sizes per axis
        return int(chunks[0][0]), int(chunks[1][0])
    return int(chunks[0]), int(chunks[1])


class LabelIndex:
    """Per-chunk coordinates of labelled pixels, built and updated without loading the whole array.

    Parameters
    ----------
    scribbles
        Label array ``(Y, X)`` of unsigned integers (uint8/uint16; any integer type is accepted as long
        as its values are not negative). It is read by windows ``scribbles[y0:y1, x0:x1]`` and never
        copied whole.
    class_names
        Names of the K object classes. Values above ``K + 1`` are refused.
    chunk_shape
        Granularity of the index. Defaults to the array's own chunks (zarr, dask), else
        ``DEFAULT_CHUNK`` square. Updates re-read whole index chunks, so matching the storage chunks
        means one storage read per changed chunk.
    build
        Read the whole array now (the default). ``False`` leaves the index empty until
        :meth:`update` is called.

    Attributes
    ----------
    reads
        Number of chunk reads done so far (for tests and diagnostics).

    Examples
    --------
    >>> import numpy as np
    >>> s = np.zeros((4, 6), np.uint8); s[1, 2] = 1; s[3, 5] = 2
    >>> index = LabelIndex(s, ["cell"], chunk_shape=(2, 3))
    >>> index.counts
    {1: 1, 2: 1}
    >>> index.sample(2, np.random.default_rng(0))
    (3, 5)
    """

    def __init__(
        self,
        scribbles: Any,
        class_names: Sequence[str],
        chunk_shape: tuple[int, int] | None = None,
        build: bool = True,
    ) -> None:
        shape = tuple(int(s) for s in scribbles.shape)
        if len(shape) != 2:
            raise ScribbleUNetError(f"scribbles must be a 2D array (Y, X), got shape {shape}")
        dtype = np.dtype(scribbles.dtype)
        if not np.issubdtype(dtype, np.integer):
            raise ScribbleUNetError(f"scribbles must hold integer label values (uint8/uint16), got {dtype}")
        if len(class_names) < 1:
            raise ScribbleUNetError("at least one object class must be declared")
        self.scribbles = scribbles
        self.shape: tuple[int, int] = (shape[0], shape[1])
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.max_value = len(self.class_names) + 1
        cs = chunk_shape or _native_chunks(scribbles) or (DEFAULT_CHUNK, DEFAULT_CHUNK)
        if cs[0] < 1 or cs[1] < 1:
            raise ScribbleUNetError(f"index chunk shape must be positive, got {cs}")
        self.chunk_shape: tuple[int, int] = (int(cs[0]), int(cs[1]))
        self.reads = 0
        # chunk id -> {value: sorted global flat positions}; chunks without labels are absent.
        self._chunks: dict[ChunkId, dict[int, np.ndarray]] = {}
        self._counts: dict[int, int] = {}
        self._cache: dict[int, tuple[list[ChunkId], np.ndarray]] = {}
        self._flat_cache: dict[int, np.ndarray] = {}
        self.version = 0
        """Incremented by every :meth:`update`, so users of the index can tell when it changed."""
        if build:
            self.update()

    # ------------------------------------------------------------------ geometry
    @property
    def n_chunks(self) -> tuple[int, int]:
        """Number of index chunks along Y and X."""
        (h, w), (ch, cw) = self.shape, self.chunk_shape
        return -(-h // ch), -(-w // cw)

    def chunk_bounds(self, chunk: ChunkId) -> Region:
        """Pixel window ``(y0, y1, x0, x1)`` of an index chunk."""
        (h, w), (ch, cw) = self.shape, self.chunk_shape
        iy, ix = chunk
        ny, nx = self.n_chunks
        if not (0 <= iy < ny and 0 <= ix < nx):
            raise IndexError(f"chunk {chunk} outside the grid {self.n_chunks}")
        return iy * ch, min((iy + 1) * ch, h), ix * cw, min((ix + 1) * cw, w)

    def chunks_in(self, region: Region) -> list[ChunkId]:
        """Index chunks that overlap ``region`` (clipped to the array)."""
        (h, w), (ch, cw) = self.shape, self.chunk_shape
        y0, y1, x0, x1 = (int(v) for v in region)
        y0, y1, x0, x1 = max(0, y0), min(h, y1), max(0, x0), min(w, x1)
        if y0 >= y1 or x0 >= x1:
            return []
        return [
            (iy, ix) for iy in range(y0 // ch, (y1 - 1) // ch + 1) for ix in range(x0 // cw, (x1 - 1) // cw + 1)
        ]

    # ------------------------------------------------------------------ building
    def _read_chunk(self, chunk: ChunkId) -> dict[int, np.ndarray]:
        y0, y1, x0, x1 = self.chunk_bounds(chunk)
        block = np.asarray(self.scribbles[y0:y1, x0:x1])
        self.reads += 1
        local = np.flatnonzero(block)
        if local.size == 0:
            return {}
        values = block.reshape(-1)[local].astype(np.int64)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0:
            raise ScribbleUNetError(
                f"scribbles contain the negative label value {lo}; values must be "
                f"{describe_values(self.class_names)}"
            )
        if hi > self.max_value:
            raise ScribbleUNetError(
                f"scribbles contain label value {hi}, but only {describe_values(self.class_names)} "
                f"are declared; declare more classes (--classes) or erase value {hi}"
            )
        bw = x1 - x0
        flat = (local // bw + y0) * self.shape[1] + (local % bw + x0)  # row-major, so already sorted
        out: dict[int, np.ndarray] = {}
        order = np.argsort(values, kind="stable")  # stable keeps each value's positions sorted
        values_sorted = values[order]
        bounds = np.flatnonzero(np.diff(values_sorted)) + 1
        for part in np.split(order, bounds):
            out[int(values[part[0]])] = flat[part]
        return out

    def update(
        self, region: Region | None = None, chunks: Iterable[ChunkId] | None = None
    ) -> list[ChunkId]:
        """Re-read the chunks touched by ``region`` and/or listed in ``chunks`` (all when both are None).

        All chunks are read and validated before the index changes, so a bad value leaves the index as
        it was. Returns the chunk ids that were read.
        """
        if region is None and chunks is None:
            ny, nx = self.n_chunks
            todo = [(iy, ix) for iy in range(ny) for ix in range(nx)]
        else:
            todo = list(self.chunks_in(region)) if region is not None else []
            ny, nx = self.n_chunks
            for c in chunks or ():
                c = (int(c[0]), int(c[1]))
                if not (0 <= c[0] < ny and 0 <= c[1] < nx):
                    raise IndexError(f"chunk {c} outside the grid {self.n_chunks}")
                todo.append(c)
            todo = list(dict.fromkeys(todo))  # unique, order kept
        fresh = {c: self._read_chunk(c) for c in todo}
        for c, entry in fresh.items():
            for v, pos in self._chunks.pop(c, {}).items():
                self._counts[v] -= len(pos)
            if entry:
                self._chunks[c] = entry
                for v, pos in entry.items():
                    self._counts[v] = self._counts.get(v, 0) + len(pos)
        self._counts = {v: n for v, n in sorted(self._counts.items()) if n > 0}
        self._cache.clear()
        self._flat_cache.clear()
        self.version += 1
        return todo

    # ------------------------------------------------------------------ queries
    @property
    def counts(self) -> dict[int, int]:
        """Labelled pixels per value over the whole array (values with no pixel are absent)."""
        return dict(self._counts)

    @property
    def n_labelled(self) -> int:
        """Total number of labelled pixels."""
        return sum(self._counts.values())

    def chunk_entry(self, chunk: ChunkId) -> dict[int, np.ndarray]:
        """``{value: flat positions}`` of one chunk (empty for a chunk without labels)."""
        return dict(self._chunks.get(chunk, {}))

    def flat(self, value: int) -> np.ndarray:
        """Sorted flat positions ``y * X + x`` of every pixel labelled ``value``."""
        if value not in self._flat_cache:
            parts = [entry[value] for entry in self._chunks.values() if value in entry]
            arr = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
            self._flat_cache[value] = arr
        return self._flat_cache[value]

    def coords(self, value: int) -> np.ndarray:
        """``(N, 2)`` array of ``(y, x)`` of every pixel labelled ``value``."""
        f = self.flat(value)
        return np.stack([f // self.shape[1], f % self.shape[1]], axis=1)

    def sample(self, value: int, rng: np.random.Generator) -> tuple[int, int]:
        """A pixel ``(y, x)`` labelled ``value``, uniformly among all such pixels.

        Costs a binary search over the chunks, not a scan of the pixels.
        """
        if value not in self._cache:
            ids = [c for c, entry in self._chunks.items() if value in entry]
            cum = np.cumsum([len(self._chunks[c][value]) for c in ids], dtype=np.int64)
            self._cache[value] = (ids, cum)
        ids, cum = self._cache[value]
        if not ids:
            raise ScribbleUNetError(f"no pixel is labelled {value}")
        r = int(rng.integers(int(cum[-1])))
        k = int(np.searchsorted(cum, r, side="right"))
        before = int(cum[k - 1]) if k else 0
        f = int(self._chunks[ids[k]][value][r - before])
        return divmod(f, self.shape[1])


# ---------------------------------------------------------------------- strokes
def stroke_components(flat: np.ndarray, shape: tuple[int, int]) -> tuple[int, np.ndarray]:
    """8-connected components of a sparse set of pixels given by sorted flat positions.

    Works on the labelled pixels only (binary searches for each pixel's neighbours), so its cost is
    ``O(N log N)`` in the number of labelled pixels, whatever the size of the image.

    Returns
    -------
    n, labels
        The number of components and, per pixel of ``flat``, its component id in ``0..n-1``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(flat)
    if n == 0:
        return 0, np.zeros(0, np.int64)
    h, w = shape
    x = flat % w
    rows, cols = [], []
    # Forward half of the 8-neighbourhood; the graph is undirected, so that covers all pairs.
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        ok = (x + dx >= 0) & (x + dx < w) & (flat // w + dy < h)
        src = np.flatnonzero(ok)
        nb = flat[src] + dy * w + dx
        pos = np.searchsorted(flat, nb)
        hit = pos < n
        hit[hit] = flat[pos[hit]] == nb[hit]
        rows.append(src[hit])
        cols.append(pos[hit])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n))
    n_comp, labels = connected_components(graph, directed=False)
    return int(n_comp), labels.astype(np.int64)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast, well-spread, platform-independent hash of uint64 values."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x


@dataclass
class StrokeSplit:
    """Training and validation pixels, split by whole strokes.

    Attributes
    ----------
    train, val
        ``{value: sorted flat positions}`` of the training and held-out pixels of each label value.
    n_strokes, n_val_strokes
        Number of strokes (8-connected components) per value, and how many of them are held out.
    width
        Image width (to turn flat positions into ``(y, x)``).
    """

    train: dict[int, np.ndarray]
    val: dict[int, np.ndarray]
    n_strokes: dict[int, int]
    n_val_strokes: dict[int, int]
    width: int
    val_all: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        parts = [v for v in self.val.values() if len(v)]
        self.val_all = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    @property
    def train_counts(self) -> dict[int, int]:
        """Training pixels per value (values without any are absent)."""
        return {v: len(a) for v, a in self.train.items() if len(a)}

    @property
    def val_counts(self) -> dict[int, int]:
        """Held-out pixels per value (values without any are absent)."""
        return {v: len(a) for v, a in self.val.items() if len(a)}

    def sample_train(self, value: int, rng: np.random.Generator) -> tuple[int, int]:
        """A training pixel ``(y, x)`` labelled ``value``, uniformly."""
        a = self.train.get(value)
        if a is None or len(a) == 0:
            raise ScribbleUNetError(f"no training pixel is labelled {value}")
        f = int(a[int(rng.integers(len(a)))])
        return divmod(f, self.width)

    def held_out_in(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ys, xs)`` of the held-out pixels inside the window ``[y0:y1, x0:x1]`` (inside the image)."""
        w = self.width
        a = self.val_all
        lo = int(np.searchsorted(a, y0 * w + x0))
        hi = int(np.searchsorted(a, (y1 - 1) * w + x1))
        cand = a[lo:hi]
        cx = cand % w
        cand = cand[(cx >= x0) & (cx < x1)]
        return cand // w, cand % w


def split_strokes(index: LabelIndex, val_share: float, seed: int = 0) -> StrokeSplit:
    """Hold out a share of the strokes of each label value for validation.

    A stroke is an 8-connected component of pixels of one value. For each value with ``n`` strokes,
    ``round(val_share * n)`` of them are held out, but never all of them (at least one stroke per value
    stays for training), so a class painted with a single stroke is trained on and not validated.

    Which strokes are held out is decided by a seeded hash of each stroke's first pixel, ranked: the
    same scribbles and seed always give the same split, and painting a new stroke moves at most one
    existing stroke between the two sets.

    Parameters
    ----------
    index
        The label index.
    val_share
        Share of strokes to hold out, in ``[0, 1)``.
    seed
        Seed of the hash.
    """
    if not 0.0 <= val_share < 1.0:
        raise ScribbleUNetError(f"validation share must be in [0, 1), got {val_share}")
    train: dict[int, np.ndarray] = {}
    val: dict[int, np.ndarray] = {}
    n_strokes: dict[int, int] = {}
    n_val: dict[int, int] = {}
    for value in index.counts:
        flat = index.flat(value)
        n, comp = stroke_components(flat, index.shape)
        n_strokes[value] = n
        k = min(int(np.floor(val_share * n + 0.5)), n - 1) if val_share > 0 else 0
        n_val[value] = k
        if k == 0:
            train[value], val[value] = flat, np.zeros(0, np.int64)
            continue
        # First pixel of each component (flat is sorted, so the first occurrence is the minimum).
        first = np.full(n, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first, comp, flat)
        key = _mix64(first.astype(np.uint64) ^ _mix64(np.array([seed * 1_000_003 + value], np.uint64)))
        held = np.zeros(n, bool)
        held[np.argsort(key, kind="stable")[:k]] = True
        mask = held[comp]
        train[value], val[value] = flat[~mask], flat[mask]
    return StrokeSplit(train, val, n_strokes, n_val, index.shape[1])
