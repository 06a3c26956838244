"""Results read straight from Optuna's tables, for commands that must answer fast.

Reading 10,000 trials through Optuna's `get_trials` took ~17 s on 2 cores; these queries read the
objectives of every COMPLETE trial, choose (front or budget), and only then read the params and
attributes of the chosen trials.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, func, select

from hpo.core.results import StudyOverview, TrialResult, choose, feasible, why_empty
from hpo.core.trial_attrs import (
    CONFIG_ATTR,
    CONFIG_SYSTEM_ATTR,
    FAIL_REASON_ATTR,
    LATENCY_BACKEND_ATTR,
    LATENCY_IQR_ATTR,
    LATENCY_MS_ATTR,
    LATENCY_RATIO_ATTR,
    N_FOLDED_ATTR,
    SPEC_ATTR,
    STOP_REASON_ATTR,
    TEST_ACCURACY_ATTR,
    VAL_CURVE_ATTR,
)
from hpo.core.trial_config import stored_params
from hpo.store.connect import StoredStudy, read
from hpo.store.outcomes import stored_target
from hpo.store.resilience import ResilientRDBStorage
from hpo.store.tables import (
    stored_value,
    studies,
    trial_heartbeats,
    trial_params,
    trial_system_attributes,
    trial_user_attributes,
    trial_values,
    trials,
)

_SHOWN_ATTRS = (
    TEST_ACCURACY_ATTR,
    LATENCY_RATIO_ATTR,
    N_FOLDED_ATTR,
    LATENCY_BACKEND_ATTR,
    CONFIG_ATTR,
)
# Above this many trials, read the whole study and filter here rather than send a huge IN list.
_MAX_IN_LIST = 500


def result_of(trial: FrozenTrial) -> TrialResult:
    """A COMPLETE two-objective trial as a TrialResult (params decoded by Optuna)."""
    accuracy, latency_ms = trial.values
    attrs = trial.user_attrs
    return TrialResult(
        number=trial.number,
        accuracy=accuracy,
        latency_ms=latency_ms,
        params=stored_params(trial.params, attrs, trial.system_attrs),
        test_accuracy=attrs.get(TEST_ACCURACY_ATTR),
        latency_ratio=attrs.get(LATENCY_RATIO_ATTR),
        n_folded=attrs.get(N_FOLDED_ATTR),
        latency_backend=attrs.get(LATENCY_BACKEND_ATTR),
        latency_iqr_ms=attrs.get(LATENCY_IQR_ATTR),
    )


def completed(stored: StoredStudy) -> list[TrialResult]:
    """Every COMPLETE trial with both objectives, in trial order."""

    def query(connection: Connection) -> list[TrialResult]:
        return _hydrate(connection, stored.study_id, _objectives(connection, stored.study_id))

    return read(stored.storage, query)


def best(
    stored: StoredStudy, max_latency: float | None = None, rank_by: str = LATENCY_MS_ATTR
) -> list[TrialResult]:
    """The Pareto front, or the trials within `max_latency` most accurate first.

    The front of a study with a latency budget (`[study] max_latency_ms`) is its feasible
    front: trials within the budget only.
    """
    budget = study_budget(stored) if max_latency is None else None

    def query(connection: Connection) -> list[TrialResult]:
        found = feasible(_objectives(connection, stored.study_id), budget)
        chosen = choose(found, max_latency, rank_by)
        return _hydrate(connection, stored.study_id, chosen)

    return read(stored.storage, query)


def why_nothing_chosen(
    stored: StoredStudy, max_latency: float | None, rank_by: str = LATENCY_MS_ATTR
) -> str:
    """One line saying why `best` found no trial: no complete trial, or none fast enough."""
    found = read(stored.storage, lambda c: _objectives(c, stored.study_id))
    reason = why_empty(found, max_latency, rank_by, study_budget(stored))
    if found:
        return reason
    states = Counter(t.state.name for t in stored.study.get_trials(deepcopy=False))
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return f"{reason} ({counts})" if counts else f"{reason}: the study has no trials"


def study_budget(stored: StoredStudy) -> float | None:
    """The study's latency budget in ms (`[study] max_latency_ms` of its stored spec)."""
    spec = stored.study.user_attrs.get(SPEC_ATTR)
    budget = spec.get("study", {}).get("max_latency_ms") if isinstance(spec, dict) else None
    return float(budget) if isinstance(budget, int | float) else None


def study_overviews(storage: ResilientRDBStorage) -> list[StudyOverview]:
    """Every study in the storage with its trial counts per state and its target."""
    # Counted in SQL: loading every trial of a 10,000-trial study took seconds.
    count_query = select(trials.c.study_id, trials.c.state, func.count()).group_by(
        trials.c.study_id, trials.c.state
    )
    name_query = select(studies.c.study_id, studies.c.study_name).order_by(studies.c.study_name)

    def query(connection: Connection) -> tuple[list[Any], list[Any]]:
        return connection.execute(count_query).all(), connection.execute(name_query).all()

    count_rows, name_rows = read(storage, query)
    counts: dict[int, Counter[str]] = {}
    for study_id, state, count in count_rows:
        counts.setdefault(study_id, Counter())[state.name] = count
    overviews = []
    for study_id, name in name_rows:
        states = counts.get(study_id, Counter())
        target, _ = stored_target(storage.get_study_user_attrs(study_id).get(SPEC_ATTR))
        overviews.append(StudyOverview(name, sum(states.values()), dict(states), target))
    return overviews


def rung_points(stored: StoredStudy, epoch: int, before: int) -> list[tuple[float, float, float]]:
    """(validation accuracy after `epoch` epochs, latency ms, latency IQR ms) of every trial
    numbered below `before` that got that far, running, finished or stopped. A trial that
    recorded no IQR (made by an older version) has 0: its latency compares exactly.

    Only earlier trials: two trials reaching a rung at the same instant on two workers would
    otherwise each count the other, and with equal points both would be stopped.
    """
    query = (
        sa.select(trials.c.number, trial_user_attributes.c.key, trial_user_attributes.c.value_json)
        .join(trial_user_attributes, trial_user_attributes.c.trial_id == trials.c.trial_id)
        .where(trials.c.study_id == stored.study_id)
        .where(trials.c.number < before)
        .where(trial_user_attributes.c.key.in_((VAL_CURVE_ATTR, LATENCY_MS_ATTR, LATENCY_IQR_ATTR)))
    )
    found: dict[int, dict[str, Any]] = {}
    for number, key, value in read(stored.storage, lambda c: c.execute(query).all()):
        found.setdefault(number, {})[key] = json.loads(value)
    return [
        (
            float(f[VAL_CURVE_ATTR][epoch - 1]),
            float(f[LATENCY_MS_ATTR]),
            float(f.get(LATENCY_IQR_ATTR) or 0.0),
        )
        for f in found.values()
        if len(f.get(VAL_CURVE_ATTR, [])) >= epoch and LATENCY_MS_ATTR in f
    ]


def attribute_values(stored: StoredStudy, key: str) -> dict[int, Any]:
    """Trial number -> the user attribute `key`, for the study's trials that have it."""
    query = (
        select(trials.c.number, trial_user_attributes.c.value_json)
        .join(trial_user_attributes, trial_user_attributes.c.trial_id == trials.c.trial_id)
        .where(trials.c.study_id == stored.study_id)
        .where(trial_user_attributes.c.key == key)
    )
    rows = read(stored.storage, lambda connection: connection.execute(query).all())
    return {number: json.loads(value) for number, value in rows}


def numeric_attribute(stored: StoredStudy, key: str) -> dict[int, float]:
    """Trial number -> the numeric user attribute `key`, where a trial has one."""
    found = attribute_values(stored, key)
    return {n: float(v) for n, v in found.items() if isinstance(v, int | float)}


def ended_early(stored: StoredStudy) -> list[tuple[int, str, str]]:
    """(number, state, reason) of every PRUNED or FAIL trial, in trial order."""
    query = (
        sa.select(trials.c.number, trials.c.state, trial_user_attributes.c.value_json)
        .outerjoin(
            trial_user_attributes,
            (trial_user_attributes.c.trial_id == trials.c.trial_id)
            & trial_user_attributes.c.key.in_((STOP_REASON_ATTR, FAIL_REASON_ATTR)),
        )
        .where(trials.c.study_id == stored.study_id)
        .where(trials.c.state.in_((TrialState.PRUNED, TrialState.FAIL)))
        .order_by(trials.c.number)
    )
    rows = read(stored.storage, lambda connection: connection.execute(query).all())
    return [
        (number, state.name, json.loads(reason) if reason is not None else "")
        for number, state, reason in rows
    ]


def beating_trial_numbers(stored: StoredStudy) -> set[int]:
    """Numbers of the study's RUNNING trials that have a heartbeat record.

    Optuna fails only these when they go silent; a RUNNING trial without one (made by a client
    without heartbeat, or a worker killed before its first beat) would stay RUNNING forever.
    """
    query = (
        select(trials.c.number)
        .join(trial_heartbeats, trial_heartbeats.c.trial_id == trials.c.trial_id)
        .where(trials.c.study_id == stored.study_id)
        .where(trials.c.state == TrialState.RUNNING)
    )
    return read(stored.storage, lambda connection: set(connection.execute(query).scalars()))


def _objectives(connection: Connection, study_id: int) -> list[TrialResult]:
    """COMPLETE trials with both objectives, latency_ratio and latency_iqr_ms; params not read
    yet."""
    complete = (trials.c.study_id == study_id) & (trials.c.state == TrialState.COMPLETE)
    rows = connection.execute(
        select(
            trials.c.trial_id,
            trials.c.number,
            trial_values.c.objective,
            trial_values.c.value,
            trial_values.c.value_type,
        )
        .join(trial_values, trial_values.c.trial_id == trials.c.trial_id)
        .where(complete)
    )
    values: dict[int, dict[int, float]] = {}
    numbers: dict[int, int] = {}
    for trial_id, number, objective, value, value_type in rows:
        stored = stored_value(value, value_type)
        values.setdefault(trial_id, {})[objective] = stored
        numbers[trial_id] = number
    # What choosing needs besides the objectives: the ratio (to rank by) and the spread.
    latency_attrs: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in connection.execute(
        select(
            trial_user_attributes.c.trial_id,
            trial_user_attributes.c.key,
            trial_user_attributes.c.value_json,
        )
        .join(trials, trials.c.trial_id == trial_user_attributes.c.trial_id)
        .where(complete & trial_user_attributes.c.key.in_((LATENCY_RATIO_ATTR, LATENCY_IQR_ATTR)))
    ):
        latency_attrs.setdefault(trial_id, {})[key] = json.loads(value_json)
    results = [
        TrialResult(
            number=numbers[trial_id],
            accuracy=by_objective[0],
            latency_ms=by_objective[1],
            params={},
            test_accuracy=None,
            latency_ratio=latency_attrs.get(trial_id, {}).get(LATENCY_RATIO_ATTR),
            n_folded=None,
            latency_backend=None,
            latency_iqr_ms=latency_attrs.get(trial_id, {}).get(LATENCY_IQR_ATTR),
        )
        for trial_id, by_objective in values.items()
        if set(by_objective) == {0, 1}
    ]
    return sorted(results, key=lambda r: r.number)


def _hydrate(
    connection: Connection, study_id: int, results: list[TrialResult]
) -> list[TrialResult]:
    """`results` with their decoded params and the attributes people see filled in."""
    if not results:
        return results
    wanted = {r.number for r in results}
    where = trials.c.study_id == study_id
    if len(wanted) <= _MAX_IN_LIST:
        where = where & trials.c.number.in_(sorted(wanted))
    params: dict[int, dict[str, Any]] = {}
    distributions: dict[str, BaseDistribution] = {}
    rows = connection.execute(
        select(
            trials.c.number,
            trial_params.c.param_name,
            trial_params.c.param_value,
            trial_params.c.distribution_json,
        )
        .join(trial_params, trial_params.c.trial_id == trials.c.trial_id)
        .where(where)
        .order_by(trial_params.c.param_id)
    )
    for number, name, internal, distribution_json in rows:
        if number not in wanted:
            continue
        if distribution_json not in distributions:
            distributions[distribution_json] = json_to_distribution(distribution_json)
        # Categorical params are stored as an index into the choices; decode them.
        external = distributions[distribution_json].to_external_repr(internal)
        params.setdefault(number, {})[name] = external
    attrs: dict[int, dict[str, Any]] = {}
    rows = connection.execute(
        select(trials.c.number, trial_user_attributes.c.key, trial_user_attributes.c.value_json)
        .join(trial_user_attributes, trial_user_attributes.c.trial_id == trials.c.trial_id)
        .where(where & trial_user_attributes.c.key.in_(_SHOWN_ATTRS))
    )
    for number, key, value_json in rows:
        if number in wanted:
            attrs.setdefault(number, {})[key] = json.loads(value_json)
    configs: dict[int, dict[str, Any]] = {}
    rows = connection.execute(
        select(trials.c.number, trial_system_attributes.c.value_json)
        .join(trial_system_attributes, trial_system_attributes.c.trial_id == trials.c.trial_id)
        .where(where & (trial_system_attributes.c.key == CONFIG_SYSTEM_ATTR))
    )
    for number, value_json in rows:
        if number in wanted:
            configs[number] = {CONFIG_SYSTEM_ATTR: json.loads(value_json)}
    return [
        replace(
            r,
            params=stored_params(
                params.get(r.number, {}), attrs.get(r.number, {}), configs.get(r.number)
            ),
            test_accuracy=attrs.get(r.number, {}).get(TEST_ACCURACY_ATTR),
            latency_ratio=attrs.get(r.number, {}).get(LATENCY_RATIO_ATTR),
            n_folded=attrs.get(r.number, {}).get(N_FOLDED_ATTR),
            latency_backend=attrs.get(r.number, {}).get(LATENCY_BACKEND_ATTR),
        )
        for r in results
    ]
