"""The trainer: bad input, events, checkpoints, fine-tuning, control from another thread, scribble
changes between steps, BatchNorm modes, and that a tiny model actually learns."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from skimage.draw import disk

from scribble_unet.errors import ScribbleUNetError
from scribble_unet.image import ArraySource
from scribble_unet.model.checkpoint import load_checkpoint
from scribble_unet.model.normalize import compute_normalization
from scribble_unet.model.unet import ModelConfig
from scribble_unet.training import trainer as trainer_mod
from scribble_unet.training.infer import predict_image, predict_window
from scribble_unet.training.simulate import simulate_scribbles
from scribble_unet.training.trainer import (
    CheckpointEvent,
    FinishedEvent,
    StepEvent,
    TrainConfig,
    Trainer,
    TrainEvent,
    ValidationEvent,
    config_for_init,
    resolve_device,
)

TINY = ModelConfig(depth=2, width=4)
FAST = TrainConfig(steps=3, batch_size=2, validate_every=0, device="cpu", seed=0)


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    # the machine is shared: one thread keeps test timings stable
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def discs(size: int = 64, n: int = 6, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs on a dark, noisy background, and their instance mask."""
    rng = np.random.default_rng(seed)
    inst = np.zeros((size, size), np.uint16)
    for i in range(n):
        y, x = rng.integers(6, size - 6, 2)
        inst[disk((int(y), int(x)), int(rng.integers(3, 7)), shape=inst.shape)] = i + 1
    img = ((inst > 0) * 1.0 + rng.normal(0, noise, inst.shape)).astype(np.float32)
    return img, inst


def painted(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """An image with hand-placed strokes: four background lines and three object strokes."""
    img, inst = discs(size)
    s = np.zeros((size, size), np.uint8)
    s[2, 2:30] = s[size - 3, 30:60] = s[10:40, 2] = s[20:50, size - 3] = 1
    s &= (inst == 0).astype(np.uint8)
    for i in (1, 2, 3):
        ys, xs = np.nonzero(inst == i)
        s[ys[: len(ys) // 2], xs[: len(xs) // 2]] = 2
    return img, s


def run_all(trainer: Trainer) -> list[TrainEvent]:
    return list(trainer.run())


# ---------------------------------------------------------------------- bad input
def test_shape_mismatch() -> None:
    img, s = painted()
    with pytest.raises(ScribbleUNetError, match=r"scribbles have shape \(60, 64\) but the image is \(64, 64\)"):
        Trainer(img, s[:60], TINY, FAST)


def test_nothing_painted() -> None:
    img, _ = painted()
    with pytest.raises(ScribbleUNetError, match="no labelled pixel; paint some background"):
        Trainer(img, np.zeros(img.shape, np.uint8), TINY, FAST)


def test_only_background_painted() -> None:
    img, s = painted()
    s[s == 2] = 0
    with pytest.raises(ScribbleUNetError, match=r"only background is painted; paint some objects \(value 2\)"):
        Trainer(img, s, TINY, FAST)


def test_only_objects_painted() -> None:
    img, s = painted()
    s[s == 1] = 0
    with pytest.raises(ScribbleUNetError, match=r"paint some background \(value 1\)"):
        Trainer(img, s, ModelConfig(depth=2, width=4, n_classes=2, class_names=("a", "b")), FAST)


def test_values_beyond_declared_classes() -> None:
    img, s = painted()
    s[30, 30] = 3
    with pytest.raises(ScribbleUNetError, match=r"label value 3.*1 background, 2 object"):
        Trainer(img, s, TINY, FAST)


def test_init_with_other_channels(tmp_path: Path) -> None:
    img, s = painted()
    two = ModelConfig(depth=2, width=4, in_channels=2)
    rgbish = np.stack([img, img])
    trainer = Trainer(ArraySource(rgbish, channel_axis=0), s, two, FAST)
    init = trainer.checkpoint()
    with pytest.raises(ScribbleUNetError, match=r"initial model takes 2 input channel.*image has 1"):
        Trainer(img, s, TINY, FAST, init=init, out=tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_init_with_other_architecture() -> None:
    img, s = painted()
    init = Trainer(img, s, TINY, FAST).checkpoint()
    with pytest.raises(ScribbleUNetError, match="initial model has depth 2, width 4"):
        Trainer(img, s, ModelConfig(depth=2, width=8), FAST, init=init)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"steps": 0}, "steps must be a positive whole number, got 0"),
        ({"steps": -5}, "steps must be a positive"),
        ({"time_budget": 0.0}, "time budget must be a positive number of seconds"),
        ({"time_budget": -1.0}, "time budget must be a positive"),
        ({"batch_size": 0}, "batch size"),
        ({"lr": 0.0}, "learning rate"),
        ({"fg_share": 1.5}, "foreground share"),
        ({"val_share": 1.0}, "validation share"),
        ({"device": "tpu"}, "device must be"),
        ({"weight_clip": (0.0, 1.0)}, "weight clip"),
    ],
)
def test_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ScribbleUNetError, match=match):
        TrainConfig(**options)


