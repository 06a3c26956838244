"""Create or load the two-objective study for a spec, and count its finished trials."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import HpoError, SpecError
from hpo.spec import Spec, validate
from hpo.storage import beating_trial_ids, rdb_of, resilience_of

# load_study moved to hpo.storage (readers should not import torch); importable from here too.
from hpo.storage import load_study as load_study

DIRECTIONS = ("maximize", "minimize")
METRIC_NAMES = ("accuracy", "latency_ms")
SPEC_ATTR = "spec"


def create_or_load_study(spec: Spec, storage: RDBStorage) -> optuna.Study:
    """The study named by the spec; created with the spec stored in it, or loaded if it exists.

    A study that exists with a different search space is refused: mixing two spaces in one
    study would make its Pareto front meaningless.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=spec.study.name,
        directions=list(DIRECTIONS),
        load_if_exists=True,
    )
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        study.set_metric_names(list(METRIC_NAMES))
        study.set_user_attr(SPEC_ATTR, spec.raw)
    elif stored.get("search", {}) != spec.raw.get("search", {}):
        raise SpecError(
            f"study {spec.study.name!r} already exists with a different [search] table; "
            f"use another --study-name (or the same search space)"
        )
    else:
        # Keep the stored spec current (e.g. a raised n_trials) for workers that read it.
        study.set_user_attr(SPEC_ATTR, spec.raw)
    if stored != spec.raw:
        from hpo.dashboard import write_spec_note

        write_spec_note(study)  # the dashboard shows the spec as the study's note
    return study


def stored_spec(study: optuna.Study) -> Spec:
    """The spec stored in the study when it was created (validated again)."""
    raw: dict[str, Any] | None = study.user_attrs.get(SPEC_ATTR)
    if raw is None:
        raise HpoError(f"study {study.study_name!r} has no stored spec; was it created by hpo?")
    return validate(raw)


def counts_toward_target(trial: FrozenTrial) -> bool:
    """Finished trials with a result: COMPLETE, or FAIL by a recorded divergence.

    Crashed or interrupted trials do not count, so running the study again redoes them.
    """
    if trial.state == TrialState.COMPLETE:
        return True
    reason = str(trial.user_attrs.get("fail_reason", ""))
    return trial.state == TrialState.FAIL and reason.startswith("diverged")


def finished_count(study: optuna.Study) -> int:
    """How many trials count toward the study's `n_trials` target."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
    return sum(counts_toward_target(t) for t in trials)


@dataclass(frozen=True)
class Progress:
    """Where a study stands against its target, as every worker sees it."""

    finished: int  # trials that count toward n_trials
    running: int  # RUNNING trials that will finish, or be failed by the heartbeat and retried
    waiting: int  # WAITING trials: retries of dead workers' trials, or enqueued ones

    def in_flight_or_done(self) -> int:
        """Finished plus running: a new trial is needed only while this is below the target."""
        return self.finished + self.running


def study_progress(study: optuna.Study) -> Progress:
    """Finished, running and waiting trials of the study.

    A RUNNING trial is counted only while it can still end: it has a heartbeat (so a dead
    worker's trial is failed and retried), or it started less than a grace period ago (its
    first beat may not be written yet). Others would be waited for forever.
    """
    trials = study.get_trials(deepcopy=False)
    finished = sum(counts_toward_target(t) for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    storage = rdb_of(study)
    if running and storage is not None and storage.heartbeat_interval:
        beating = beating_trial_ids(storage, study._study_id)
        grace = datetime.timedelta(seconds=resilience_of(storage).grace_period)
        now = datetime.datetime.now()
        running = [
            t
            for t in running
            if t._trial_id in beating or (t.datetime_start and now - t.datetime_start < grace)
        ]
    return Progress(finished, len(running), waiting)
