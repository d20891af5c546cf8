"""The prediction network: the U-Net computing only the pixels that a window's output needs.

The training network (:class:`~scribble_unet.model.unet.UNet`) pads every convolution with zeros, so a
forward pass of a window computes every layer on the whole window, including the margin that only
serves as context. :class:`WindowNet` runs the same network on an input window and returns the logits
of its centre (the window less ``margin`` pixels on every side) with *valid* convolutions: each layer is
computed on just the region that the requested output depends on, found by walking the network
backwards (:func:`plan_axis`). No value ever depends on a padding zero, so every computed pixel equals
the same pixel of the zero-padded network run on the whole (reflect-padded) image, up to float rounding;
the decoder, which holds the most expensive convolutions, runs on little more than the output.

BatchNorm (fixed at prediction) is folded into the preceding convolution's weights and bias, which
saves one pass over every feature map.

Levels: level ``l`` has ``2**l`` times fewer pixels per axis. Coordinates at level ``l`` count from the
window origin divided by ``2**l``; the window origin must lie on the network's pooling grid (a multiple
of ``2**depth`` in the image), so that the 2 x 2 pools group the same pixels as in the whole pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..model.unet import UNet

Interval = tuple[int, int]


def _grow(iv: Interval, k: int) -> Interval:
    return iv[0] - k, iv[1] + k


@dataclass(frozen=True)
class AxisPlan:
    """Regions (half-open intervals, in level coordinates) computed along one axis.

    ``enc[l]``: output of encoder level ``l`` (``enc[depth]`` is the bottleneck); ``dec_in[l]``: input of
    decoder level ``l`` (the upsampled path and the skip, both cropped to it); ``dec_out[l]``: its output;
    ``input``: the part of the window that is read; ``output``: the centre that is returned.
    """

    enc: tuple[Interval, ...]
    dec_in: tuple[Interval, ...]
    dec_out: tuple[Interval, ...]
    input: Interval
    output: Interval


def plan_axis(length: int, margin: int, depth: int) -> AxisPlan:
    """What to compute along an axis of ``length`` window pixels to get its centre without ``margin``.

    Each 3 x 3 convolution needs one more pixel on each side than it outputs; a 2 x 2 max pool needs pixels
    ``[2 lo, 2 hi)`` of the level above for ``[lo, hi)``; a 2 x 2 stride-2 transposed convolution needs
    pixels ``[lo // 2, ceil(hi / 2))`` of the level below. Raises ``ValueError`` where the margin is
    smaller than the network's receptive field (the input would reach outside the window).
    """
    out = (margin, length - margin)
    if out[0] >= out[1]:
        raise ValueError(f"window of {length} px has no centre left after a margin of {margin} px")
    dec_out: list[Interval] = [out]
    dec_in: list[Interval] = []
    for lvl in range(depth):
        dec_in.append(_grow(dec_out[lvl], 2))
        lo, hi = dec_in[lvl]
        dec_out.append((lo // 2, -(-hi // 2)))
    enc: list[Interval] = [dec_out[depth]]  # the bottleneck's output, built upwards from here
    for lvl in range(depth - 1, -1, -1):
        pooled = _grow(enc[0], 2)  # input of the level below = pooled output of this level
        skip = dec_in[lvl]
        enc.insert(0, (min(2 * pooled[0], skip[0]), max(2 * pooled[1], skip[1])))
    inp = _grow(enc[0], 2)
    if inp[0] < 0 or inp[1] > length:
        raise ValueError(
            f"a margin of {margin} px is smaller than the network's receptive field (window of {length} px)"
        )
    return AxisPlan(tuple(enc), tuple(dec_in), tuple(dec_out[:depth]), inp, out)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of ``bn(conv(x))`` as one convolution (BatchNorm with its running statistics)."""
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    if bn is None:
        return w.clone(), b.clone()
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return w * scale[:, None, None, None], (b - bn.running_mean) * scale + bn.bias.detach()


def _double_conv(block: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The two (conv [+ BatchNorm]) + ReLU of a U-Net block as folded (weight, bias) pairs."""
    layers = list(block.children())
    out = []
    i = 0
    while i < len(layers):
        conv = layers[i]
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
        nxt = layers[i + 1]
        bn = nxt if isinstance(nxt, nn.BatchNorm2d) else None
        i += 2 if bn is not None else 1
        assert isinstance(layers[i], nn.ReLU)
        i += 1
        out.append(_fold(conv, bn))
    return out


class WindowNet:
    """A U-Net's prediction on windows: logits of the window's centre, computed with valid convolutions.

    Read-only after construction, so threads may share one. ``channels_last`` stores the weights (and
    expects inputs) in NHWC order, which oneDNN convolutions run faster on the CPU.
    """

    def __init__(self, unet: UNet, channels_last: bool = False) -> None:
        self.depth = unet.config.depth
        self.filters = unet.filters  # fixed input filter bank, or None
        forest = unet.forest  # a fitted pixel forest multiplied in, or None
        self.forest = forest if forest is not None and forest.is_fitted else None
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.fmt = fmt

        def prep(wb: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return wb[0].contiguous(memory_format=fmt), wb[1].contiguous()

        self.down = [[prep(wb) for wb in _double_conv(b)] for b in unet.down]
        self.bottom = [prep(wb) for wb in _double_conv(unet.bottom)]
        self.up = []
        for up in unet.up:
            assert isinstance(up, nn.ConvTranspose2d) and up.bias is not None
            self.up.append(prep((up.weight.detach(), up.bias.detach())))
        self.dec = [[prep(wb) for wb in _double_conv(b)] for b in unet.dec]
        head = unet.head
        assert head.bias is not None
        self.head = prep((head.weight.detach(), head.bias.detach()))

    @staticmethod
    def _convs(x: torch.Tensor, params: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        for w, b in params:
            x = F.relu_(F.conv2d(x, w, b))
        return x

    def __call__(self, x: torch.Tensor, margin: int) -> torch.Tensor:
        """Logits ``(N, C_out, h - 2 margin, w - 2 margin)`` of input windows ``x`` ``(N, C_in, h, w)``."""
        if self.forest is not None:
            return self._unet(x, margin) + self.forest(x, margin)
        return self._unet(x, margin)

    def _unet(self, x: torch.Tensor, margin: int) -> torch.Tensor:
        d = self.depth
        if self.filters is not None:
            # Drop the border the filter bank's zero padding reaches into, rounded down to the pooling grid
            # (the origin must stay on it); the rest of that border lies outside what the output needs.
            r = self.filters.radius // 2**d * 2**d
            x = self.filters(x)
            if r:
                x = x[..., r:-r, r:-r]
            x = x.contiguous(memory_format=self.fmt)
            margin -= r
        py, px = plan_axis(x.shape[-2], margin, d), plan_axis(x.shape[-1], margin, d)

        def crop(t: torch.Tensor, origin: tuple[int, int], ry: Interval, rx: Interval) -> torch.Tensor:
            return t[..., ry[0] - origin[0] : ry[1] - origin[0], rx[0] - origin[1] : rx[1] - origin[1]]

        x = crop(x, (0, 0), py.input, px.input)
        skips: list[tuple[torch.Tensor, tuple[int, int]]] = []
        for lvl in range(d):
            x = self._convs(x, self.down[lvl])
            origin = (py.enc[lvl][0], px.enc[lvl][0])
            skips.append((x, origin))
            ny, nx = _grow(py.enc[lvl + 1], 2), _grow(px.enc[lvl + 1], 2)  # the next level's input
            x = F.max_pool2d(crop(x, origin, (2 * ny[0], 2 * ny[1]), (2 * nx[0], 2 * nx[1])), 2)
        x = self._convs(x, self.bottom)
        origin = (py.enc[d][0], px.enc[d][0])
        for i, lvl in enumerate(reversed(range(d))):
            w, b = self.up[i]
            up = F.conv_transpose2d(x, w, b, stride=2)
            ry, rx = py.dec_in[lvl], px.dec_in[lvl]
            skip, skip_origin = skips[lvl]
            x = torch.cat([crop(up, (2 * origin[0], 2 * origin[1]), ry, rx), crop(skip, skip_origin, ry, rx)], 1)
            x = self._convs(x, self.dec[i])
            origin = (py.dec_out[lvl][0], px.dec_out[lvl][0])
        x = F.conv2d(x, *self.head)
        return crop(x, origin, py.output, px.output)