def test_output_folder_must_exist(tmp_path: Path) -> None:
    img, s = painted()
    with pytest.raises(ScribbleUNetError, match="does not exist"):
        Trainer(img, s, TINY, FAST, out=tmp_path / "missing" / "m.safetensors")
    with pytest.raises(ScribbleUNetError, match="is a directory"):
        Trainer(img, s, TINY, FAST, out=tmp_path)


def test_tile_too_small_for_the_network() -> None:
    img, s = painted()
    with pytest.raises(ScribbleUNetError, match="smaller than the field of view"):
        Trainer(img, s, TINY, TrainConfig(steps=1, tile=32, device="cpu"))


def test_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ScribbleUNetError, match="no CUDA GPU is available"):
        resolve_device("cuda")
    with pytest.raises(ScribbleUNetError, match="MPS is not available"):
        resolve_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


# ---------------------------------------------------------------------- events and checkpoints
def test_events_checkpoints_and_notes(tmp_path: Path) -> None:
    img, inst = discs(64, n=8)
    s = simulate_scribbles(inst, object_share=1.0, n_background=6, seed=0)
    out = tmp_path / "model.safetensors"
    cfg = TrainConfig(steps=5, batch_size=2, validate_every=2, checkpoint_every=2, val_share=0.3, device="cpu")
    trainer = Trainer(img, s, TINY, cfg, out=out)
    events = run_all(trainer)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "StepEvent", "StepEvent", "ValidationEvent", "CheckpointEvent", "StepEvent", "StepEvent",
        "ValidationEvent", "CheckpointEvent", "StepEvent", "ValidationEvent", "FinishedEvent",
    ]
    steps = [e.step for e in events if isinstance(e, StepEvent)]
    assert steps == [1, 2, 3, 4, 5]
    fin = events[-1]
    assert isinstance(fin, FinishedEvent) and fin.reason == "steps" and fin.step == 5 and fin.path == out
    val = events[-2]
    assert isinstance(val, ValidationEvent) and set(val.iou) <= {"background", "object"} and val.n_pixels > 0
    assert all(0.0 <= v <= 1.0 for v in val.iou.values())
    ck = [e for e in events if isinstance(e, CheckpointEvent)]
    assert [e.step for e in ck] == [2, 4] and ck[0].checkpoint.training["finished"] is False
    loaded = load_checkpoint(out)
    notes = loaded.training
    assert notes["steps"] == 5 and notes["finished"] is True and notes["reason"] == "steps"
    assert notes["class_names"] == ["object"] and notes["val_iou"] == val.iou
    assert isinstance(notes["final_loss"], float)
    assert loaded.normalization == compute_normalization(ArraySource(img))
    for k, v in fin.checkpoint.state_dict.items():
        assert torch.equal(loaded.state_dict[k], v)


def test_time_budget_ends_the_run() -> None:
    img, s = painted()
    trainer = Trainer(img, s, TINY, TrainConfig(steps=None, time_budget=0.3, batch_size=1, device="cpu"))
    events = run_all(trainer)
    fin = events[-1]
    assert isinstance(fin, FinishedEvent) and fin.reason == "time"
    assert fin.checkpoint.training["elapsed_s"] >= 0.3
    elapsed = [e.elapsed for e in events if isinstance(e, StepEvent)]
    assert elapsed == sorted(elapsed) and elapsed[-1] < 0.3 + 5  # stopped soon after the budget
    # run() again: continues with the same model
    more = run_all(trainer)
    assert isinstance(more[-1], FinishedEvent) and more[-1].step > fin.step


