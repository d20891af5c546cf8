"""One configuration: the command line, the widget form and the checkpoint header agree on every default."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from scribble_unet.cli.options import default_text
from scribble_unet.cli.train import MODEL_OPTIONS, TRAIN_OPTIONS, add_train_parser
from scribble_unet.config import INTERACTIVE_TRAINING, ModelOptions, TrainOptions
from scribble_unet.errors import ScribbleUNetError
from scribble_unet.model.checkpoint import load_checkpoint, read_header, save_checkpoint
from scribble_unet.model.unet import ModelConfig
from scribble_unet.training.trainer import TrainConfig, Trainer


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    return parser


def option_help(parser: argparse.ArgumentParser, dest: str) -> str:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    return next(a.help or "" for a in train._actions if a.dest == dest)


def test_cli_states_the_config_defaults_and_adds_none_of_its_own() -> None:
    parser = train_parser()
    args = parser.parse_args(["train", "--image", "i", "--scribbles", "s", "--out", "m"])
    for name in TRAIN_OPTIONS:
        assert getattr(args, name) is None, name  # not given: the config's default applies
        assert f"(default: {default_text(TrainOptions, name)}" in option_help(parser, name) or name == "tile"
        assert TrainOptions.model_fields[name].description.rstrip(".") in option_help(parser, name)
    for name in MODEL_OPTIONS:
        assert f"(default: {default_text(ModelOptions, name)}" in option_help(parser, name)
    assert "(default: 4)" in option_help(parser, "batch_size")
    assert TrainConfig().batch_size == 4


def test_cli_bounds_come_from_the_config() -> None:
    parser = train_parser()
    base = ["train", "--image", "i", "--scribbles", "s", "--out", "m"]
    for bad in (["--steps", "0"], ["--fg-share", "1.5"], ["--val-share", "1"], ["--lr", "inf"],
                ["--device", "tpu"], ["--depth", "7"]):
        with pytest.raises(SystemExit):
            parser.parse_args(base + bad)
    ok = parser.parse_args([*base, "--val-share", "0.5", "--depth", "6", "--elastic"])
    assert (ok.val_share, ok.depth, ok.elastic) == (0.5, 6, True)


@pytest.mark.gui
def test_widget_form_shows_the_config_defaults(qtbot) -> None:
    from scribble_unet._napari._config_form import ConfigForm
    from scribble_unet._napari._widget_train import MODEL_FIELDS, TRAIN_FIELDS

    interactive = TrainConfig(**INTERACTIVE_TRAINING)
    form = ConfigForm(TrainConfig, TRAIN_FIELDS, interactive)
    qtbot.addWidget(form)
    assert form.value() == interactive
    for name, (editor, _) in form.editors.items():
        assert editor.toolTip() == TrainOptions.model_fields[name].description
    assert form.editors["fg_share"][0].maximum() == 1.0  # bounds -> spin-box range
    model_form = ConfigForm(ModelConfig, MODEL_FIELDS)
    qtbot.addWidget(model_form)
    assert model_form.value() == ModelConfig()
    assert model_form.editors["depth"][0].minimum() == 1 and model_form.editors["depth"][0].maximum() == 6


def test_checkpoint_header_carries_the_whole_run_configuration(tmp_path) -> None:
    img = np.zeros((64, 64), np.float32)
    img[20:40, 20:40] = 1.0
    scribbles = np.zeros((64, 64), np.uint8)
    scribbles[5, 5:60] = 1
    scribbles[30, 22:38] = 2
    config = TrainConfig(steps=1, batch_size=1, val_share=0.0, device="cpu", noise=0.05)
    trainer = Trainer(img, scribbles, ModelConfig(depth=1, width=2), config)
    ckpt = None
    for event in trainer.run():
        ckpt = getattr(event, "checkpoint", ckpt)
    assert ckpt is not None
    path = save_checkpoint(tmp_path / "m.safetensors", ckpt)
    assert read_header(path)["training"]["train_config"] == config.model_dump(mode="json")
    assert load_checkpoint(path).train_config == TrainOptions(**config.model_dump())


def test_damaged_configuration_in_a_header_is_refused(tmp_path) -> None:
    from helpers import make_checkpoint

    ckpt = make_checkpoint()
    ckpt.training["train_config"] = {"steps": 0}
    path = save_checkpoint(tmp_path / "m.safetensors", ckpt)
    with pytest.raises(ScribbleUNetError, match="steps must be a positive whole number, got 0"):
        load_checkpoint(path)


def test_errors_are_one_line_and_name_the_option() -> None:
    with pytest.raises(ScribbleUNetError, match=r"^unknown TrainOptions options: stepz$"):
        TrainOptions(stepz=3)
    with pytest.raises(ScribbleUNetError, match=r"^learning rate must be positive, got 0.0$"):
        TrainConfig(lr=0.0)
    assert TrainConfig().replace(steps=7).steps == 7
    with pytest.raises(ScribbleUNetError, match="batch size must be at least 1"):
        TrainConfig().replace(batch_size=0)
