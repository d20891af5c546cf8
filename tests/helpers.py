"""Small builders shared by the core tests."""

from __future__ import annotations

import numpy as np
import torch

from scribble_unet.model.checkpoint import Checkpoint
from scribble_unet.model.normalize import Normalization
from scribble_unet.model.unet import ModelConfig, build_model


def make_checkpoint(
    depth: int = 2,
    width: int = 4,
    channels: int = 1,
    classes: int = 1,
    norm: str = "batch",
    seed: int = 0,
    trained: bool = True,
    filter_bank: bool = False,
    pixel_forest: bool = False,
    prior_shift: float = 0.0,
) -> Checkpoint:
    """A small model whose weights look trained: random BatchNorm statistics and scaled weights.

    Fresh initialisations have BatchNorm at identity; perturbing the running statistics and the
    weights makes every layer matter, so exactness checks cannot pass by accident.
    """
    cfg = ModelConfig(depth=depth, width=width, in_channels=channels, n_classes=classes, norm=norm,  # type: ignore[arg-type]
                      filter_bank=filter_bank, pixel_forest=pixel_forest, prior_shift=prior_shift)
    model = build_model(cfg, seed=seed)
    if pixel_forest:  # a forest that splits on the features of a random image by a random rule
        from scribble_unet.model.forest import pixel_features

        rng = np.random.default_rng(seed)
        feats = pixel_features(torch.from_numpy(rng.normal(size=(1, channels, 48, 48)).astype(np.float32)))
        rows = feats[0].reshape(feats.shape[1], -1).T.numpy()
        score = rows @ rng.normal(size=rows.shape[1])
        values = 1 + np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 2)[1:-1]))
        assert model.forest is not None
        model.forest.set_rows(rows, values, rng)
        if prior_shift:  # a shift of every class's logit, as the trainer's estimate of the shares sets
            model.forest.prior.copy_(torch.from_numpy(rng.normal(size=cfg.out_channels).astype(np.float32)))
    if trained:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
                    mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                    mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                    mod.bias.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
                elif isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    mod.weight.mul_(1.5)
    norm_stats = Normalization(low=(0.0,) * channels, high=(1.0,) * channels)
    return Checkpoint.from_model(model, norm_stats, {"kind": "test"})


def whole_image_reference(ckpt: Checkpoint, image: np.ndarray) -> np.ndarray:
    """The definition of one whole-image pass, written independently of the tiling code.

    ``image`` is (C, Y, X) already normalised (the test checkpoints use the identity map).
    """
    from scribble_unet.inference.predict import logits_to_probabilities

    cfg = ckpt.config
    halo, a = cfg.halo, cfg.align
    _, h, w = image.shape
    hp, wp = -(-h // a) * a, -(-w // a) * a
    padded = np.pad(image, ((0, 0), (halo, halo + hp - h), (halo, halo + wp - w)), mode="reflect")
    model = ckpt.build("cpu")
    with torch.inference_mode():
        prob = logits_to_probabilities(model(torch.from_numpy(padded.astype(np.float32))[None]))[0]
    return prob[:, halo : halo + h, halo : halo + w].numpy()


def paint_nuclei_rows(layer, instances: np.ndarray, thickness: int = 1) -> None:  # type: ignore[no-untyped-def]
    """Paint like a user on a Labels ``layer``: every 40th row (from 40), object strokes (2) inside the
    nuclei of ``instances`` (eroded by 2 px) and background strokes (1) more than 4 px away from them,
    ``thickness`` rows thick, through napari's own ``data_setitem``."""
    from scipy import ndimage as ndi

    near = ndi.binary_dilation(instances > 0, iterations=4)
    inner = ndi.binary_erosion(instances > 0, iterations=2)
    for row in range(40, 512, 40):
        for value, where in ((2, inner[row]), (1, ~near[row])):
            cols = np.flatnonzero(where)
            rows = np.concatenate([np.full(cols.size, row + k) for k in range(thickness)])
            layer.data_setitem((rows, np.tile(cols, thickness)), value)
