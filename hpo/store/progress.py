"""Where a study stands against its `n_trials` target, as every worker sees it."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from hpo.store.connect import StoredStudy
from hpo.store.outcomes import counts_toward_target
from hpo.store.queries import beating_trial_numbers
from hpo.store.resilience import resilience_of


@dataclass(frozen=True)
class TargetCounts:
    """Finished, running and waiting trials of a study."""

    finished: int  # trials that count toward n_trials
    running: int  # RUNNING trials that will finish, or be failed by the heartbeat and retried
    waiting: int  # WAITING trials: retries of dead workers' trials, or enqueued ones

    def in_flight_or_done(self) -> int:
        """Finished plus running: a new trial is needed only while this is below the target."""
        return self.finished + self.running


def target_counts(stored: StoredStudy, trials: list[FrozenTrial] | None = None) -> TargetCounts:
    """Finished, running and waiting trials of the study (of `trials`, its trials just read,
    when given).

    A RUNNING trial is counted only while it can still end: it has a heartbeat (so a dead
    worker's trial is failed and retried), or it started less than a grace period ago (its
    first beat may not be written yet). Others would be waited for forever.
    """
    if trials is None:
        trials = stored.study.get_trials(deepcopy=False)
    finished = sum(counts_toward_target(t) for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if running and stored.storage.heartbeat_interval:
        beating = beating_trial_numbers(stored)
        grace = datetime.timedelta(seconds=resilience_of(stored.storage).grace_period)
        now = datetime.datetime.now()
        running = [
            t
            for t in running
            if t.number in beating or (t.datetime_start and now - t.datetime_start < grace)
        ]
    return TargetCounts(finished, len(running), waiting)
