"""Intensity normalisation with statistics fixed before tiling.

Statistics are computed once on the training image (a bounded, seeded sample of windows, so a 50000²
image costs no more than a small one) and stored in the checkpoint. Prediction applies the same fixed
affine map to every tile, which keeps tiled prediction exact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ..errors import InputImageError, ScribbleUNetError

NanPolicy = Literal["error", "zero"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine map ``(x - low) / (high - low)``.

    ``low``/``high`` are the ``p_low``/``p_high`` percentiles of each channel of the training image.
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    p_low: float = 1.0
    p_high: float = 99.8

    def __post_init__(self) -> None:
        if len(self.low) != len(self.high):
            raise ScribbleUNetError("normalisation low/high have different channel counts")

    @property
    def n_channels(self) -> int:
        return len(self.low)

    def apply(self, x: np.ndarray, nan_policy: NanPolicy = "error", where: str = "") -> np.ndarray:
        """Normalise ``x`` of shape ``(C, ...)`` to float32.

        Non-finite pixels raise :class:`InputImageError` (``nan_policy="error"``) or become 0 after
        normalisation (``nan_policy="zero"``, i.e. the channel's low percentile).
        """
        if x.shape[0] != self.n_channels:
            raise InputImageError(
                f"image has {x.shape[0]} channel(s) but the model's normalisation expects {self.n_channels}"
            )
        out = x.astype(np.float32, copy=True)
        low = np.asarray(self.low, np.float32).reshape((-1,) + (1,) * (x.ndim - 1))
        scale = np.asarray(self.high, np.float32).reshape(low.shape) - low
        scale = np.where(scale > 0, scale, np.float32(1.0))
        out -= low
        out /= scale
        if np.issubdtype(x.dtype, np.floating) or not np.isfinite(out).all():
            # also catches finite float64 values that overflow float32
            bad = ~np.isfinite(out)
            if bad.any():
                if nan_policy == "error":
                    raise InputImageError(
                        f"image has {int(bad.sum())} NaN/inf pixel(s){(' in ' + where) if where else ''}; "
                        "pass nan_policy='zero' (--nan-policy zero) to predict them as value 0"
                    )
                out[bad] = 0.0
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        return cls(
            low=tuple(float(v) for v in d["low"]),
            high=tuple(float(v) for v in d["high"]),
            p_low=float(d.get("p_low", 1.0)),
            p_high=float(d.get("p_high", 99.8)),
        )

    @classmethod
    def identity(cls, n_channels: int) -> Normalization:
        return cls(low=(0.0,) * n_channels, high=(1.0,) * n_channels, p_low=0.0, p_high=100.0)


def compute_normalization(
    image: Any,
    p_low: float = 1.0,
    p_high: float = 99.8,
    window: int = 256,
    max_windows: int = 64,
    seed: int = 0,
) -> Normalization:
    """Percentile statistics of an image source from a seeded sample of windows.

    ``image`` is an :class:`scribble_unet.image.ImageSource` (anything with ``shape_yx``, ``n_channels``
    and ``read(y0, y1, x0, x1)``). Reads at most ``max_windows`` windows of ``window``² pixels, so the
    cost does not grow with the image. Non-finite pixels are ignored.
    """
    if not 0 <= p_low < p_high <= 100:
        raise ScribbleUNetError(f"percentiles must satisfy 0 <= low < high <= 100, got {p_low}, {p_high}")
    h, w = image.shape_yx
    rng = np.random.default_rng(seed)
    wy, wx = min(window, h), min(window, w)
    n_possible = ((h + wy - 1) // wy) * ((w + wx - 1) // wx)
    samples = []
    if n_possible <= max_windows:
        for y in range(0, h, wy):
            for x in range(0, w, wx):
                samples.append(image.read(y, min(y + wy, h), x, min(x + wx, w)))
    else:
        for _ in range(max_windows):
            y = int(rng.integers(0, h - wy + 1))
            x = int(rng.integers(0, w - wx + 1))
            samples.append(image.read(y, y + wy, x, x + wx))
    c = image.n_channels
    values = np.concatenate([s.reshape(c, -1).astype(np.float64) for s in samples], axis=1)
    low, high = [], []
    for ch in range(c):
        v = values[ch][np.isfinite(values[ch])]
        if v.size == 0:
            raise InputImageError(f"channel {ch} of the image has no finite pixel in the sampled windows")
        lo, hi = np.percentile(v, [p_low, p_high])
        if hi <= lo:  # flat image: fall back to min/max, then to a unit scale
            lo, hi = float(v.min()), float(v.max())
            if hi <= lo:
                hi = lo + 1.0
        low.append(float(lo))
        high.append(float(hi))
    return Normalization(low=tuple(low), high=tuple(high), p_low=p_low, p_high=p_high)
