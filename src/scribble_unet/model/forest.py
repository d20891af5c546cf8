"""A small random forest on fixed image filters, multiplied into the U-Net's prediction (an option).

ilastik's pixel classifier (a random forest on multi-scale filters) and the U-Net make different
mistakes from a few strokes: the forest judges each pixel by its local appearance and puts borders where
the intensity changes; the U-Net judges by context and fills the unpainted band around objects from it.
On the development set their product (a "product of experts": class probabilities multiplied and
renormalised, i.e. log probabilities added to the logits) was better than either alone
(docs/quality.md, seventh session).

:class:`PixelForest` makes that forest a fixed part of the network, so that everything that handles a
model (checkpoints, exact tiling, the live view, export, dask) handles it too:

* features (:func:`pixel_features`): per channel the image and, at each scale of :data:`SIGMAS`, the
  Gaussian-smoothed image, gradient magnitude, Laplacian and the two Hessian eigenvalues (the kernels of
  :mod:`.filters`), computed in float64 and rounded to float32 so that a chunk and the whole image give
  the same bits; their reach is part of the halo, so tiles stay exact;
* the checkpoint stores the forest's training set (features and labels of at most :data:`MAX_ROWS`
  stroke pixels) in fixed-size tensors, not the trees: loading never unpickles, and the forest
  (:data:`TREES` trees of depth at most :data:`DEPTH`, scikit-learn, a fixed seed) is refitted from them
  on first use, in well under a second;
* prediction adds the logarithm of the forest's class frequencies to the U-Net's logits.

An empty forest adds nothing. The trainer fills it from the image and the strokes (it does not depend on
the U-Net's weights); the U-Net's training loss sees the U-Net alone.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from torch import nn

from .filters import TRUNCATE, gaussian_kernels

SIGMAS: tuple[float, ...] = (0.7, 1.6, 3.5, 5.0, 10.0)
"""Filter scales (px at the working resolution): ilastik's default scales without the smallest."""
FEATURES_PER_SCALE = 5
TREES = 32
"""Number of trees."""
DEPTH = 8
"""Largest tree depth."""
EPS = 1e-3
"""Class frequencies are clipped to ``[EPS, 1 - EPS]`` before the logarithm: a unanimous forest shifts a
logit by at most ``log((1 - EPS) / EPS)`` (about 6.9)."""
MAX_ROWS = 4096
"""Stroke pixels stored and fitted on (a random subset, split evenly between the label values)."""
SEED = 0
"""The forest's random state: the same rows give the same forest."""

_FIT_LOCK = threading.Lock()  # one fit at a time; module level so that models stay deep-copyable
CLASSIFIERS_KEPT = 4
"""Fitted forests kept, by their training rows: every checkpoint of a run builds a new model with the same
rows until the strokes change, and refitting costs 0.2-2 s."""
OUTPUT_CACHE_BYTES = 128 * 2**20
"""Forest outputs kept, by rows and input window: the forest does not change while the network trains,
so the live view's refresh after a checkpoint recomputes only the network."""
_CLASSIFIERS: OrderedDict[bytes, Any] = OrderedDict()
_OUTPUTS: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _digest(*arrays: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(str((a.dtype, a.shape)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.digest()


def clear_caches() -> None:
    """Forget the kept forests and outputs (they are only a speed-up)."""
    with _CACHE_LOCK:
        _CLASSIFIERS.clear()
        _OUTPUTS.clear()


def reach() -> int:
    """Pixels each side that the features read beyond an output pixel."""
    return max(math.ceil(TRUNCATE * s) for s in SIGMAS)


def n_features(in_channels: int) -> int:
    return in_channels * (1 + FEATURES_PER_SCALE * len(SIGMAS))


_KERNELS_NP: dict[float, np.ndarray] = {
    s: gaussian_kernels(s, math.ceil(TRUNCATE * s)).numpy() for s in SIGMAS
}


def _scale_features(a: np.ndarray, sigma: float) -> np.ndarray:
    """``(5, H, W)`` float32 features of one float64 plane at one scale."""
    g, d1, d2 = _KERNELS_NP[sigma]
    ay = [ndi.correlate1d(a, k, axis=0, mode="constant") for k in (g, d1, d2)]  # along y
    sm, ix, ixx = (ndi.correlate1d(ay[0], k, axis=1, mode="constant") for k in (g, d1, d2))
    iy, ixy = (ndi.correlate1d(ay[1], k, axis=1, mode="constant") for k in (g, d1))
    iyy = ndi.correlate1d(ay[2], g, axis=1, mode="constant")
    lap = ixx + iyy
    half = np.sqrt(0.25 * (ixx - iyy) ** 2 + ixy * ixy)
    return np.stack([sm, np.sqrt(ix * ix + iy * iy), lap, 0.5 * lap + half, 0.5 * lap - half]).astype(np.float32)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)),
                                       thread_name_prefix="pixel-features")
        return _POOL