# ---------------------------------------------------------------------- fine-tuning
def test_finetune_same_classes_loads_every_weight() -> None:
    img, s = painted()
    base = Trainer(img, s, TINY, FAST)
    run_all(base)
    init = base.checkpoint()
    tuned = Trainer(img, s, config_for_init(init), TrainConfig(steps=2, seed=7, device="cpu"), init=init)
    assert not tuned.new_head
    for k, v in tuned.model.state_dict().items():
        if not k.startswith("forest."):  # the pixel forest is refilled from this run's strokes
            assert torch.equal(v.cpu(), init.state_dict[k]), k
    assert tuned.model.forest is not None and not tuned.model.forest.is_fitted
    fresh = Trainer(img, s, TINY, TrainConfig(steps=2, seed=7, device="cpu"))
    assert not torch.equal(fresh.model.state_dict()["down.0.0.weight"], init.state_dict["down.0.0.weight"])


def test_finetune_other_classes_gets_a_new_head() -> None:
    img, s = painted()
    base = Trainer(img, s, TINY, FAST)
    run_all(base)
    init = base.checkpoint()
    s3 = s.copy()
    s3[40:44, 40:44] = 3
    cfg = config_for_init(init, ["nucleus", "cell"])
    assert (cfg.depth, cfg.width, cfg.n_classes) == (2, 4, 2)
    tuned = Trainer(img, s3, cfg, FAST, init=init)
    assert tuned.new_head
    state = tuned.model.state_dict()
    assert state["head.weight"].shape[0] == 3
    for k, v in state.items():
        if not k.startswith(("head.", "forest.")):
            assert torch.equal(v.cpu(), init.state_dict[k]), k
    events = run_all(tuned)
    assert isinstance(events[-1], FinishedEvent)
    assert events[-1].checkpoint.training["new_head"] is True


# ---------------------------------------------------------------------- control from another thread
def test_pause_resume_stop_from_another_thread() -> None:
    img, s = painted()
    trainer = Trainer(img, s, TINY, TrainConfig(steps=None, batch_size=1, validate_every=0, device="cpu"))
    steps: list[int] = []
    finished: list[FinishedEvent] = []
    progressed = threading.Condition()

    def worker() -> None:
        for ev in trainer.run():
            with progressed:
                if isinstance(ev, StepEvent):
                    steps.append(ev.step)
                elif isinstance(ev, FinishedEvent):
                    finished.append(ev)
                progressed.notify_all()

    def wait_for(pred: Any, timeout: float = 20.0) -> None:
        with progressed:
            assert progressed.wait_for(pred, timeout), "timed out"

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    wait_for(lambda: len(steps) >= 3)
    trainer.pause()
    assert trainer.paused
    with progressed:
        at_pause = len(steps)
    time.sleep(0.5)  # a paused trainer does no step, however long we wait
    with progressed:
        assert len(steps) <= at_pause + 1  # at most the step that was already running
        held = len(steps)
    trainer.resume()
    wait_for(lambda: len(steps) >= held + 3)
    trainer.pause()
    time.sleep(0.1)
    trainer.stop()  # stop works while paused
    t.join(timeout=20)
    assert not t.is_alive()
    assert len(finished) == 1 and finished[0].reason == "stopped"
    assert finished[0].step == steps[-1]
    assert steps == list(range(1, len(steps) + 1))


def test_stop_before_the_first_step() -> None:
    img, s = painted()
    trainer = Trainer(img, s, TINY, TrainConfig(steps=100, device="cpu"))
    trainer.stop()
    events = run_all(trainer)
    assert len(events) == 1 and isinstance(events[0], FinishedEvent)
    assert events[0].reason == "stopped" and events[0].step == 0


