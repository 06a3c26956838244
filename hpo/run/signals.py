"""Signals of a worker: SIGTERM delivered like Ctrl-C, so a stopped worker ends its trial as FAIL
(interrupted), and the interrupt names that trial for the command's last line; interrupts held
back while a trial's state is written; and a way for the worker's background thread to stop the
main thread."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so Optuna marks the running trial FAIL."""


# The attribute of an interrupt that names the trial it stopped (and Optuna marked FAIL).
_TRIAL_ATTR = "hpo_interrupted_trial"
_QUEUED_ATTR = "hpo_queued_again"


def mark_interrupted_trial(interrupt: KeyboardInterrupt, number: int) -> None:
    """Record on `interrupt` that it stopped trial `number`, for the command's last line."""
    setattr(interrupt, _TRIAL_ATTR, number)


def interrupted_trial(interrupt: BaseException) -> int | None:
    """The trial `interrupt` stopped, or None when it came outside a trial."""
    return getattr(interrupt, _TRIAL_ATTR, None)


def mark_queued_again(interrupt: KeyboardInterrupt, number: int) -> None:
    """Record on `interrupt` the trial queued to redo the one it stopped."""
    setattr(interrupt, _QUEUED_ATTR, number)


def queued_again(interrupt: BaseException) -> int | None:
    """The trial queued to redo the one `interrupt` stopped, or None."""
    return getattr(interrupt, _QUEUED_ATTR, None)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while the worker runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)
# A signal handler as `signal.signal` takes and returns it.
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class HeldInterrupts:
    """Ctrl-C and SIGTERM held back inside this `with` block, except in its `delivered()` blocks.

    An interrupt in the middle of `study.ask()` (the trial is stored RUNNING, the sampler is
    still choosing its params) or of `study.tell()` would leave the trial RUNNING until another
    worker's heartbeat check fails it; held, it is raised where the worker can mark the trial
    FAIL (interrupted), or once its state is stored. A second interrupt while one is held is
    raised at once: whoever presses Ctrl-C twice wants out now. Leaving the block does not
    raise a held interrupt: `raise_pending()` does, where it may come. Outside the main thread
    (no signal handler can be set there) nothing is held.
    """

    def __init__(self) -> None:
        self._pending: KeyboardInterrupt | None = None
        self._raising: dict[int, _Handler] = {}  # the handlers that raise, as outside the hold

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        interrupt = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if self._pending is not None:
            raise interrupt
        self._pending = interrupt
        # Choosing a trial's params may take seconds (latency probes): say why nothing happens.
        sys.stderr.write("hpo: stopping once this trial is stored (interrupt again: at once)\n")

    def __enter__(self) -> HeldInterrupts:
        if threading.current_thread() is threading.main_thread():
            # Only signals a Python handler turns into an exception: one ignored (a worker
            # started in the background with `&`) stays ignored, one at its default stays so.
            self._raising = {
                signum: handler
                for signum in _INTERRUPTS
                if callable(handler := signal.getsignal(signum))
            }
            for signum in self._raising:
                signal.signal(signum, self._hold)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._raising.items():
            signal.signal(signum, handler)
        self._raising = {}

    def raise_pending(self) -> None:
        """Raise the interrupt held back, if one came."""
        interrupt, self._pending = self._pending, None
        if interrupt is not None:
            raise interrupt

    @contextmanager
    def delivered(self) -> Iterator[None]:
        """Interrupts raised where they come inside this block, a held one on entering it."""
        if not self._raising:
            yield  # not holding (outside the main thread)
            return
        for signum, handler in self._raising.items():
            signal.signal(signum, handler)
        try:
            self.raise_pending()
            yield
        finally:
            for signum in self._raising:
                signal.signal(signum, self._hold)


class StoppedBy(BaseException):
    """Raised in the main thread when a background thread must end the worker with `error`.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way (the
    objective's, a library's) mistakes it for a failure of the trial.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


# The signal that carries the stop to the main thread (Python runs handlers only there).
_STOP_SIGNAL = signal.SIGUSR1


@contextmanager
def main_thread_stopper() -> Iterator[Callable[[BaseException], None]]:
    """A function any thread may call to raise `StoppedBy(error)` in the main thread.

    The main thread may be training, far from any database call, when the worker's heartbeat
    thread finds the database gone for longer than its retry budget: a signal interrupts it
    within a moment. Outside the main thread (no signal handler can be set there) the
    function does nothing and the main thread finds the outage at its next call.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda error: None
        return
    stops: list[BaseException] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if stops:
            raise StoppedBy(stops.pop())

    def stop(error: BaseException) -> None:
        stops.append(error)
        signal.pthread_kill(threading.main_thread().ident or 0, _STOP_SIGNAL)

    previous = signal.signal(_STOP_SIGNAL, handler)
    try:
        yield stop
    finally:
        signal.signal(_STOP_SIGNAL, previous)
