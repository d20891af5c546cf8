"""One plan for the machine: training and the live prediction take turns on the same cores.

Both are CPU-bound torch work on the same few cores; run side by side, each slows the other and
the view fills slowly. :class:`MachineScheduler` decides who runs:

* **The user interacts** (pans, zooms, paints): the visible chunks come first, nearest the view's
  centre first. Training *yields*: the scheduler pauses the trainer (it stops before its next step)
  until no visible chunk waits, then resumes it.
* **A visible chunk has no prediction at all** (a new place, the first model): the same, so the view
  is never left blank longer than it takes to compute it.
* **The user is idle**: training gets the cores. A newer model is taken for the view at most every
  :attr:`refresh_every_s` seconds, and only once the previous refresh pass completed (so a refresh
  always finishes instead of restarting at each checkpoint); its chunks are recomputed one by one,
  training paused for the length of one chunk, and the live view uses at most
  :attr:`idle_share` of the wall time. That share shrinks (down to :data:`MIN_SHARE_FACTOR` of it)
  while refreshes change little: a refreshed chunk whose mask changed on fewer than
  :data:`CHANGE_FOR_FULL_SHARE` of its pixels says the model has settled there, and computing it again
  soon would take time from training to show the same picture. Old predictions stay on screen until
  replaced.
* **The live view is paused** by the user: no chunk is computed; training runs untouched.

The trainer is anything with ``pause()`` and ``resume()``. A pause the user asked for
(:meth:`set_user_paused`) is kept: the scheduler never resumes a trainer the user paused. Qt-free;
the clock is injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

INTERACTION_HOLD_S = 1.0
"""A camera move or a stroke counts as interaction for this long."""
REFRESH_EVERY_S = 4.0
"""While the user is idle, the view takes a newer model at most this often."""
IDLE_SHARE = 0.10
"""While the user is idle, the live view uses at most this share of the wall time."""
CHANGE_FOR_FULL_SHARE = 0.02
"""Share of a refreshed chunk's pixels whose class changed from which the view gets its full idle share."""
MIN_SHARE_FACTOR = 0.25
"""The idle share never falls below this fraction of :attr:`MachineScheduler.idle_share`."""
CHANGE_SMOOTHING = 0.5
"""Weight of the latest refreshed chunk in the running estimate of how much refreshes change."""


class MachineScheduler:
    """Who runs now: training or the live view (see the module docstring)."""

    def __init__(self, interaction_hold_s: float = INTERACTION_HOLD_S, refresh_every_s: float = REFRESH_EVERY_S,
                 idle_share: float = IDLE_SHARE, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < idle_share <= 1:
            raise ValueError(f"idle share must be in (0, 1], got {idle_share}")
        self.interaction_hold_s = interaction_hold_s
        self.refresh_every_s = refresh_every_s
        self.idle_share = idle_share
        self.clock = clock
        self._lock = threading.RLock()
        self._trainer: Any = None
        self._user_paused = False
        self._held = False
        self._last_interaction = -float("inf")
        self._idle_ready_at = -float("inf")
        self.live_paused = False
        self.holds = 0  # times training yielded to the view (for the status line and tests)
        self.change: float | None = None
        """Running estimate of the share of pixels a refresh changes (None: nothing refreshed yet)."""
        self.chunk_seconds = {"urgent": 0.0, "idle": 0.0}
        """Seconds the live view spent computing chunks, by kind (for benchmarks)."""

    # ------------------------------------------------------------------ inputs (any thread)
    def attach_trainer(self, trainer: Any) -> None:
        """Plan with ``trainer`` (None: training ended)."""
        with self._lock:
            self._trainer = trainer
            self._held = False
            self._user_paused = False
            self._apply()

    def set_user_paused(self, paused: bool) -> None:
        """The user paused (True) or resumed (False) training."""
        with self._lock:
            self._user_paused = paused
            self._apply()

    def interacted(self) -> None:
        """The user moved the camera or painted just now."""
        with self._lock:
            self._last_interaction = self.clock()

    def set_live_paused(self, paused: bool) -> None:
        """Pause (True) or resume the live view; pausing it gives training the machine back."""
        with self._lock:
            self.live_paused = paused
            if paused:
                self.hold_training(False)

    # ------------------------------------------------------------------ queries
    def interacting(self) -> bool:
        with self._lock:
            return self.clock() - self._last_interaction < self.interaction_hold_s

    @property
    def training_held(self) -> bool:
        with self._lock:
            return self._held

    def idle_wait(self) -> float:
        """Seconds before the next idle (non-urgent) chunk may start; 0 if now."""
        with self._lock:
            return max(0.0, self._idle_ready_at - self.clock())

    def current_idle_share(self) -> float:
        """The share of the wall time idle refreshes may use now (see the module docstring)."""
        with self._lock:
            if self.change is None:
                return self.idle_share
            factor = min(1.0, max(MIN_SHARE_FACTOR, self.change / CHANGE_FOR_FULL_SHARE))
            return self.idle_share * factor

    def chunk_done(self, seconds: float, urgent: bool, changed: float | None = None) -> None:
        """A chunk took ``seconds``; an idle one delays the next so the view keeps its share.

        ``changed``: the share of the chunk's pixels whose class differs from the prediction it
        replaced (None when it replaced nothing).
        """
        with self._lock:
            self.chunk_seconds["urgent" if urgent else "idle"] += seconds
            if changed is not None:
                a = CHANGE_SMOOTHING
                self.change = changed if self.change is None else a * changed + (1 - a) * self.change
            if urgent:
                return
            share = self.current_idle_share()
            self._idle_ready_at = self.clock() + seconds * (1 - share) / share

    # ------------------------------------------------------------------ the trainer
    def hold_training(self, hold: bool) -> None:
        """Make training yield (True) or let it run again (False) for the live view."""
        with self._lock:
            if hold and not self._held:
                self.holds += 1
            self._held = hold
            self._apply()

    def _apply(self) -> None:
        trainer = self._trainer
        if trainer is None:
            return
        if self._held or self._user_paused:
            trainer.pause()
        else:
            trainer.resume()
