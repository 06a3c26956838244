"""Where a study stands against its `n_trials` target, as every worker sees it."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from hpo.core.trial_attrs import FAIL_REASON_ATTR
from hpo.run.budget import over_budget
from hpo.run.failures import DIVERGED, NO_NETWORK, OUT_OF_MEMORY
from hpo.store.connect import StoredStudy
from hpo.store.queries import beating_trial_numbers
from hpo.store.resilience import resilience_of


def counts_toward_target(trial: FrozenTrial) -> bool:
    """Finished trials with a result: COMPLETE, or FAIL because the configuration diverged,
    ran out of memory or could not be built (running it again would fail the same way).

    Crashed, interrupted or lost trials do not count, so running the study again (or the
    retry of a lost one) redoes them; nor do trials stopped untrained because their
    architecture is over the latency budget.
    """
    if trial.state == TrialState.COMPLETE:
        return True
    if trial.state == TrialState.PRUNED:
        return not over_budget(trial)
    if trial.state != TrialState.FAIL:
        return False
    reason = str(trial.user_attrs.get(FAIL_REASON_ATTR, ""))
    # A configuration that cannot be built is a result only when the trial has one (params):
    # a failure before its params were drawn says nothing about any configuration.
    return reason.startswith((DIVERGED, OUT_OF_MEMORY)) or (
        reason.startswith(NO_NETWORK) and bool(trial.params)
    )


def settles_grid_point(trial: FrozenTrial) -> bool:
    """Whether the grid sampler's point of `trial` is done: it counts toward the target, or
    its architecture is over the latency budget (trying it again would be too)."""
    return counts_toward_target(trial) or over_budget(trial)


@dataclass(frozen=True)
class TargetCounts:
    """Finished, running and waiting trials of a study."""

    finished: int  # trials that count toward n_trials
    running: int  # RUNNING trials that will finish, or be failed by the heartbeat and retried
    waiting: int  # WAITING trials: retries of dead workers' trials, or enqueued ones

    def in_flight_or_done(self) -> int:
        """Finished plus running: a new trial is needed only while this is below the target."""
        return self.finished + self.running


def target_counts(stored: StoredStudy) -> TargetCounts:
    """Finished, running and waiting trials of the study.

    A RUNNING trial is counted only while it can still end: it has a heartbeat (so a dead
    worker's trial is failed and retried), or it started less than a grace period ago (its
    first beat may not be written yet). Others would be waited for forever.
    """
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