# ---------------------------------------------------------------------- scribble changes
def test_scribble_changes_are_picked_up_between_steps() -> None:
    img, s = painted(96)
    trainer = Trainer(img, s, TINY, TrainConfig(steps=None, batch_size=1, val_share=0.0, device="cpu"))
    before = trainer.index.counts
    pos_weight = trainer.loss_fn.pos_weight
    events = trainer.run()
    next(events)
    reads = trainer.index.reads
    s[70:80, 70:80] = 2  # the user paints a new object stroke (chunks are 256 px: one chunk)
    trainer.scribbles_changed((70, 80, 70, 80))
    assert trainer.index.counts == before  # nothing happens until the next step
    next(events)
    assert trainer.index.reads == reads + 1  # only the changed chunk was re-read
    assert trainer.index.counts[2] == before[2] + int((s[70:80, 70:80] == 2).sum())
    assert trainer.loss_fn.pos_weight == pytest.approx(before[1] / trainer.index.counts[2])
    assert trainer.loss_fn.pos_weight != pos_weight
    assert 70 * 96 + 70 in set(trainer.split.train[2].tolist())  # new pixels can centre tiles
    s[s == 1] = 0  # the user erases all background: the trainer says what is missing
    trainer.scribbles_changed()
    with pytest.raises(ScribbleUNetError, match="paint some background"):
        next(events)


# ---------------------------------------------------------------------- BatchNorm: train vs eval
def test_validation_runs_in_eval_mode_and_leaves_statistics_alone() -> None:
    img, inst = discs(64, n=8)
    s = simulate_scribbles(inst, object_share=1.0, n_background=6, seed=1)
    cfg = TrainConfig(steps=3, batch_size=2, val_share=0.3, validate_every=0, device="cpu")
    trainer = Trainer(img, s, ModelConfig(depth=2, width=4, norm="batch"), cfg)
    run_all(trainer)
    trainer.model.train()
    buffers = {k: v.clone() for k, v in trainer.model.named_buffers()}
    ev = trainer.validate()
    assert ev is not None
    assert trainer.model.training  # back in the mode it was in
    for k, v in trainer.model.named_buffers():
        assert torch.equal(v, buffers[k]), k  # running statistics untouched
    trainer.model.eval()
    trainer.validate()
    assert not trainer.model.training


def test_training_mode_statistics_do_not_leak_into_prediction() -> None:
    img, s = painted()
    trainer = Trainer(img, s, ModelConfig(depth=2, width=4, norm="batch"), TrainConfig(steps=5, batch_size=2, device="cpu"))
    run_all(trainer)
    ckpt = trainer.checkpoint()
    src = ArraySource(img)
    before = predict_image(ckpt.build(), src, ckpt.normalization)  # type: ignore[arg-type]
    # a training-mode pass with absurd data changes the live model's running statistics ...
    trainer.model.train()
    with torch.no_grad():
        trainer.model(torch.randn(2, 1, 64, 64) * 1000 + 500)
    live = predict_image(trainer.model, src, ckpt.normalization)  # type: ignore[arg-type]
    assert not np.allclose(live, before)
    # ... but not the weights that were saved: prediction from the checkpoint is identical
    after = predict_image(ckpt.build(), src, ckpt.normalization)  # type: ignore[arg-type]
    np.testing.assert_array_equal(after, before)
    # and in eval mode a tile's prediction does not depend on what else is in the batch
    model = ckpt.build()
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 64, 64), np.float32))
    weird = torch.randn(3, 1, 64, 64) * 1000
    with torch.no_grad():
        alone = model(x)
        batched = model(torch.cat([x, weird]))[:1]
    torch.testing.assert_close(alone, batched, rtol=1e-5, atol=1e-5)


def test_predict_window_equals_whole_image_crop() -> None:
    img, s = painted()
    trainer = Trainer(img, s, TINY, FAST)
    run_all(trainer)
    src = ArraySource(img)
    whole = predict_image(trainer.model, src, trainer.normalization)
    part = predict_window(trainer.model, src, trainer.normalization, 16, 40, 8, 60)
    np.testing.assert_allclose(part, whole[:, 16:40, 8:60], atol=1e-5)


