"""Read results back: the Pareto front, the best trials under a latency budget, study overviews."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

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
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [TrialResult.from_trial(t) for t in trials if t.values and len(t.values) == 2]


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
    overviews = []
    for frozen in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        study_id = storage.get_study_id_from_name(frozen.study_name)
        trials = storage.get_all_trials(study_id, deepcopy=False)
        states = Counter(t.state.name for t in trials)
        spec = frozen.user_attrs.get("spec") or {}
        target = spec.get("study", {}).get("n_trials") if isinstance(spec, dict) else None
        overviews.append(StudyOverview(frozen.study_name, len(trials), dict(states), target))
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