def pixel_features(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, F, H, W)`` float32 features on the CPU (zero padding at the window's border).

    Each scale uses its own kernel length (``2 ceil(3 sigma) + 1`` taps), applied as separable 1-D
    correlations (SciPy, which releases the GIL: a GUI thread keeps running). The arithmetic is float64
    with the same summation order for every pixel, and the result is rounded to float32, so the bits do
    not depend on the window's size or position. The scales run on as many threads as torch may use
    (``torch.get_num_threads()``), the costliest first.
    """
    n, c, h, w = x.shape
    planes = x.detach().to(device="cpu", dtype=torch.float64).reshape(n * c, h, w).numpy()
    per_plane = 1 + FEATURES_PER_SCALE * len(SIGMAS)
    out = np.empty((n * c, per_plane, h, w), np.float32)
    out[:, 0] = planes
    jobs = sorted(((i, j, sig) for i in range(n * c) for j, sig in enumerate(SIGMAS)), key=lambda t: -t[2])

    def run(job: tuple[int, int, float]) -> None:
        i, j, sig = job
        out[i, 1 + j * FEATURES_PER_SCALE: 1 + (j + 1) * FEATURES_PER_SCALE] = _scale_features(planes[i], sig)

    if torch.get_num_threads() > 1 and len(jobs) > 1:
        list(_pool().map(run, jobs))
    else:
        for job in jobs:
            run(job)
    return torch.from_numpy(out.reshape(n, c * per_plane, h, w))


class PixelForest(nn.Module):
    """``(N, C, H, W)`` normalised image -> ``(N, n_out, h, w)`` log class frequencies of the forest.

    ``n_out`` is 1 for one object class (the log odds of the object, added to the U-Net's single logit)
    and ``K + 1`` otherwise (log frequencies, added to the U-Net's softmax logits).
    """

    def __init__(self, in_channels: int, n_classes: int, prior: bool = False) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.register_buffer("rows", torch.zeros(MAX_ROWS, n_features(in_channels)))
        self.register_buffer("row_values", torch.zeros(MAX_ROWS, dtype=torch.int64))  # 0: unused row
        if prior:  # a shift of the logits for the image's class shares (training/prior.py), set by the trainer
            self.register_buffer("prior", torch.zeros(1 if n_classes == 1 else n_classes + 1))
        self._clf: Any = None

    @property
    def is_fitted(self) -> bool:
        values: torch.Tensor = self.row_values  # type: ignore[assignment]
        return len(torch.unique(values[values > 0])) >= 2

    def set_rows(self, features: np.ndarray, values: np.ndarray, rng: np.random.Generator) -> int:
        """Store (a balanced random subset of) ``(P, F)`` features of stroke pixels and their label values
        (1 background, ``k + 1`` class ``k``) as the forest's training set; returns the rows kept."""
        features, values = np.asarray(features, np.float32), np.asarray(values, np.int64)
        if features.ndim != 2 or features.shape[0] != values.shape[0]:
            raise ValueError(f"features {features.shape} and labels {values.shape} do not match")
        kinds = np.unique(values)
        per = MAX_ROWS // max(1, len(kinds))
        keep = []
        for v in kinds:
            idx = np.flatnonzero(values == v)
            keep.append(idx if len(idx) <= per else np.sort(rng.choice(idx, per, replace=False)))
        sel = np.concatenate(keep) if keep else np.zeros(0, np.int64)
        rows = np.zeros(tuple(self.rows.shape), np.float32)  # type: ignore[arg-type]
        vals = np.zeros(MAX_ROWS, np.int64)
        rows[: len(sel)], vals[: len(sel)] = features[sel], values[sel]
        with torch.no_grad():
            self.rows.copy_(torch.from_numpy(rows))  # type: ignore[operator]
            self.row_values.copy_(torch.from_numpy(vals))  # type: ignore[operator]
        with _FIT_LOCK:
            self._clf = None
        return len(sel)

    def snapshot(self) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """The stored rows and the fitted trees, for :meth:`restore` (no refit needed then)."""
        with _FIT_LOCK:
            return self.rows.clone(), self.row_values.clone(), self._clf  # type: ignore[operator]

    def restore(self, state: tuple[Any, ...]) -> None:
        """Put back what :meth:`snapshot` returned."""
        rows, values, clf = state
        with torch.no_grad():
            self.rows.copy_(rows)  # type: ignore[operator]
            self.row_values.copy_(values)  # type: ignore[operator]
        with _FIT_LOCK:
            self._clf = clf

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        with _FIT_LOCK:
            self._clf = None

    def rows_key(self) -> bytes:
        """A digest of the stored rows: equal rows give the same forest."""
        return _digest(self.rows.cpu().numpy(), self.row_values.cpu().numpy())  # type: ignore[operator]

    def classifier(self) -> Any:
        """The fitted scikit-learn forest (fitted from the stored rows on first use, or taken from the
        forests kept for the same rows)."""
        with _FIT_LOCK:
            if self._clf is None:
                key = self.rows_key()
                with _CACHE_LOCK:
                    clf = _CLASSIFIERS.get(key)
                if clf is None:
                    from sklearn.ensemble import RandomForestClassifier

                    values = self.row_values.cpu().numpy()  # type: ignore[operator]
                    used = values > 0
                    clf = RandomForestClassifier(n_estimators=TREES, max_depth=DEPTH, random_state=SEED, n_jobs=1)
                    clf.fit(self.rows.cpu().numpy()[used], values[used])  # type: ignore[operator]
                with _CACHE_LOCK:
                    _CLASSIFIERS[key] = clf
                    _CLASSIFIERS.move_to_end(key)
                    while len(_CLASSIFIERS) > CLASSIFIERS_KEPT:
                        _CLASSIFIERS.popitem(last=False)
                self._clf = clf
            return self._clf

    def forward(self, x: torch.Tensor, margin: int = 0) -> torch.Tensor:
        """Log-frequency logits of the centre of ``x`` (``margin`` px cropped each side)."""
        n, _, h, w = x.shape
        ho, wo = h - 2 * margin, w - 2 * margin
        out_c = 1 if self.n_classes == 1 else self.n_classes + 1
        if not self.is_fitted:
            return torch.zeros((n, out_c, ho, wo), dtype=x.dtype, device=x.device)
        xs = x.detach().cpu().numpy()
        key = (self.rows_key(), _digest(xs), margin, self.n_classes)
        with _CACHE_LOCK:
            out = _OUTPUTS.get(key)
            if out is not None:
                _OUTPUTS.move_to_end(key)
        if out is None:
            out = self._log_frequencies(x, margin)
            with _CACHE_LOCK:
                _OUTPUTS[key] = out
                while sum(a.nbytes for a in _OUTPUTS.values()) > OUTPUT_CACHE_BYTES and len(_OUTPUTS) > 1:
                    _OUTPUTS.popitem(last=False)
        result = torch.from_numpy(out.copy()).to(device=x.device, dtype=x.dtype)
        prior = getattr(self, "prior", None)
        if prior is not None:
            result += prior.to(device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return result

    def _log_frequencies(self, x: torch.Tensor, margin: int) -> np.ndarray:
        n, _, h, w = x.shape
        ho, wo = h - 2 * margin, w - 2 * margin
        out_c = 1 if self.n_classes == 1 else self.n_classes + 1
        feats = pixel_features(x)
        if margin:
            feats = feats[..., margin:-margin, margin:-margin]
        flat = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).cpu().numpy()
        clf = self.classifier()
        freq = np.zeros((flat.shape[0], self.n_classes + 1), np.float32)
        freq[:, [int(v) - 1 for v in clf.classes_]] = clf.predict_proba(flat)
        freq = np.clip(freq, EPS, 1 - EPS)
        out = np.log(freq[:, 1:2] / freq[:, 0:1]) if self.n_classes == 1 else np.log(freq)
        return np.ascontiguousarray(out.reshape(n, ho, wo, out_c).transpose(0, 3, 1, 2), np.float32)