# ---------------------------------------------------------------------- it learns
def test_tiny_model_learns_discs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    inst = np.zeros((128, 128), np.uint16)
    for i in range(8):  # objects are rare: about 8 % of the pixels
        y, x = rng.integers(6, 122, 2)
        inst[disk((int(y), int(x)), int(rng.integers(5, 10)), shape=inst.shape)] = i + 1
    img = ((inst > 0) * 1.0 + rng.normal(0, 0.1, inst.shape)).astype(np.float32)
    s = simulate_scribbles(inst, object_share=0.5, seed=1)
    assert 0 < (s > 0).mean() <= 0.01
    cfg = TrainConfig(steps=250, lr=2e-3, validate_every=0, val_share=0.0, device="cpu", seed=0)
    trainer = Trainer(img, s, ModelConfig(depth=2, width=8), cfg, out=tmp_path / "m.safetensors")
    run_all(trainer)
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    probs = predict_image(ckpt.build(), ArraySource(img), ckpt.normalization)  # type: ignore[arg-type]
    pred, gt = probs[0] > 0.5, inst > 0
    iou = (pred & gt).sum() / (pred | gt).sum()
    assert iou > 0.8, iou


def test_filter_bank_model_trains_with_context_and_is_saved_with_it(tmp_path: Path) -> None:
    img, inst = discs(64, n=6)
    s = simulate_scribbles(inst, object_share=0.5, seed=1)
    cfg = TrainConfig(steps=3, batch_size=2, validate_every=0, val_share=0.0, device="cpu", seed=0)
    trainer = Trainer(img, s, ModelConfig(depth=2, width=4, filter_bank=True), cfg, out=tmp_path / "m.safetensors")
    assert trainer.sampler.context == trainer.model_config.filter_reach > 0
    assert trainer.tile == 64  # the filters' context comes beside the tile, not inside it
    run_all(trainer)
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    assert ckpt.config.filter_bank and ckpt.config.halo == trainer.model_config.halo


def test_multiclass_training_and_validation_names() -> None:
    img, inst = discs(64, n=8)
    classes = np.where(inst > 0, 1 + (inst % 2), 0).astype(np.uint8)  # two classes of discs
    s = simulate_scribbles(classes, semantic=True, object_share=1.0, n_background=6, seed=0)
    assert set(np.unique(s)) == {0, 1, 2, 3}
    cfg = TrainConfig(steps=4, batch_size=2, val_share=0.3, validate_every=2, device="cpu", dice_weight=1.0)
    model_cfg = ModelConfig(depth=2, width=4, n_classes=2, class_names=("odd", "even"))
    trainer = Trainer(img, s, model_cfg, cfg)
    events = run_all(trainer)
    vals = [e for e in events if isinstance(e, ValidationEvent)]
    assert vals and set(vals[-1].iou) <= {"background", "odd", "even"} and len(vals[-1].iou) >= 2
    assert trainer.loss_fn.class_weights.shape == (3,)
    fin = events[-1]
    assert isinstance(fin, FinishedEvent) and fin.checkpoint.config.class_names == ("odd", "even")


@pytest.mark.parametrize("mode", ["frozen", "batch"])
def test_batchnorm_modes(mode: str) -> None:
    img, s = painted()
    cfg = TrainConfig(steps=3, batch_size=2, batchnorm=mode, device="cpu")  # type: ignore[arg-type]
    trainer = Trainer(img, s, ModelConfig(depth=2, width=4, norm="batch"), cfg)
    before = {k: v.clone() for k, v in trainer.model.named_buffers() if "running" in k}
    run_all(trainer)
    after = dict(trainer.model.named_buffers())
    changed = any(not torch.equal(after[k], v) for k, v in before.items())
    # frozen: training computes exactly what prediction computes (running statistics never move)
    assert changed == (mode == "batch")
    weights_moved = not torch.equal(trainer.model.state_dict()["down.0.1.weight"], torch.ones(4))
    assert weights_moved  # BatchNorm scale still learns when frozen


def test_pixel_weights_from_a_dense_instance_mask() -> None:
    from scribble_unet.training.losses import unet_weight_map

    img, inst = discs(64, n=8)
    dense = (1 + (inst > 0)).astype(np.uint8)  # every pixel labelled, as for the quality ceiling
    weights = unet_weight_map(inst)
    trainer = Trainer(img, dense, TINY, FAST, weights=weights)
    _, _, w = trainer.sampler.batch(2, np.random.default_rng(0))
    assert w is not None and w.shape == (2, 64, 64) and w.max() > w.min()
    assert isinstance(run_all(trainer)[-1], FinishedEvent)
    with pytest.raises(ScribbleUNetError, match="loss weights have shape"):
        Trainer(img, dense, TINY, FAST, weights=weights[:10])


