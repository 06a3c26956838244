"""Trials whose worker went silent: found by the age of their heartbeat, failed, retried once.

A worker writes its running trial's heartbeat every HPO_HEARTBEAT_INTERVAL s and notes its own
grace period in the trial, so each trial is judged by the settings of the worker that runs it: a
worker with a short grace period never fails the trials of one that beats less often.

The first worker whose FAIL gets through (the database decides) queues the retry and records in
the failed trial why it failed and which trial redoes it; the others find it finished and skip it.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy import Connection, select

from hpo.core.trial_attrs import (
    CONFIG_ATTR,
    FAIL_REASON_ATTR,
    GRACE_ATTR,
    RUN_SYSTEM_PREFIX,
    WORKER_ATTR,
)
from hpo.store.connect import StoredStudy, database_now, read
from hpo.store.optuna_internals import ARTIFACT_ATTR_PREFIX, retry_system_attrs
from hpo.store.resilience import ResilientRDBStorage, resilience_of
from hpo.store.tables import trial_heartbeats, trial_system_attributes, trials

# How often one configuration is retried after losing its worker (Optuna's
# RetryHeartbeatStaleTrialCallback(max_retry=1) semantics, whose attributes the retry carries).
MAX_RETRIES = 1
WORKER_LOST = "worker lost"


@dataclass(frozen=True)
class SilentTrial:
    """A RUNNING trial whose heartbeat is older than its worker's grace period."""

    trial_id: int
    number: int
    silent_s: float
    grace_s: float


@dataclass(frozen=True)
class LostTrial:
    """A trial this worker failed for its silent worker, and the trial that redoes it."""

    number: int
    reason: str
    retry: int | None


def note_grace_period(storage: ResilientRDBStorage, trial_id: int) -> None:
    """Record this worker's grace period in its trial, for the workers that judge it."""
    grace = resilience_of(storage).grace_period
    storage.set_trial_system_attr(trial_id, GRACE_ATTR, grace)


def silent_trials(stored: StoredStudy) -> list[SilentTrial]:
    """The study's RUNNING trials silent for longer than their worker's grace period."""
    own_grace = resilience_of(stored.storage).grace_period
    query = (
        select(
            trials.c.trial_id,
            trials.c.number,
            trial_heartbeats.c.heartbeat,
            trial_system_attributes.c.value_json,
        )
        .join(trial_heartbeats, trial_heartbeats.c.trial_id == trials.c.trial_id)
        .outerjoin(
            trial_system_attributes,
            (trial_system_attributes.c.trial_id == trials.c.trial_id)
            & (trial_system_attributes.c.key == GRACE_ATTR),
        )
        .where(trials.c.study_id == stored.study_id)
        .where(trials.c.state == TrialState.RUNNING)
    )

    def run(connection: Connection) -> tuple[datetime.datetime, list]:
        # The database's clock, which wrote the heartbeats (Optuna compares them the same way).
        return database_now(connection), connection.execute(query).all()

    now, rows = read(stored.storage, run)
    found = []
    for trial_id, number, heartbeat, grace_json in rows:
        grace = _grace(grace_json, own_grace)
        silent = (now - heartbeat).total_seconds()
        if silent > grace:
            found.append(SilentTrial(trial_id, number, silent, grace))
    return found


def _grace(value_json: str | None, default: float) -> float:
    try:
        grace = json.loads(value_json) if value_json is not None else default
    except ValueError:
        return default
    return float(grace) if isinstance(grace, int | float) and grace > 0 else default


def fail_silent_trials(stored: StoredStudy) -> list[LostTrial]:
    """FAIL every silent trial of the study and queue its retry; the trials this call failed.

    A worker that was cut off from the database itself judges nobody until a grace period
    after it got through again: the others' silence was most likely the same outage, and
    they need a beat to catch up.
    """
    storage = stored.storage
    if storage.cut_off_within(resilience_of(storage).grace_period):
        return []
    lost = []
    for silent in silent_trials(stored):
        try:
            won = storage.set_trial_state_values(silent.trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # its worker finished it, or another worker failed it first
        if won:
            lost.append(retry_lost_trial(stored, storage.get_trial(silent.trial_id), silent))
    return lost


def retry_lost_trial(stored: StoredStudy, failed: FrozenTrial, silent: SilentTrial) -> LostTrial:
    """Queue the retry of a trial just failed for its silent worker; note why in the trial."""
    storage = stored.storage
    system_attrs = retry_system_attrs(failed)
    history = system_attrs["retry_history"]
    worker = failed.user_attrs.get(WORKER_ATTR)
    reason = f"{WORKER_LOST}: no heartbeat for {silent.silent_s:.0f} s"
    if worker:
        reason += f" from {worker}"
    retry = None
    if len(history) <= MAX_RETRIES:
        retry = queue_again(stored, failed, system_attrs)
        reason += f"; retried as trial {retry}"
    else:
        reason += f"; not retried again (it was the retry of trial {history[0]})"
    with storage.amending(silent.trial_id):
        storage.set_trial_user_attr(silent.trial_id, FAIL_REASON_ATTR, reason)
    return LostTrial(failed.number, reason, retry)


def queue_again(
    stored: StoredStudy, failed: FrozenTrial, system_attrs: dict[str, Any] | None = None
) -> int:
    """Queue a trial with `failed`'s params (WAITING: the next worker to ask takes it) and
    return its number. It carries the samplers' system attributes of `system_attrs` (default:
    `failed`'s own, so a grid point or a queued configuration stays what it was), not the
    failed run's models or details, and of the user attributes only the configuration, not
    the failed run's curve or worker."""
    given = failed.system_attrs if system_attrs is None else system_attrs
    samplers = {
        key: value
        for key, value in given.items()
        if not key.startswith((RUN_SYSTEM_PREFIX, ARTIFACT_ATTR_PREFIX))
    }
    template = create_trial(
        state=TrialState.WAITING,
        params=failed.params,
        distributions=failed.distributions,
        user_attrs={k: v for k, v in failed.user_attrs.items() if k == CONFIG_ATTR},
        system_attrs=samplers,
    )
    retry_id = stored.storage.create_new_trial(stored.study_id, template_trial=template)
    return stored.storage.get_trial(retry_id).number


# How long a worker whose trial was failed by another waits for that worker's reason.
REASON_WAIT_S = 5.0


def finished_by_another(stored: StoredStudy, number: int) -> FrozenTrial:
    """Trial `number`, finished by another worker, with the reason it was failed if one comes.

    The worker that fails a silent trial writes the reason just after the FAIL (the FAIL
    decides which worker failed it): read too soon, the trial has no reason yet.
    """
    deadline = time.monotonic() + REASON_WAIT_S
    while True:
        trial = stored.frozen_trial(number)
        if trial.state != TrialState.FAIL or FAIL_REASON_ATTR in trial.user_attrs:
            return trial
        if time.monotonic() >= deadline:
            return trial
        time.sleep(0.1)
