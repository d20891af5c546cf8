"""The fixed input filter bank: what it computes, how far it reaches, how it is stored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scribble_unet.model import filters
from scribble_unet.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from scribble_unet.model.filters import SIGMAS, FilterBank
from scribble_unet.model.normalize import Normalization
from scribble_unet.model.unet import ModelConfig, build_model, receptive_field


def test_constant_image_has_only_smoothed_intensity() -> None:
    bank = FilterBank(1)
    r = bank.radius
    out = bank(torch.full((1, 1, 4 * r, 4 * r), 0.7))[0, :, r:-r, r:-r]  # away from the zero padding
    feats = out[1:].reshape(len(SIGMAS), 5, *out.shape[1:])
    assert torch.allclose(out[0], torch.tensor(0.7))
    assert torch.allclose(feats[:, 0], torch.tensor(0.7), atol=1e-5)  # smoothing keeps a constant
    assert feats[:, 1:].abs().max() < 1e-5  # no edge, no curvature


def test_responses_match_analytic_derivatives() -> None:
    """On a ramp the gradient magnitude is sigma x slope; on a paraboloid the Hessian eigenvalues are
    sigma^2 x its curvatures (scale-normalised derivatives)."""
    bank = FilterBank(1).double()
    r = bank.radius
    n = 4 * r + 8
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                            indexing="ij")
    inner = (slice(None), slice(r, -r), slice(r, -r))
    ramp = bank((0.3 * xx - 0.4 * yy)[None, None])[0][inner]
    para = bank((0.02 * (xx - n / 2) ** 2 + 0.05 * (yy - n / 2) ** 2)[None, None])[0][inner]
    for i, s in enumerate(SIGMAS):
        base = 1 + 5 * i
        assert torch.allclose(ramp[base + 1], torch.tensor(0.5 * s, dtype=torch.float64), rtol=1e-3)
        assert ramp[base + 2].abs().max() < 1e-4  # kernels are stored in float32
        lam_big, lam_small = para[base + 3], para[base + 4]
        assert torch.allclose(lam_big, torch.tensor(0.1 * s * s, dtype=torch.float64), rtol=1e-3)
        assert torch.allclose(lam_small, torch.tensor(0.04 * s * s, dtype=torch.float64), rtol=1e-3)


def test_channels_and_halo_include_the_filters() -> None:
    cfg = ModelConfig(depth=2, width=4, in_channels=3, filter_bank=True)
    plain = ModelConfig(depth=2, width=4, in_channels=3)
    assert FilterBank(3).out_channels == 3 * (1 + 5 * len(SIGMAS))
    assert cfg.field_of_view == plain.field_of_view + 2 * filters.reach()
    assert cfg.halo >= max(receptive_field(2)) + filters.reach() and cfg.halo % cfg.align == 0
    y = build_model(cfg).eval()(torch.zeros(2, 3, 32, 48))
    assert y.shape == (2, 1, 32, 48)


def test_receptive_field_with_filters_matches_perturbation_support() -> None:
    """The furthest input pixel that changes an output pixel lies exactly at the computed reach."""
    cfg = ModelConfig(depth=2, width=8, norm="none", filter_bank=True)
    model = build_model(cfg, seed=1).double()
    torch.manual_seed(0)
    left = max(receptive_field(2)[0], receptive_field(2)[1]) + filters.reach()
    n = 2 * left + 24
    x = torch.randn(1, 1, n, n, dtype=torch.float64)
    furthest = 0
    with torch.no_grad():
        for phase in range(cfg.align):
            c = n // 2 + phase
            base = model(x)[0, :, c, c]
            for off in range(left - 6, left + 3):
                moved = x.clone()
                moved[0, 0, c - off, c] += 1.0
                if not torch.equal(model(moved)[0, :, c, c], base):
                    furthest = max(furthest, off)
    assert furthest == left


def test_filter_bank_travels_in_the_checkpoint_and_old_headers_load_without_it(tmp_path) -> None:
    cfg = ModelConfig(depth=2, width=4, filter_bank=True)
    ckpt = Checkpoint.from_model(build_model(cfg, seed=0), Normalization((0.0,), (1.0,)), {})
    path = save_checkpoint(tmp_path / "m.safetensors", ckpt)
    back = load_checkpoint(path)
    assert back.config.filter_bank
    img = np.random.default_rng(0).random((1, 1, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        assert torch.equal(back.build().eval()(torch.from_numpy(img)), ckpt.build().eval()(torch.from_numpy(img)))
    assert "filter_bank" not in ModelConfig(depth=2).to_json()  # earlier versions' header, unchanged
    assert ModelConfig.from_dict({"depth": 2, "width": 4}).filter_bank is False


@pytest.mark.parametrize("bad", [1.5, "maybe"])
def test_filter_bank_option_is_a_bool(bad: object) -> None:
    from scribble_unet.errors import ScribbleUNetError

    with pytest.raises(ScribbleUNetError, match="filter bank"):
        ModelConfig(filter_bank=bad)  # type: ignore[arg-type]