# ---------------------------------------------------------------------- pixel forest
def test_pixel_forest_keeps_every_stroke_and_validates_without_the_held_out_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    img, scr = painted(96)
    cfg = TrainConfig(steps=3, batch_size=2, validate_every=0, device="cpu", seed=0, val_share=0.3)
    trainer = Trainer(img, scr, ModelConfig(depth=2, width=4, pixel_forest=True), cfg, out=tmp_path / "m.safetensors")
    final = run_all(trainer)[-1]
    assert isinstance(final, FinishedEvent)
    forest = trainer.model.forest
    assert forest is not None and forest.is_fitted
    values = forest.row_values.numpy()
    train, val = trainer.split.train, trainer.split.val
    assert sum(len(v) for v in val.values()) > 0
    # the kept forest learnt from every stroke pixel (fewer than the cap here), held-out ones included
    assert {v: int((values == v).sum()) for v in (1, 2)} == {v: len(train[v]) + len(val[v]) for v in (1, 2)}
    # validation sees a forest that learnt from the training strokes only; the kept one comes back after
    seen: list[dict[int, int]] = []
    real_predict = trainer_mod.predict_held_out

    def spy(model: Any, *args: Any) -> Any:
        seen.append({v: int((model.forest.row_values.numpy() == v).sum()) for v in (1, 2)})
        return real_predict(model, *args)

    monkeypatch.setattr(trainer_mod, "predict_held_out", spy)
    clf = forest.classifier()
    real_set_rows, fills = forest.set_rows, []
    forest.set_rows = lambda *a: fills.append(1) or real_set_rows(*a)  # type: ignore[method-assign]
    for _ in range(2):
        assert trainer.validate() is not None
        assert np.array_equal(forest.row_values.numpy(), values) and forest.classifier() is clf
    assert seen == [{v: len(train[v]) for v in (1, 2)}] * 2
    assert fills == []  # fitted once per set of strokes (during the run), then reused
    del forest.set_rows
    # the saved model predicts with its forest: it differs from the same U-Net without one
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    assert ckpt.config.pixel_forest
    model = ckpt.build()
    with torch.inference_mode():
        x = torch.from_numpy(img[None, None])
        assert not torch.allclose(model(x), model._unet(x, 0))
    # fine-tuning keeps the forest option and refills the forest from the new run's strokes
    again = Trainer(img, scr, config_for_init(ckpt), FAST, init=ckpt)
    assert again.model.forest is not None and not again.model.forest.is_fitted
    run_all(again)
    assert again.model.forest.is_fitted


def test_fine_tuning_a_model_without_forest_may_add_one() -> None:
    img, scr = painted()
    plain = run_all(Trainer(img, scr, TINY, FAST))[-1]
    assert isinstance(plain, FinishedEvent)
    cfg = config_for_init(plain.checkpoint).replace(pixel_forest=True)
    trainer = Trainer(img, scr, cfg, FAST, init=plain.checkpoint)
    run_all(trainer)
    assert trainer.model.forest is not None and trainer.model.forest.is_fitted


def test_trainer_stores_the_shift_for_the_images_class_shares_in_the_model(tmp_path: Path) -> None:
    from scribble_unet.model.checkpoint import load_checkpoint
    from scribble_unet.training.prior import shift_of

    img, scr = painted(96)
    cfg = TrainConfig(steps=3, batch_size=2, validate_every=0, device="cpu", seed=0, val_share=0.0)
    trainer = Trainer(img, scr, ModelConfig(depth=2, width=4, pixel_forest=True, prior_shift=0.5), cfg,
                      out=tmp_path / "m.safetensors")
    final = run_all(trainer)[-1]
    assert isinstance(final, FinishedEvent)
    est = trainer._prior
    assert est is not None and est.shares is not None and est.shares.sum() == pytest.approx(1.0)
    saved = load_checkpoint(tmp_path / "m.safetensors").state_dict["forest.prior"]
    assert float(saved[0]) == pytest.approx(float(shift_of(est.shares, 0.5, 1)[0]), rel=1e-5)
    assert float(saved[0]) != 0.0
