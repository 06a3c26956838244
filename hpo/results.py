"""Read results back: the Pareto front, the best trials under a latency budget, study overviews."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import RDBStorage
from optuna.storages._rdb import models  # Optuna's table models: the schema it writes
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, func, select

from hpo.storage import rdb_of, read

RANK_KEYS = ("latency_ms", "latency_ratio")


@dataclass(frozen=True)
class TrialResult:
    """One finished trial as people read it: objectives, decoded params, key attributes."""

    number: int
    accuracy: float
    latency_ms: float
    params: dict[str, Any]
    test_accuracy: float | None
    latency_ratio: float | None
    n_folded: int | None
    latency_backend: str | None

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialResult:
        accuracy, latency_ms = trial.values
        attrs = trial.user_attrs
        # FrozenTrial.params holds the choices themselves, not Optuna's stored indices.
        return cls(
            number=trial.number,
            accuracy=accuracy,
            latency_ms=latency_ms,
            params=dict(trial.params),
            test_accuracy=attrs.get("test_accuracy"),
            latency_ratio=attrs.get("latency_ratio"),
            n_folded=attrs.get("n_folded"),
            latency_backend=attrs.get("latency_backend"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "accuracy": self.accuracy,
            "latency_ms": self.latency_ms,
            "test_accuracy": self.test_accuracy,
            "latency_ratio": self.latency_ratio,
            "n_folded": self.n_folded,
            "latency_backend": self.latency_backend,
            "params": self.params,
        }


def completed(study: optuna.Study) -> list[TrialResult]:
    """Every COMPLETE trial with both objectives."""
    storage = rdb_of(study)
    if storage is None:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return [TrialResult.from_trial(t) for t in trials if t.values and len(t.values) == 2]

    def query(connection: Connection) -> list[TrialResult]:
        return _hydrate(connection, study._study_id, _objectives(connection, study._study_id))

    return read(storage, query)


def _latency(result: TrialResult, rank_by: str) -> float:
    if rank_by == "latency_ratio":
        return result.latency_ratio if result.latency_ratio is not None else float("inf")
    return result.latency_ms


def pareto_front(results: list[TrialResult], rank_by: str = "latency_ms") -> list[TrialResult]:
    """Trials no other trial beats on both accuracy (higher) and latency (lower), fastest first."""
    ordered = sorted(results, key=lambda r: (_latency(r, rank_by), -r.accuracy, r.number))
    front: list[TrialResult] = []
    best_accuracy = float("-inf")
    for result in ordered:
        # Sorted by latency, a trial is on the front iff it is more accurate than all faster ones.
        if result.accuracy > best_accuracy:
            front.append(result)
            best_accuracy = result.accuracy
    return front


def within_budget(
    results: list[TrialResult], max_latency: float, rank_by: str = "latency_ms"
) -> list[TrialResult]:
    """Trials at or under the latency budget, most accurate first (faster breaks ties)."""
    fitting = [r for r in results if _latency(r, rank_by) <= max_latency]
    return sorted(fitting, key=lambda r: (-r.accuracy, _latency(r, rank_by), r.number))


def best(
    study: optuna.Study, max_latency: float | None = None, rank_by: str = "latency_ms"
) -> list[TrialResult]:
    """The Pareto front, or the trials within `max_latency` most accurate first.

    On SQL storages the objectives of all trials are read, but params and attributes only for
    the chosen ones (10,000 trials through Optuna's get_trials took ~17 s on 2 cores).
    """
    storage = rdb_of(study)
    if storage is None:
        return _choose(completed(study), max_latency, rank_by)

    def query(connection: Connection) -> list[TrialResult]:
        chosen = _choose(_objectives(connection, study._study_id), max_latency, rank_by)
        return _hydrate(connection, study._study_id, chosen)

    return read(storage, query)


def _choose(
    results: list[TrialResult], max_latency: float | None, rank_by: str
) -> list[TrialResult]:
    if max_latency is None:
        return pareto_front(results, rank_by)
    return within_budget(results, max_latency, rank_by)


@dataclass(frozen=True)
class StudyOverview:
    """A study's name and trial counts per state."""

    name: str
    n_trials: int
    states: dict[str, int]
    target: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_trials": self.n_trials,
            "target": self.target,
            "states": self.states,
        }


def study_overviews(storage: RDBStorage) -> list[StudyOverview]:
    """Every study in the storage with its trial counts."""
    # Counted in SQL: loading every trial of a 10,000-trial study took seconds.
    query = select(_TRIALS.c.study_id, _TRIALS.c.state, func.count()).group_by(
        _TRIALS.c.study_id, _TRIALS.c.state
    )
    counts: dict[int, Counter[str]] = {}
    for study_id, state, count in read(storage, lambda c: c.execute(query).all()):
        counts.setdefault(study_id, Counter())[TrialState(state).name] = count
    overviews = []
    for frozen in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        states = counts.get(frozen._study_id, Counter())
        spec = frozen.user_attrs.get("spec") or {}
        target = spec.get("study", {}).get("n_trials") if isinstance(spec, dict) else None
        overviews.append(
            StudyOverview(frozen.study_name, sum(states.values()), dict(states), target)
        )
    return overviews


def reference_point(results: list[TrialResult]) -> tuple[float, float]:
    """Hypervolume reference: accuracy 0 and 1.1 x the slowest observed latency.

    Accuracy 0 is the worst possible value; 10 % beyond the slowest trial keeps that trial's
    contribution above zero, so every trial on the front adds area.
    """
    if not results:
        raise ValueError("no results")
    return 0.0, 1.1 * max(r.latency_ms for r in results)


def hypervolume(results: list[TrialResult], reference: tuple[float, float]) -> float:
    """Area (accuracy x ms) the trials dominate up to `reference` = (accuracy, latency_ms)."""
    ref_accuracy, ref_latency = reference
    inside = [r for r in results if r.accuracy > ref_accuracy and r.latency_ms < ref_latency]
    front = pareto_front(inside)  # fastest first, accuracy rising
    if not front:
        return 0.0
    area = 0.0
    edges = [r.latency_ms for r in front[1:]] + [ref_latency]
    for current, right in zip(front, edges, strict=True):
        # Between this trial's latency and the next front trial's, this one is the best.
        area += (right - current.latency_ms) * (current.accuracy - ref_accuracy)
    return area


def hypervolume_history(
    results: list[TrialResult], reference: tuple[float, float]
) -> list[tuple[int, float]]:
    """(trial number, hypervolume of the completed trials up to it), in trial order."""
    ordered = sorted(results, key=lambda r: r.number)
    return [(r.number, hypervolume(ordered[: i + 1], reference)) for i, r in enumerate(ordered)]


# --- reads straight from Optuna's tables ------------------------------------------------------

_TRIALS = models.TrialModel.__table__
_VALUES = models.TrialValueModel.__table__
_PARAMS = models.TrialParamModel.__table__
_ATTRS = models.TrialUserAttributeModel.__table__
_SHOWN_ATTRS = ("test_accuracy", "latency_ratio", "n_folded", "latency_backend")
# Above this many trials, read the whole study and filter here rather than send a huge IN list.
_MAX_IN_LIST = 500


def _objectives(connection: Connection, study_id: int) -> list[TrialResult]:
    """COMPLETE trials with both objectives and latency_ratio; params not read yet."""
    complete = (_TRIALS.c.study_id == study_id) & (_TRIALS.c.state == TrialState.COMPLETE)
    rows = connection.execute(
        select(
            _TRIALS.c.trial_id,
            _TRIALS.c.number,
            _VALUES.c.objective,
            _VALUES.c.value,
            _VALUES.c.value_type,
        )
        .join(_VALUES, _VALUES.c.trial_id == _TRIALS.c.trial_id)
        .where(complete)
    )
    values: dict[int, dict[int, float]] = {}
    numbers: dict[int, int] = {}
    for trial_id, number, objective, value, value_type in rows:
        stored = models.TrialValueModel.stored_repr_to_value(value, value_type)
        values.setdefault(trial_id, {})[objective] = stored
        numbers[trial_id] = number
    ratios = dict(
        connection.execute(
            select(_ATTRS.c.trial_id, _ATTRS.c.value_json)
            .join(_TRIALS, _TRIALS.c.trial_id == _ATTRS.c.trial_id)
            .where(complete & (_ATTRS.c.key == "latency_ratio"))
        ).all()
    )
    results = [
        TrialResult(
            number=numbers[trial_id],
            accuracy=by_objective[0],
            latency_ms=by_objective[1],
            params={},
            test_accuracy=None,
            latency_ratio=json.loads(ratios[trial_id]) if trial_id in ratios else None,
            n_folded=None,
            latency_backend=None,
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
    where = _TRIALS.c.study_id == study_id
    if len(wanted) <= _MAX_IN_LIST:
        where = where & _TRIALS.c.number.in_(sorted(wanted))
    params: dict[int, dict[str, Any]] = {}
    distributions: dict[str, BaseDistribution] = {}
    rows = connection.execute(
        select(
            _TRIALS.c.number,
            _PARAMS.c.param_name,
            _PARAMS.c.param_value,
            _PARAMS.c.distribution_json,
        )
        .join(_PARAMS, _PARAMS.c.trial_id == _TRIALS.c.trial_id)
        .where(where)
        .order_by(_PARAMS.c.param_id)
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
        select(_TRIALS.c.number, _ATTRS.c.key, _ATTRS.c.value_json)
        .join(_ATTRS, _ATTRS.c.trial_id == _TRIALS.c.trial_id)
        .where(where & _ATTRS.c.key.in_(_SHOWN_ATTRS))
    )
    for number, key, value_json in rows:
        if number in wanted:
            attrs.setdefault(number, {})[key] = json.loads(value_json)
    return [
        replace(
            r,
            params=params.get(r.number, {}),
            test_accuracy=attrs.get(r.number, {}).get("test_accuracy"),
            latency_ratio=attrs.get(r.number, {}).get("latency_ratio"),
            n_folded=attrs.get(r.number, {}).get("n_folded"),
            latency_backend=attrs.get(r.number, {}).get("latency_backend"),
        )
        for r in results
    ]
