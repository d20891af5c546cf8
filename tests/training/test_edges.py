"""The edge-aware Potts term: cheapest when mask borders lie on image edges, scale-free, and in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scribble_unet.model import ModelConfig
from scribble_unet.training import edges as edges_mod
from scribble_unet.training.edges import EdgeTerm, bilateral_potts


def step_image(
    n: int = 32, edge: int = 16, contrast: float = 1.0, noise: float = 0.02
) -> torch.Tensor:
    """``(1, 1, n, n)``: dark left of column ``edge``, bright from it on, a little noise."""
    rng = np.random.default_rng(0)
    img = np.zeros((n, n), np.float32)
    img[:, edge:] = contrast
    img += noise * contrast * rng.standard_normal((n, n)).astype(np.float32)
    return torch.from_numpy(img)[None, None]


def border_logits(n: int = 32, border: int = 16, sharp: float = 20.0) -> torch.Tensor:
    """One logit per pixel: object from column ``border`` on, background before it."""
    z = torch.full((1, 1, n, n), -sharp)
    z[..., border:] = sharp
    return z


def energy(logits: torch.Tensor, image: torch.Tensor, **kw) -> float:
    """Exact energy: every pixel drawn (32 x 32 tiles)."""
    return float(bilateral_potts(logits, image, samples=32 * 32, **kw))


def test_a_border_off_the_edge_is_pulled_onto_it_from_afar() -> None:
    img = step_image()
    e = {b: energy(border_logits(border=b), img) for b in range(6, 27)}
    # every step towards the edge (column 16) lowers the energy, from 8 px away, down to ~0 on it
    assert e[8] > e[10] > e[12] > e[14] > e[15] > e[16] < e[17] < e[18] < e[20] < e[22] < e[24]
    assert e[16] < 1e-3 * e[10]
    # one class everywhere costs nothing
    assert energy(torch.full((1, 1, 32, 32), 20.0), img) < 1e-6


def test_smoothing_keeps_edges_visible_under_pixel_noise() -> None:
    noisy = step_image(noise=0.25)  # pixel noise a quarter of the step, as on dim fluorescence

    def off_over_on(smoothing: float) -> float:
        off = energy(border_logits(border=8), noisy, smoothing=smoothing)
        return off / energy(border_logits(border=16), noisy, smoothing=smoothing)

    assert off_over_on(1.0) > 10 * off_over_on(0.0) > 20


def test_the_term_does_not_depend_on_the_image_contrast() -> None:
    z = border_logits(border=12)
    a = energy(z, step_image(contrast=1.0))
    assert a == pytest.approx(energy(z, step_image(contrast=250.0)), rel=1e-4)


def test_one_logit_and_two_softmax_logits_give_the_same_energy() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 1, 32, 32, generator=g)
    img = torch.rand(2, 3, 32, 32, generator=g)  # RGB: differences summed over channels
    two = torch.cat([torch.zeros_like(z), z], dim=1)  # softmax(0, z) = (1 - sigmoid z, sigmoid z)
    assert energy(z, img) == pytest.approx(energy(two, img), rel=1e-5)


def test_sampled_pairs_estimate_the_exact_energy_and_repeat_with_the_seed() -> None:
    img = step_image(n=32)
    z = border_logits(border=10)
    exact = energy(z, img)
    draws = [
        float(bilateral_potts(z, img, samples=256, generator=torch.Generator().manual_seed(s)))
        for s in range(40)
    ]
    assert float(np.mean(draws)) == pytest.approx(exact, rel=0.05)
    again = float(bilateral_potts(z, img, samples=256, generator=torch.Generator().manual_seed(3)))
    assert again == draws[3]


def test_gradient_reaches_the_logits_and_not_the_image() -> None:
    img = step_image().requires_grad_(True)
    z = border_logits(border=12, sharp=2.0).requires_grad_(True)
    bilateral_potts(z, img, samples=32 * 32).backward()
    assert z.grad is not None and float(z.grad.abs().max()) > 0
    assert img.grad is None or float(img.grad.abs().max()) == 0.0
    # the object pixels in the dark band left of the edge are pushed towards background
    assert float(z.grad[0, 0, :, 12:16].mean()) > 0


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        bilateral_potts(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 10, 10))


def test_ramp_and_context_crop() -> None:
    term = EdgeTerm(2.0)
    assert term.weight_at(0) == 0 and term.weight_at(edges_mod.RAMP) == 2.0
    assert term.weight_at(edges_mod.RAMP // 2) == pytest.approx(1.0)
    assert term.loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), 0, 0) is None
    z = border_logits(n=16, border=8)
    img = step_image(n=16, edge=8)
    padded = torch.nn.functional.pad(img, (3, 3, 3, 3), mode="reflect")
    got = term.loss(z, padded, 3, edges_mod.RAMP)
    assert got is not None and float(got) == pytest.approx(
        2.0 * float(bilateral_potts(z, img)), rel=1e-6
    )


def test_trainer_uses_the_term_only_when_asked(monkeypatch) -> None:
    from scribble_unet.training.trainer import TrainConfig, Trainer

    calls: list[int] = []
    real = EdgeTerm.loss

    def counting(self, logits, x, context, step):
        calls.append(step)
        return real(self, logits, x, context, step)

    monkeypatch.setattr(EdgeTerm, "loss", counting)
    rng = np.random.default_rng(0)
    img = rng.random((48, 48)).astype(np.float32)
    s = np.zeros((48, 48), np.uint8)
    s[5, 5:40] = 1
    s[30, 5:40] = 2
    cfg = TrainConfig(
        steps=3,
        batch_size=2,
        validate_every=0,
        val_share=0.0,
        device="cpu",
        seed=0,
        edge_weight=1.0,
    )
    trainer = Trainer(img, s, ModelConfig(depth=1, width=4), cfg)
    assert trainer.edges is not None
    list(trainer.run())
    assert calls == [0, 1, 2]
    assert (
        Trainer(img, s, ModelConfig(depth=1, width=4), cfg.replace(edge_weight=0.0)).edges is None
    )
