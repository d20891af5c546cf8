"""Long work in napari generator thread workers: training, live prediction and export.

Each kind of work is a :class:`Job`: one generator (it yields typed events and may return a
result) run in a napari ``GeneratorWorker``, whose ``yielded``/``returned``/``errored`` signals
arrive on the main thread. A job knows whether it runs and has a ``done`` event that its thread
sets as the very last thing, so shutting down can wait for every job with one timeout.

Every job's thread runs at a lower CPU priority than the GUI (:func:`background_priority`): on a
machine with few cores, training and prediction threads otherwise take the cores from napari's own
painting, and the viewer stalls even though no lock is held.

The generators themselves (:func:`training_events`, :func:`callback_events`) are plain Python.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Y = TypeVar("Y")
R = TypeVar("R")

BACKGROUND_NICE = 10
"""Niceness of job threads (Linux): the GUI thread (niceness 0) gets about nine times their CPU share."""


def background_priority(nice: int = BACKGROUND_NICE) -> bool:
    """Lower the calling thread's CPU priority to ``nice`` (Linux only); True if it is there now.

    Threads created afterwards from this one (torch's OpenMP team, the batch prefetcher) inherit it.
    The priority of a thread cannot be raised again without privileges, so a pool thread that ran a
    job keeps it for later tasks; those are background work too.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return os.getpriority(os.PRIO_PROCESS, tid) >= nice
    except OSError:  # pragma: no cover - a sandbox without setpriority: run at normal priority
        return False


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of work (chunks, for an export)."""

    done: int
    total: int


class Job(Generic[Y, R]):
    """One kind of long work; at most one worker of it at a time (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.worker: Any = None
        self.done = threading.Event()
        self.done.set()

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, work: Callable[[], Iterator[Y]], *,
              on_yield: Callable[[Y], None] | None = None,
              on_return: Callable[[R], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              on_finish: Callable[[], None] | None = None) -> None:
        """Run ``work()`` in a worker thread; the callbacks run on the main thread.

        ``on_error`` receives the exception instead of napari's traceback dialog; ``on_finish``
        runs last, however the work ended, after the job stopped counting as running.
        """
        from napari.qt.threading import create_worker

        done = self.done
        done.clear()

        def body() -> Generator[Y, None, Any]:
            background_priority()
            try:
                # a generator's return value (the export's result) goes to ``returned``
                return (yield from work())
            finally:
                done.set()

        connect: dict[str, Callable[..., None]] = {}
        if on_yield is not None:
            connect["yielded"] = on_yield
        if on_return is not None:
            connect["returned"] = on_return
        connect["errored"] = self._errored(on_error)
        worker = create_worker(body, _start_thread=False, _connect=connect)
        worker.finished.connect(self._finished(on_finish))
        self.worker = worker
        _start(worker)

    def _errored(self, on_error: Callable[[BaseException], None] | None) -> Callable[[BaseException], None]:
        def handler(e: BaseException) -> None:
            self.worker = None
            if on_error is not None:
                on_error(e)

        return handler

    def _finished(self, on_finish: Callable[[], None] | None) -> Callable[[], None]:
        def handler() -> None:
            self.worker = None
            if on_finish is not None:
                on_finish()

        return handler

    def wait(self, timeout: float) -> bool:
        """Wait until the job's thread has finished its work (True) or ``timeout`` s passed."""
        return self.done.wait(max(0.0, timeout))


def _start(worker: Any) -> None:
    """Start a worker, growing the thread pool if needed.

    Qt's global pool holds as many threads as cores (2 here); training, live prediction and an
    export must run side by side, so the pool is grown rather than queue one behind another.
    """
    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    if pool is None:  # pragma: no cover - Qt always has one once an application exists
        worker.start()
        return
    if pool.activeThreadCount() + 1 > pool.maxThreadCount():
        pool.setMaxThreadCount(pool.activeThreadCount() + 1)
    worker.start()


def training_events(build: Callable[[], Any], publish: Callable[[Any], None]) -> Iterator[Any]:
    """Build a trainer in the worker thread, hand it to ``publish``, then yield its events.

    Building reads the whole label index and samples the image for its normalisation: on a large
    image that takes a while, so it happens off the main thread too.
    """
    trainer = build()
    publish(trainer)
    yield from trainer.run()


_END = object()


def callback_events(run: Callable[[Callable[[int, int], None]], R]) -> Generator[Progress, None, R]:
    """Run ``run(progress)`` and yield each ``progress(done, total)`` call as a :class:`Progress`.

    For core functions that report through a callback (the export): ``run`` runs on a helper
    thread and its calls come through a queue, so this generator yields on its own thread and the
    callback never touches Qt. Returns what ``run`` returns; raises what it raises.
    """
    events: queue.Queue[Any] = queue.Queue()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run(lambda done, total: events.put(Progress(done, total)))
        except BaseException as e:  # handed to the generator's caller below
            outcome["error"] = e
        finally:
            events.put(_END)

    thread = threading.Thread(target=target, name="scribble-unet-job", daemon=True)
    thread.start()
    while (item := events.get()) is not _END:
        yield item
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    result: R = outcome["result"]
    return result


def stop_timer(timer: Any) -> None:
    """Stop a QTimer that may be gone: at interpreter exit Qt can delete it before the widget's
    clean-up runs, and stopping it then raises ``RuntimeError`` (seen once when a script ended)."""
    if timer is None:
        return
    try:
        timer.stop()
    except RuntimeError:
        pass
