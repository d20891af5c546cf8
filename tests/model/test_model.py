import pytest
import torch

from scribble_unet.errors import ScribbleUNetError
from scribble_unet.model.unet import ModelConfig, build_model, receptive_field, required_halo


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_receptive_field_matches_gradient_support(depth: int) -> None:
    """The analytic reach equals the support of d(output)/d(input) measured on the network."""
    cfg = ModelConfig(depth=depth, width=4, norm="none")
    model = build_model(cfg, seed=3).double()
    # ReLU networks can have dead paths at one output channel: sum the gradient over all of them
    a = cfg.align
    n = 20 * a
    left = right = 0
    for phase in range(a):
        x = torch.randn(1, 1, n, n, dtype=torch.float64, requires_grad=True)
        c = n // 2 + phase
        out = model(x)
        out[0, :, c, c].sum().backward()
        support = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()  # type: ignore[union-attr]
        left = max(left, c - int(support.min()))
        right = max(right, int(support.max()) - c)
    exp_left, exp_right = receptive_field(depth)
    assert (left, right) == (exp_left, exp_right)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_halo_covers_receptive_field_on_the_grid(depth: int) -> None:
    halo = required_halo(depth)
    assert halo % 2**depth == 0
    assert halo >= max(receptive_field(depth))
    assert halo - max(receptive_field(depth)) < 2**depth


def test_output_shape_and_channels() -> None:
    for k, c_out in [(1, 1), (3, 4)]:
        cfg = ModelConfig(depth=2, width=4, in_channels=2, n_classes=k)
        y = build_model(cfg).eval()(torch.zeros(1, 2, 32, 48))
        assert y.shape == (1, c_out, 32, 48)


def test_input_not_on_grid_is_refused() -> None:
    model = build_model(ModelConfig(depth=3, width=4))
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.zeros(1, 1, 30, 32))


def test_seed_makes_weights_reproducible() -> None:
    a = build_model(ModelConfig(depth=2, width=4), seed=7).state_dict()
    b = build_model(ModelConfig(depth=2, width=4), seed=7).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": 0}, "depth"),
        ({"width": 0}, "width"),
        ({"n_classes": 2, "class_names": ("a", "b", "c")}, "3 class names given for 2 classes"),
        ({"norm": "group"}, "norm"),
    ],
)
def test_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ScribbleUNetError, match=match):
        ModelConfig(**kwargs)


def test_config_json_roundtrip() -> None:
    import json

    cfg = ModelConfig(depth=3, width=8, in_channels=2, n_classes=2, class_names=("nucleus", "cell"))
    assert ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg
