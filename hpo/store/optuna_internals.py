"""The one place hpo touches Optuna's private API, each use with the reason it is needed.

Everything else in hpo uses Optuna's public API; `tests/test_layers.py` checks that no other
module imports a private Optuna module or names the members listed here. pyproject.toml pins
Optuna to the minor series these uses were checked against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

# Private RDBStorage methods that ResilientRDBStorage wraps with its outage retries, next to the
# public ones: Optuna's caching layer (`_CachedStorage`, which every Study wraps around its
# storage) calls these instead of the public methods. `_get_trials` serves every
# `study.get_trials()` and `study.ask()`, `_create_new_trial` every new trial, `_set_trial_param`
# every `trial.suggest_*`, `_get_best_trial_id` `study.best_trial`, and `_get_stale_trial_ids`
# `optuna.storages.fail_stale_trials`. Without wrapping them, a database restart during any of
# these calls would crash the worker.
PRIVATE_RETRIED_METHODS: tuple[str, ...] = (
    "_get_trials",
    "_create_new_trial",
    "_set_trial_param",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
)

# `optuna.artifacts.upload_artifact` records each artifact as a trial system attribute whose key
# is this prefix plus the artifact id (`optuna.artifacts._upload.ARTIFACTS_ATTR_PREFIX`); the
# SQL view's `has_model` column looks for such keys.
ARTIFACT_ATTR_PREFIX = "artifacts:"

# The logger of `optuna.study.optimize`'s private module: it logs every failed trial as a warning
# with its traceback. hpo prints its own line per failed trial (and keeps the traceback of an
# unexpected error in the trial), so the CLI filters these two records out of that logger.
OPTIMIZE_LOGGER = "optuna.study._optimize"
FAILED_TRIAL_LOG_PREFIX = "Trial "


def retry_system_attrs(failed: FrozenTrial) -> dict[str, Any]:
    """The system attributes of a trial that redoes the trial `failed`.

    `RetryHeartbeatStaleTrialCallback` queues a dead worker's trial again with these keys: the
    first trial of the series (`failed_trial`) and the whole series (`retry_history`), which
    its public `retried_trial_number()` and `retry_history()` read. hpo queues retries itself
    (to learn the retry's number for the failed trial's `fail_reason`), with the same keys.
    """
    attrs: dict[str, Any] = {
        "failed_trial": failed.number,
        "retry_history": [],
        **failed.system_attrs,
    }
    attrs["retry_history"] = [*attrs["retry_history"], failed.number]
    return attrs


def trial_id(trial: optuna.Trial) -> int:
    """The storage id of a running trial (`Trial._trial_id`): the worker loop writes its
    heartbeat by id, and asking the storage for it would cost a query per trial."""
    return trial._trial_id


def trial_notes(storage: BaseStorage, study_id: int) -> Callable[[int], str]:
    """The dashboard note of each trial by its id, finished or not (`optuna_dashboard.get_note`
    takes only a running `optuna.Trial`; notes live in the study's system attributes, read
    once here)."""
    from optuna_dashboard._note import get_note_from_system_attrs

    system_attrs = storage.get_study_system_attrs(study_id)
    return lambda trial_id: str(get_note_from_system_attrs(system_attrs, trial_id)["body"])


def save_trial_note(storage: BaseStorage, study_id: int, trial_id: int, body: str) -> None:
    """Write a finished trial's dashboard note as `optuna_dashboard.save_note` writes a running
    trial's: the next version of the note, split over study system attributes."""
    from optuna_dashboard._note import note_ver_key, save_note_with_version

    version = storage.get_study_system_attrs(study_id).get(note_ver_key(trial_id), 0) + 1
    save_note_with_version(storage, study_id, trial_id, version, body)
