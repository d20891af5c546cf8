"""The pixel forest multiplied into the U-Net's prediction (``ModelConfig.pixel_forest``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier

from helpers import make_checkpoint
from scribble_unet.model import forest as fm
from scribble_unet.model.checkpoint import load_checkpoint, save_checkpoint
from scribble_unet.model.filters import FilterBank
from scribble_unet.model.unet import ModelConfig, build_model


def test_features_are_the_filter_bank_at_the_forest_scales() -> None:
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 80, 90)).astype(np.float32))
    got = fm.pixel_features(x)
    ref = FilterBank(3, fm.SIGMAS)(x)
    assert got.shape == (2, fm.n_features(3), 80, 90) == ref.shape
    assert torch.allclose(got, ref, atol=2e-5)


def test_features_bits_do_not_depend_on_the_window() -> None:
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 1, 200, 230)).astype(np.float32))
    r = fm.reach()
    whole = fm.pixel_features(x)
    for y0, x0, h, w in [(0, 0, 100, 120), (37, 51, 90, 97), (100, 110, 100, 120)]:
        win = x[..., y0 : y0 + h, x0 : x0 + w]
        for part in (win, win.contiguous(memory_format=torch.channels_last)):
            got = fm.pixel_features(part)[..., r : h - r, r : w - r]
            assert torch.equal(got, whole[..., y0 + r : y0 + h - r, x0 + r : x0 + w - r])


def test_features_on_threads_equal_features_on_one_thread() -> None:
    x = torch.from_numpy(np.random.default_rng(4).normal(size=(1, 2, 70, 60)).astype(np.float32))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = fm.pixel_features(x)
        torch.set_num_threads(2)
        assert torch.equal(fm.pixel_features(x), serial)
    finally:
        torch.set_num_threads(before)


def test_forest_adds_the_log_odds_of_scikit_learns_forest() -> None:
    rng = np.random.default_rng(2)
    forest = fm.PixelForest(1, 1)
    x = torch.from_numpy(rng.normal(size=(1, 1, 64, 64)).astype(np.float32))
    feats = fm.pixel_features(x)[0].reshape(fm.n_features(1), -1).T.numpy()
    values = 1 + (feats[:, 3] > 0).astype(np.int64)  # object where the smoothed image is bright
    kept = forest.set_rows(feats, values, rng)
    per = fm.MAX_ROWS // 2  # split evenly between the two label values
    assert kept == sum(min(int((values == v).sum()), per) for v in (1, 2)) and forest.is_fitted
    stored = forest.row_values.numpy()
    assert [int((stored == v).sum()) for v in (1, 2)] == [min(int((values == v).sum()), per) for v in (1, 2)]
    clf = RandomForestClassifier(fm.TREES, max_depth=fm.DEPTH, random_state=fm.SEED, n_jobs=1)
    used = stored > 0
    clf.fit(forest.rows.numpy()[used], stored[used])
    p = np.clip(clf.predict_proba(feats), fm.EPS, 1 - fm.EPS)
    want = np.log(p[:, 1] / p[:, 0]).reshape(64, 64)
    got = forest(x)[0, 0].numpy()
    assert np.allclose(got, want, atol=1e-5)
    # it learnt the rule: bright smoothed pixels get positive log odds
    assert (got.reshape(-1)[values == 2] > 0).mean() > 0.9 and (got.reshape(-1)[values == 1] < 0).mean() > 0.9


def test_multi_class_forest_gives_log_frequencies_of_every_class() -> None:
    ckpt = make_checkpoint(depth=1, width=4, channels=2, classes=3, seed=3, pixel_forest=True)
    model = ckpt.build()
    assert model.forest is not None and model.forest.is_fitted
    x = torch.from_numpy(np.random.default_rng(4).normal(size=(1, 2, 40, 40)).astype(np.float32))
    out = model.forest(x)
    assert out.shape == (1, 4, 40, 40)
    assert torch.allclose(out.exp().sum(1), torch.ones(1, 40, 40), atol=4 * fm.EPS)


def test_empty_forest_adds_nothing_and_training_mode_ignores_it() -> None:
    cfg = ModelConfig(depth=2, width=4, pixel_forest=True)
    with_forest, plain = build_model(cfg, seed=0), build_model(cfg.replace(pixel_forest=False), seed=0)
    x = torch.randn(1, 1, 32, 32)
    with_forest.eval()
    plain.eval()
    assert not with_forest.forest.is_fitted
    assert torch.equal(with_forest(x), plain(x))
    fitted = make_checkpoint(depth=2, width=4, seed=0, pixel_forest=True).build()
    fitted_plain = make_checkpoint(depth=2, width=4, seed=0).build()
    assert not torch.allclose(fitted(x), fitted_plain(x))
    fitted.train()
    fitted_plain.train()
    assert torch.allclose(fitted(x), fitted_plain(x))


def test_halo_covers_the_forest_reach() -> None:
    cfg = ModelConfig(depth=2, width=4, pixel_forest=True)
    assert cfg.halo >= fm.reach() and cfg.halo % cfg.align == 0
    assert ModelConfig(depth=2, width=4, pixel_forest=False).halo < cfg.halo


def test_checkpoint_round_trip_keeps_the_forest(tmp_path) -> None:
    ckpt = make_checkpoint(depth=2, width=4, seed=5, pixel_forest=True)
    path = save_checkpoint(tmp_path / "m.safetensors", ckpt)
    back = load_checkpoint(path)
    assert back.config.pixel_forest and back.token == ckpt.token
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        assert torch.equal(back.build()(x), ckpt.build()(x))
    # a model without a forest writes the header of earlier versions
    plain = make_checkpoint(depth=2, width=4, seed=5)
    assert "pixel_forest" not in plain.config.to_json()


def test_set_rows_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="do not match"):
        fm.PixelForest(1, 1).set_rows(np.zeros((5, fm.n_features(1))), np.ones(4), np.random.default_rng(0))


def test_damaged_forest_rows_are_refused_in_one_line(tmp_path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from scribble_unet.model.checkpoint import CheckpointError

    path = save_checkpoint(tmp_path / "m.safetensors", make_checkpoint(depth=2, width=4, seed=5, pixel_forest=True))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    for key, bad in (("forest.row_values", 7), ("forest.rows", float("nan"))):
        state = load_file(str(path))
        state[key] = state[key].clone()
        state[key].view(-1)[0] = bad
        broken = tmp_path / f"broken-{key}.safetensors"
        save_file(state, str(broken), metadata=meta)
        with pytest.raises(CheckpointError, match="damaged pixel forest") as err:
            load_checkpoint(broken)
        assert "\n" not in str(err.value)


def test_kept_forests_and_outputs_are_reused_only_for_the_same_rows_and_window(monkeypatch) -> None:
    fm.clear_caches()
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(1, 1, 48, 48)).astype(np.float32))
    feats = fm.pixel_features(x)[0].reshape(fm.n_features(1), -1).T.numpy()
    values = 1 + (feats[:, 3] > 0).astype(np.int64)
    a = fm.PixelForest(1, 1)
    a.set_rows(feats, values, np.random.default_rng(0))
    calls = []
    real = fm.pixel_features
    monkeypatch.setattr(fm, "pixel_features", lambda t: calls.append(1) or real(t))
    first = a(x, margin=4)
    # a new model with the same rows (the next checkpoint of a run): same forest, output not recomputed
    b = fm.PixelForest(1, 1)
    b.load_state_dict(a.state_dict())
    assert b.classifier() is a.classifier()
    assert torch.equal(b(x, margin=4), first) and len(calls) == 1
    # another window, another margin or other rows: computed afresh, and equal to an uncached forest
    assert not torch.equal(b(x.flip(-1), margin=4), first) and len(calls) == 2
    assert b(x, margin=2).shape[-1] == 44 and len(calls) == 3
    c = fm.PixelForest(1, 1)
    c.set_rows(feats, 3 - values, np.random.default_rng(0))  # the classes swapped
    assert c.classifier() is not a.classifier()
    swapped = c(x, margin=4)
    assert len(calls) == 4 and (swapped * first < 0).float().mean() > 0.9  # it says the opposite
    assert torch.equal(swapped, torch.from_numpy(c._log_frequencies(x, 4)))
    fm.clear_caches()
    assert torch.equal(b(x, margin=4), first) and len(calls) == 6
