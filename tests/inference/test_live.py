"""The live prediction and the machine scheduler, without Qt: who runs when, and what is computed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from helpers import make_checkpoint
from scribble_unet.image import open_image
from scribble_unet.inference.live import CachedLevel, LivePrediction, quantise_uncertainty
from scribble_unet.inference.predict import predict_lazy
from scribble_unet.inference.schedule import (
    CHANGE_FOR_FULL_SHARE,
    MIN_SHARE_FACTOR,
    MachineScheduler,
)
from scribble_unet.inference.uncertainty import uncertainty_from_probabilities


class FakeTrainer:
    """Records pause/resume calls; ``paused`` is the state the last call left."""

    def __init__(self) -> None:
        self.paused = False
        self.calls: list[str] = []

    def pause(self) -> None:
        self.paused = True
        self.calls.append("pause")

    def resume(self) -> None:
        self.paused = False
        self.calls.append("resume")


def _until(cond: Callable[[], bool], timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def _image() -> np.ndarray:
    return (np.random.default_rng(0).random((300, 260)) * 4000).astype(np.uint16)


def _consume(live: LivePrediction) -> threading.Thread:
    th = threading.Thread(target=lambda: [None for _ in live.run()], daemon=True)
    th.start()
    return th


def test_visible_chunks_come_first_nearest_the_centre_and_training_yields_meanwhile() -> None:
    trainer = FakeTrainer()
    sched = MachineScheduler()
    sched.attach_trainer(trainer)
    live = LivePrediction(open_image(_image()), tile=64, scheduler=sched)
    live.set_checkpoint(make_checkpoint())
    live.request(64, 192, 64, 192)  # chunks (1..2, 1..2); the centre (128, 128) is a corner of all four
    paused_while_computing: list[bool] = []
    gen = live.run()
    for _ in range(4):
        next(gen)
        paused_while_computing.append(trainer.paused)
    assert sorted(live.requested) == [(1, 1), (1, 2), (2, 1), (2, 2)] and len(live.requested) == 4
    assert all(paused_while_computing) and sched.holds == 1  # one hold for the whole view
    live.request(0, 64, 192, 256)  # pan: the new view's chunk first, still yielding
    assert next(gen) == (0, 3) and trainer.paused
    live.stop()
    for _ in gen:
        pass
    assert not trainer.paused  # the machine is given back when the view is complete / the loop ends


def test_a_pause_the_user_asked_for_is_kept() -> None:
    trainer = FakeTrainer()
    sched = MachineScheduler()
    sched.attach_trainer(trainer)
    sched.set_user_paused(True)
    sched.hold_training(True)
    sched.hold_training(False)
    assert trainer.paused
    sched.set_user_paused(False)
    assert not trainer.paused


def test_idle_refresh_keeps_its_share_of_the_time() -> None:
    now = [100.0]
    sched = MachineScheduler(idle_share=0.2, clock=lambda: now[0])
    sched.chunk_done(0.5, urgent=True)
    assert sched.idle_wait() == 0  # urgent chunks never wait
    sched.chunk_done(0.5, urgent=False)
    assert abs(sched.idle_wait() - 2.0) < 1e-9  # 0.5 s of every 2.5 s
    now[0] += 2.0
    assert sched.idle_wait() == 0


def test_pausing_stops_chunk_requests_and_a_cleared_view_queues_nothing() -> None:
    trainer = FakeTrainer()
    sched = MachineScheduler()
    sched.attach_trainer(trainer)
    live = LivePrediction(open_image(_image()), tile=64, scheduler=sched)
    live.set_checkpoint(make_checkpoint())
    sched.set_live_paused(True)
    th = _consume(live)
    live.request(0, 300, 0, 260)
    time.sleep(0.5)  # a window in which a running view would have computed chunks
    assert live.requested == [] and not trainer.paused
    live.clear_request()  # zoomed out: nothing in view is computed, the old view is forgotten
    sched.set_live_paused(False)
    time.sleep(0.5)
    assert live.requested == [] and live.pending() == 0
    live.request(0, 64, 0, 64)
    assert _until(lambda: live.computed == 1)
    assert live.requested == [(0, 0)]
    live.stop()
    th.join(10)


def test_a_newer_model_is_taken_once_the_refresh_pass_is_done_and_old_chunks_stay_shown() -> None:
    image = _image()
    sched = MachineScheduler(refresh_every_s=0.0, idle_share=1.0)
    live = LivePrediction(open_image(image), tile=64, scheduler=sched)
    first, second = make_checkpoint(seed=0), make_checkpoint(seed=1)
    live.set_checkpoint(first)
    live.request(0, 64, 0, 128)
    gen = live.run()
    next(gen), next(gen)
    live.set_checkpoint(second)
    assert live.token == first.token and live.pending() == 2  # taken by the loop, not by the caller
    old = CachedLevel(live, 0)[0:64, 0:128]
    assert next(gen) in [(0, 0), (0, 1)] and live.token == second.token
    shown = CachedLevel(live, 0)[0:64, 0:128]
    assert shown.shape == old.shape and live.missing() == 0  # never blank while refreshing
    next(gen)
    assert live.pending() == 0
    lazy = predict_lazy(second, image, tile=64)
    assert np.array_equal(CachedLevel(live, 0)[0:64, 0:128], lazy.mask[0:64, 0:128].compute(scheduler="synchronous"))
    prob = lazy.probabilities[:, 0:64, 0:128].compute(scheduler="synchronous")
    expected_u = quantise_uncertainty(uncertainty_from_probabilities(prob))
    assert np.array_equal(CachedLevel(live, 0, "uncertainty")[0:64, 0:128], expected_u)
    live.stop()


def test_cached_levels_read_slices_like_index_arrays_at_every_level() -> None:
    """napari asks for strided slices (read chunk by chunk with plain slicing); any other key goes
    through index arrays. Both give the same pixels, 0 where no chunk is cached."""
    from types import SimpleNamespace

    from scribble_unet.inference.live import Chunk
    from scribble_unet.inference.tiling import TileGrid

    rng = np.random.default_rng(1)
    for shape, tile in [((1000, 777), 128), ((300, 520), 64)]:
        grid = TileGrid(shape, tile, 0, 4)
        cache = {}
        for iy, ix in grid:
            if rng.random() < 0.8:
                y0, y1, x0, x1 = grid.chunk_bounds(iy, ix)
                cache[(iy, ix)] = Chunk("t", rng.integers(1, 5, (y1 - y0, x1 - x0), dtype=np.uint8),
                                        rng.integers(0, 255, (y1 - y0, x1 - x0), dtype=np.uint8))
        live = SimpleNamespace(source=SimpleNamespace(shape_yx=shape), snapshot=lambda g=grid, c=cache: (g, c))
        full = np.zeros(shape, np.uint8)
        for (iy, ix), chunk in cache.items():
            y0, y1, x0, x1 = grid.chunk_bounds(iy, ix)
            full[y0:y1, x0:x1] = chunk.mask
        for level in range(3):
            lv = CachedLevel(live, level)  # type: ignore[arg-type]
            f = 2**level
            h, w = lv.shape
            assert np.array_equal(lv[:, :], full[::f, ::f])
            for _ in range(40):
                a, b = sorted(int(v) for v in rng.integers(0, h + 1, 2))
                c, d = sorted(int(v) for v in rng.integers(0, w + 1, 2))
                sy, sx = (int(v) for v in rng.integers(1, 4, 2))
                by_slices = lv[a:b:sy, c:d:sx]
                by_index = lv[np.arange(h)[a:b:sy], :][:, c:d:sx]
                assert np.array_equal(by_slices, by_index)
                assert np.array_equal(by_slices, full[::f, ::f][a:b:sy, c:d:sx])


def test_idle_share_shrinks_while_refreshes_change_little_and_recovers() -> None:
    now = [0.0]
    sched = MachineScheduler(idle_share=0.2, clock=lambda: now[0])
    assert sched.current_idle_share() == 0.2  # nothing refreshed yet: the full share
    sched.chunk_done(0.5, urgent=False, changed=0.0)
    assert abs(sched.current_idle_share() - 0.2 * MIN_SHARE_FACTOR) < 1e-12  # a settled view: the floor
    assert abs(sched.idle_wait() - 0.5 * (1 - 0.05) / 0.05) < 1e-9
    for _ in range(10):  # the picture changes again (a new model learnt something): back to the full share
        sched.chunk_done(0.5, urgent=False, changed=0.3)
    assert sched.current_idle_share() == 0.2
    fresh = MachineScheduler(idle_share=0.2)
    fresh.chunk_done(0.5, urgent=False, changed=CHANGE_FOR_FULL_SHARE / 2)
    assert 0.2 * MIN_SHARE_FACTOR < fresh.current_idle_share() < 0.2  # in between: in proportion


def test_the_live_view_reports_how_much_a_refresh_changed() -> None:
    seen: list[float | None] = []

    class Recording(MachineScheduler):
        def chunk_done(self, seconds: float, urgent: bool, changed: float | None = None) -> None:
            seen.append(changed)
            super().chunk_done(seconds, urgent, changed)

    sched = Recording(refresh_every_s=0.0, idle_share=1.0)
    live = LivePrediction(open_image(_image()), tile=64, scheduler=sched)
    first, second = make_checkpoint(seed=0), make_checkpoint(seed=1)
    live.set_checkpoint(first)
    live.request(0, 64, 0, 64)
    gen = live.run()
    next(gen)
    old = live.cache[(0, 0)].mask
    live.set_checkpoint(second)
    next(gen)
    new = live.cache[(0, 0)].mask
    assert seen[0] is None  # the first prediction replaced nothing
    assert seen[1] == float(np.mean(old != new))
    live.stop()
