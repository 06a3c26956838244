"""A worker's background thread: its trial's heartbeat, and other workers' silent trials.

Every heartbeat interval the thread writes the heartbeat of the trial this worker runs and fails
the study's trials whose worker went silent (queuing their retries), so a dead worker's trial is
noticed about a grace period after its last beat, not when a survivor's trial ends.

Its database calls are retried through an outage like every other call, under the same budget.
A heartbeat that cannot be written is logged once per trial; when the outage outlasts the budget
the thread stops the worker (through `on_database_lost`), since nothing it trains could be kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from sqlalchemy.engine import make_url

from hpo.store.connect import StoredStudy
from hpo.store.lost import LostTrial, fail_silent_trials, note_grace_period
from hpo.store.resilience import is_transient, resilience_of, transient_cause
from hpo.store.url import scrub

_log = logging.getLogger("hpo.worker")


class Pulse:
    """The heartbeat and silent-trial check of one worker, in a background thread."""

    def __init__(
        self,
        stored: StoredStudy,
        on_lost_trials: Callable[[list[LostTrial]], None],
        on_database_lost: Callable[[BaseException], None],
    ) -> None:
        self.stored = stored
        self.interval = float(resilience_of(stored.storage).heartbeat_interval)
        self.on_lost_trials = on_lost_trials
        self.on_database_lost = on_database_lost
        self._trial: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpo-pulse", daemon=True)
        self._logged: set[str] = set()

    def __enter__(self) -> Pulse:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def beating(self, trial_id: int, number: int) -> Iterator[None]:
        """Beat for trial `number` (`trial_id`) while the block runs; the first beat is
        written now."""
        storage = self.stored.storage
        # Written before the trial starts, like every call of the main thread: an outage
        # past the budget ends the worker here.
        note_grace_period(storage, trial_id)
        storage.record_heartbeat(trial_id)
        self._trial = (trial_id, number)
        try:
            yield
        finally:
            self._trial = None

    def fail_silent_trials(self) -> None:
        """Fail the other workers' silent trials now (also done every interval)."""
        lost = fail_silent_trials(self.stored)
        if lost:
            self.on_lost_trials(lost)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._tick():
                return

    def _tick(self) -> bool:
        """One beat and one check; False once the database is lost for good."""
        trial = self._trial
        if trial is not None:
            try:
                self.stored.storage.record_heartbeat(trial[0])
            except Exception as exc:
                self._log_once(f"could not write the heartbeat of trial {trial[1]}", exc)
                if is_transient(exc):
                    self.on_database_lost(exc)
                    return False
        try:
            self.fail_silent_trials()
        except Exception as exc:
            self._log_once("could not check for silent trials", exc)
            if is_transient(exc):
                self.on_database_lost(exc)
                return False
        return True

    def _log_once(self, what: str, exc: BaseException) -> None:
        if what in self._logged:
            return
        self._logged.add(what)
        cause = transient_cause(exc) or exc
        url = make_url(self.stored.storage.url)
        detail = scrub(str(getattr(cause, "orig", None) or cause), url)
        _log.warning("hpo: warning: %s: %s", what, detail)
