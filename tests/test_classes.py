"""One owner per rule: the label scheme, logits -> probabilities -> mask, and the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scribble_unet.classes import LabelScheme, scribble_values
from scribble_unet.errors import ScribbleUNetError
from scribble_unet.inference.device import resolve_device
from scribble_unet.inference.probabilities import logits_to_probabilities, probabilities_to_mask


def test_label_scheme_values_names_and_colours() -> None:
    one, two = LabelScheme(["nucleus"]), LabelScheme(("nucleus", "mitosis"))
    assert one.values == [2] and two.values == [2, 3]
    assert two.names() == {1: "background", 2: "nucleus", 3: "mitosis"}
    assert two.layer_names() == ["background", "nucleus", "mitosis"]
    assert (one.values_text(), two.values_text()) == ("value 2", "values 2..3")
    assert two.describe(unlabelled="erase") == "0 erase, 1 background, 2 nucleus, 3 mitosis"
    colours = two.mask_colors()
    assert sorted(colours) == [1, 2] and all(0 <= c <= 1 for rgba in colours.values() for c in rgba)
    assert scribble_values(np.array([0, 1, 2], np.uint8)).tolist() == [1, 2, 3]


def test_probabilities_and_mask_with_and_without_background() -> None:
    logits = torch.tensor([[[0.0, 3.0]], [[1.0, -2.0]], [[2.0, 0.0]]])[None]  # (1, 3, 1, 2): K = 2
    objects = logits_to_probabilities(logits)[0].numpy()
    full = logits_to_probabilities(logits, background=True)[0].numpy()
    assert objects.shape == (2, 1, 2) and full.shape == (3, 1, 2)
    np.testing.assert_allclose(full[1:], objects)
    assert probabilities_to_mask(objects).tolist() == [[2, 0]]
    assert probabilities_to_mask(full, background=True).tolist() == [[2, 0]]
    binary = logits_to_probabilities(torch.tensor([[[[-1.0, 0.0, 1.0]]]]))[0].numpy()
    assert probabilities_to_mask(binary).tolist() == [[0, 1, 1]]  # p >= 0.5 is the object


def test_one_device_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and str(resolve_device("cpu")) == "cpu"
    with pytest.raises(ScribbleUNetError, match="sees no CUDA GPU"):
        resolve_device("cuda:0")
    with pytest.raises(ScribbleUNetError, match="device must be"):
        resolve_device("tpu")
