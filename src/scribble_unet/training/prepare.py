"""What a training run checks and loads before its first step: classes painted, initial model."""

from __future__ import annotations

from collections.abc import Sequence

from ..classes import FIRST_CLASS, LabelScheme
from ..errors import ScribbleUNetError
from ..model.checkpoint import Checkpoint
from ..model.unet import ModelConfig, UNet


def config_for_init(init: Checkpoint, class_names: Sequence[str] | None = None) -> ModelConfig:
    """The model configuration to fine-tune ``init``: its architecture, with ``class_names`` if given."""
    c = init.config
    names = tuple(class_names) if class_names else c.class_names
    return ModelConfig(depth=c.depth, width=c.width, in_channels=c.in_channels, n_classes=len(names),
                       class_names=names, norm=c.norm, filter_bank=c.filter_bank, pixel_forest=c.pixel_forest,
                       prior_shift=c.prior_shift)


def check_model_fits(model_config: ModelConfig, init: Checkpoint | None, n_channels: int) -> None:
    """Refuse a model configuration (or initial model) that does not fit the image or each other."""
    if init is not None and init.config.in_channels != n_channels:
        raise ScribbleUNetError(
            f"the initial model takes {init.config.in_channels} input channel(s) but the image has "
            f"{n_channels}; fine-tune on an image with the same channels or train from scratch"
        )
    if model_config.in_channels != n_channels:
        raise ScribbleUNetError(
            f"the image has {n_channels} channel(s) but the model config expects {model_config.in_channels}"
        )
    if init is not None:
        a, b = init.config, model_config
        if (a.depth, a.width, a.norm) != (b.depth, b.width, b.norm):
            raise ScribbleUNetError(
                f"the initial model has depth {a.depth}, width {a.width}, norm {a.norm} but the model config "
                f"asks for depth {b.depth}, width {b.width}, norm {b.norm}; fine-tuning keeps the architecture"
            )


def check_classes_painted(counts: dict[int, int], class_names: Sequence[str]) -> None:
    """Refuse label sets a model cannot learn from: nothing painted, or only one side painted."""
    objects = LabelScheme(class_names).values_text()
    if not counts:
        raise ScribbleUNetError(
            f"the scribbles have no labelled pixel; paint some background (value 1) and some objects ({objects})"
        )
    if 1 not in counts:
        raise ScribbleUNetError("only objects are painted; paint some background (value 1) as well")
    if not any(v >= FIRST_CLASS for v in counts):
        raise ScribbleUNetError(f"only background is painted; paint some objects ({objects}) as well")


def _load_init(model: UNet, init: Checkpoint) -> bool:
    """Copy ``init``'s weights into ``model``; returns True when the head was kept new (other classes)."""
    # a pixel forest is not learned by the network: it is refilled from the strokes of this run
    new_head = init.config.n_classes != model.config.n_classes
    skip = ("forest.", "head.") if new_head else ("forest.",)
    state = {k: v for k, v in init.state_dict.items() if not k.startswith(skip)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(skip) for k in missing), (missing, unexpected)
    return new_head
