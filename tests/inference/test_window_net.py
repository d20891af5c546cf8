"""The prediction network (valid convolutions, BatchNorm folded) and chunks computed in pieces: both
equal one whole-image pass of the training network."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from helpers import make_checkpoint, whole_image_reference
from scribble_unet.image import ArraySource
from scribble_unet.inference import predict as predict_mod
from scribble_unet.inference.predict import _pieces, predict_array, predict_lazy
from scribble_unet.inference.window_net import WindowNet, plan_axis
from scribble_unet.model.checkpoint import Checkpoint
from scribble_unet.training.infer import predict_image

CKPTS = {
    "depth2-1class": make_checkpoint(depth=2, width=4, seed=11),
    "depth3-3class-2ch": make_checkpoint(depth=3, width=4, channels=2, classes=3, seed=12),
    "depth1-nonorm": make_checkpoint(depth=1, width=6, norm="none", seed=13),
    "depth2-filters-3ch": make_checkpoint(depth=2, width=4, channels=3, seed=14, filter_bank=True),
}


@pytest.mark.parametrize("key", sorted(CKPTS))
@pytest.mark.parametrize("channels_last", [False, True])
def test_window_net_equals_the_padded_network_on_the_centre(key: str, channels_last: bool) -> None:
    ckpt = CKPTS[key]
    cfg = ckpt.config
    unet = ckpt.build("cpu")
    net = WindowNet(unet, channels_last=channels_last)
    a, halo = cfg.align, cfg.halo
    rng = np.random.default_rng(0)
    for hy, wx in [(2 * halo + a, 2 * halo + a), (2 * halo + 5 * a, 2 * halo + 2 * a), (2 * halo + 24 * a, 2 * halo + 7 * a)]:
        x = torch.from_numpy(rng.normal(size=(2, cfg.in_channels, hy, wx)).astype(np.float32))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            ref = unet(x)[..., halo : hy - halo, halo : wx - halo]
            got = net(x, halo)
        assert got.shape == ref.shape
        assert (got - ref).abs().max().item() <= 1e-5


def test_plan_reads_inside_the_window_and_refuses_a_short_margin() -> None:
    for depth in (1, 2, 3, 4):
        halo = make_checkpoint(depth=depth).config.halo
        plan = plan_axis(2 * halo + 2**depth, halo, depth)
        assert 0 <= plan.input[0] and plan.input[1] <= 2 * halo + 2**depth
        assert plan.output == (halo, halo + 2**depth)
        # the decoder computes little more than the output: 2 px per convolution at each level
        assert plan.dec_in[0] == (halo - 2, halo + 2**depth + 2)
    with pytest.raises(ValueError, match="receptive field"):
        plan_axis(64, 8, 2)  # depth 2 reaches 23 px
    with pytest.raises(ValueError, match="no centre"):
        plan_axis(48, 24, 2)


@pytest.mark.parametrize("n", [1, 4, 30, 64, 100, 255, 256, 300, 512, 1000, 1048])
def test_pieces_cover_the_axis_on_the_pooling_grid(n: int) -> None:
    for piece, align in [(256, 4), (16, 8), (0, 2)]:
        parts = _pieces(n, piece, align)
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(b == c for (_, b), (c, _) in itertools.pairwise(parts))
        assert all(a % align == 0 and b > a for a, b in parts)
        if piece == 0:
            assert len(parts) == 1


def _scaled(ckpt: Checkpoint, f: int) -> Checkpoint:
    return Checkpoint(ckpt.config.replace(scale=f), ckpt.state_dict, ckpt.normalization, {})


@pytest.mark.parametrize("piece", [8, 24, 40])
@pytest.mark.parametrize("key", sorted(CKPTS))
@pytest.mark.parametrize("shape", [(97, 61), (64, 130), (33, 33)])
def test_chunks_in_pieces_equal_the_whole_pass(monkeypatch, piece: int, key: str, shape: tuple[int, int]) -> None:
    monkeypatch.setattr(predict_mod, "PIECE", piece)
    ckpt = CKPTS[key]
    cfg = ckpt.config
    img = np.random.default_rng(sum(shape)).normal(size=(cfg.in_channels, *shape)).astype(np.float32)
    data = img[0] if cfg.in_channels == 1 else ArraySource(img, channel_axis=0)
    ref = whole_image_reference(ckpt, img)
    for tile in (8 * cfg.align, 0):
        got = predict_lazy(ckpt, data, tile=tile, device="cpu").probabilities.compute(scheduler="threads")
        assert got.shape == (cfg.n_classes, *shape)
        assert np.abs(got - ref).max() <= 1e-5


@pytest.mark.parametrize("f", [1, 2])
@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("filter_bank", [False, True])
def test_working_resolution_chunks_in_pieces_equal_the_whole_pass(monkeypatch, f: int, classes: int,
                                                                   filter_bank: bool) -> None:
    monkeypatch.setattr(predict_mod, "PIECE", 12)
    ckpt = _scaled(make_checkpoint(depth=2, width=4, classes=classes, seed=21, filter_bank=filter_bank), f)
    img = np.random.default_rng(f + classes).random((123, 90)).astype(np.float32)
    ref = predict_image(ckpt.build(), img, ckpt.normalization)
    if classes > 1:
        ref = ref[1:]  # predict_image keeps the background probability first
    for tile in (48, 104):
        prob, _ = predict_array(ckpt, img, tile=tile, device="cpu")
        assert prob.shape == (classes, 123, 90)
        assert np.abs(prob - ref).max() <= 1e-5


def test_default_pieces_on_large_chunks_equal_the_whole_pass() -> None:
    ckpt = CKPTS["depth2-1class"]
    img = np.random.default_rng(5).normal(size=(1, 700, 530)).astype(np.float32)
    ref = whole_image_reference(ckpt, img)
    pred = predict_lazy(ckpt, img[0], tile=512, device="cpu")
    assert pred.grid.tile == 512 > predict_mod.PIECE  # the 512 px chunks run in pieces
    got = pred.probabilities.compute(scheduler="threads")
    assert np.abs(got - ref).max() <= 1e-5
