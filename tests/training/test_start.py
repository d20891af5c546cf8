"""Where a new model's weights start: the built-in generalist (training/start.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scribble_unet.image import open_image
from scribble_unet.image.nuclei import load_nuclei
from scribble_unet.model.normalize import compute_normalization
from scribble_unet.model.unet import ModelConfig, build_model
from scribble_unet.training.infer import predict_image
from scribble_unet.training.start import generalist_misfit, load_generalist, start_from_generalist
from scribble_unet.training.train_config import TrainConfig
from scribble_unet.training.trainer import Trainer


def test_the_shipped_generalist_is_the_default_architecture_and_says_where_it_comes_from() -> None:
    g = load_generalist()
    default = ModelConfig()
    assert (g.config.depth, g.config.width, g.config.norm, g.config.in_channels, g.config.n_classes) == (
        default.depth, default.width, default.norm, 1, 1)
    notes = g.training["generalist"]
    assert set(notes["sources"]) == {"dsb", "usiigaci", "axon"}
    assert notes["steps"] > 1000 and notes["script"] == "benchmarks/pretrain/generalist.py"
    assert generalist_misfit(default) is None


def test_the_generalist_alone_finds_nuclei_on_the_sample() -> None:
    # Not a quality figure: the sample's source image was left out of the pretraining set, but other
    # DSB images of the same kind were in it. This checks that the file holds a working model.
    image, instances = load_nuclei()
    model = build_model(ModelConfig(pixel_forest=False, prior_shift=0.0))
    assert start_from_generalist(model) == "generalist"
    src = open_image(image)
    prob = predict_image(model, src, compute_normalization(src))[0]
    pred, truth = prob > 0.5, instances > 0
    iou = (pred & truth).sum() / (pred | truth).sum()
    assert iou > 0.6, iou


def test_rgb_models_see_the_mean_of_their_channels() -> None:
    grey = build_model(ModelConfig(pixel_forest=False, prior_shift=0.0))
    rgb = build_model(ModelConfig(in_channels=3, pixel_forest=False, prior_shift=0.0))
    assert start_from_generalist(grey) == start_from_generalist(rgb) == "generalist"
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(grey.eval()(x), rgb.eval()(x.repeat(1, 3, 1, 1)), atol=1e-5)


def test_several_classes_get_a_new_output_layer_and_other_architectures_start_from_scratch() -> None:
    multi = build_model(ModelConfig(n_classes=2, class_names=("a", "b")), seed=0)
    head = multi.head.weight.detach().clone()
    assert start_from_generalist(multi) == "generalist (new output layer)"
    assert torch.equal(multi.head.weight, head)  # kept as initialised
    assert torch.equal(multi.state_dict()["down.0.0.weight"], load_generalist().state_dict["down.0.0.weight"])

    deep = build_model(ModelConfig(depth=3), seed=0)
    before = {k: v.clone() for k, v in deep.state_dict().items()}
    how = start_from_generalist(deep)
    assert how.startswith("scratch (the architecture differs: depth 3 (generalist: 2)")
    assert all(torch.equal(v, before[k]) for k, v in deep.state_dict().items())


@pytest.mark.parametrize("start", ["generalist", "scratch"])
def test_the_trainer_starts_where_it_is_told_and_records_it(start: str) -> None:
    image, instances = load_nuclei()
    scribbles = np.zeros(image.shape, np.uint8)
    scribbles[instances > 0] = 2
    scribbles[::7][instances[::7] == 0] = 1
    config = TrainConfig(steps=1, validate_every=0, device="cpu", start=start, prefetch=0)
    trainer = Trainer(image, scribbles, ModelConfig(), config)
    first = trainer.model.state_dict()["down.0.0.weight"]
    g = load_generalist().state_dict["down.0.0.weight"]
    assert trainer.start == start
    assert torch.equal(first, g) == (start == "generalist")
    finished = list(trainer.run())[-1]
    assert finished.checkpoint.training["start"] == start


def test_start_is_checked() -> None:
    with pytest.raises(Exception, match="starting weights must be generalist or scratch, got 'random'"):
        TrainConfig(start="random")
