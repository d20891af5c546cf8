"""The project's AdamW against torch.optim.AdamW: same arithmetic, and no torch._dynamo import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from scribble_unet.training.optim import AdamW


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 1, 1))


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_torch_adamw_bit_for_bit(weight_decay: float) -> None:
    ours_model, ref_model = _model(3), _model(3)
    ours = AdamW(ours_model.parameters(), lr=1e-2, weight_decay=weight_decay)
    ref = torch.optim.AdamW(ref_model.parameters(), lr=1e-2, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(0)
    for step in range(25):
        x = torch.randn(3, 2, 12, 12, generator=gen)
        lr = 1e-2 * (1 - step / 30)  # the trainer changes the rate between steps
        for opt, model in ((ours, ours_model), (ref, ref_model)):
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(ours_model.state_dict().values(), ref_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_parameters_without_gradient_are_left_alone() -> None:
    model = _model(1)
    frozen = model[0].weight
    frozen.requires_grad_(False)
    before = frozen.clone()
    opt = AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    model(torch.randn(1, 2, 8, 8)).sum().backward()
    opt.step()
    assert torch.equal(frozen, before)
    assert not torch.equal(model[3].weight, _model(1)[3].weight)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid AdamW settings"):
        AdamW(_model(0).parameters(), lr=-1.0)


def test_training_does_not_import_dynamo() -> None:
    # torch.optim's optimisers import torch._dynamo on first use, holding the GIL long enough to freeze
    # napari for a quarter of a second; a fresh interpreter runs a few training steps without it
    code = (
        "import sys, numpy as np\n"
        "from scribble_unet.training.trainer import Trainer\n"
        "from scribble_unet.training.train_config import TrainConfig\n"
        "from scribble_unet.model.unet import ModelConfig\n"
        "rng = np.random.default_rng(0)\n"
        "img = rng.random((96, 96)).astype(np.float32)\n"
        "lab = np.zeros((96, 96), np.uint8); lab[10:20, 10:40] = 1; lab[60:70, 50:80] = 2\n"
        "t = Trainer(img, lab, ModelConfig(depth=1, width=4),"
        " TrainConfig(steps=3, tile=32, batch_size=2, val_share=0.0, validate_every=0))\n"
        "for _ in t.run(): pass\n"
        "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "no dynamo"
