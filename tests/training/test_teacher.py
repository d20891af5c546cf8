"""The mean teacher: an EMA of the weights, and a consistency loss on confident unpainted pixels only."""

from __future__ import annotations

import pytest
import torch

from scribble_unet.model.unet import ModelConfig, build_model
from scribble_unet.training import teacher as teacher_mod
from scribble_unet.training.teacher import MeanTeacher


def test_update_moves_the_teacher_towards_the_student() -> None:
    student = build_model(ModelConfig(depth=1, width=4), seed=0)
    t = MeanTeacher(student, weight=1.0, decay=0.9)
    before = [p.clone() for p in t.model.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    t.update(student)
    for b, p in zip(before, t.model.parameters(), strict=True):
        assert torch.allclose(p, b + 0.1, atol=1e-6)  # 0.9 b + 0.1 (b + 1)
    assert not any(p.requires_grad for p in t.model.parameters())


def test_weight_ramps_in() -> None:
    t = MeanTeacher(build_model(ModelConfig(depth=1, width=4), seed=0), weight=2.0)
    s, r = teacher_mod.START, teacher_mod.RAMP
    assert t.weight_at(0) == t.weight_at(s) == 0.0
    assert t.weight_at(s + r // 2) == pytest.approx(1.0, abs=0.01)
    assert t.weight_at(s + r) == t.weight_at(10 * (s + r)) == 2.0


@pytest.mark.parametrize("classes", [1, 3])
def test_loss_uses_only_confident_unlabelled_pixels(classes: int) -> None:
    model = build_model(ModelConfig(depth=1, width=4, n_classes=classes), seed=0)
    t = MeanTeacher(model, weight=1.0, threshold=0.0)  # every pixel counts as confident
    x = torch.randn(2, 1, 16, 16)
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    step = teacher_mod.START + teacher_mod.RAMP
    student_logits = model(x).detach().requires_grad_(True)
    loss = t.loss(student_logits, x, labels, 0, step)
    assert loss is not None and torch.isfinite(loss)
    loss.backward()
    assert student_logits.grad is not None and student_logits.grad.abs().sum() > 0
    # painted pixels get no consistency gradient
    labels[:, :8] = 1
    student_logits.grad = None
    t.loss(student_logits, x, labels, 0, step).backward()  # type: ignore[union-attr]
    assert student_logits.grad[:, :, :8].abs().max() == 0 and student_logits.grad[:, :, 8:].abs().max() > 0
    # nothing before the ramp, and nothing where the teacher is never confident enough
    assert t.loss(student_logits, x, labels, 0, 0) is None
    assert MeanTeacher(model, weight=1.0, threshold=1.01).loss(student_logits, x, labels, 0, step) is None


def test_trainer_with_consistency_trains_and_averages(monkeypatch) -> None:
    import numpy as np

    from scribble_unet.training.trainer import TrainConfig, Trainer

    monkeypatch.setattr(teacher_mod, "START", 0)
    monkeypatch.setattr(teacher_mod, "RAMP", 1)
    rng = np.random.default_rng(0)
    img = rng.random((48, 48)).astype(np.float32)
    s = np.zeros((48, 48), np.uint8)
    s[5, 5:40] = 1
    s[30, 5:40] = 2
    cfg = TrainConfig(steps=4, batch_size=2, validate_every=0, val_share=0.0, device="cpu", seed=0, consistency=1.0)
    trainer = Trainer(img, s, ModelConfig(depth=1, width=4), cfg)
    assert trainer.teacher is not None
    start = [p.clone() for p in trainer.teacher.model.parameters()]
    events = list(trainer.run())
    assert trainer.step == 4 and events
    moved = [not torch.equal(a, b) for a, b in zip(start, trainer.teacher.model.parameters(), strict=True)]
    assert any(moved)
    assert Trainer(img, s, ModelConfig(depth=1, width=4), cfg.replace(consistency=0.0)).teacher is None
