"""Results as people read them: finished trials, the Pareto front, the best trials under a
latency budget, and hypervolume. Plain data and arithmetic; the store layer fills them in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpo.core.dominance import nondominated
from hpo.core.trial_attrs import (
    LATENCY_BACKEND_ATTR,
    LATENCY_IQR_ATTR,
    LATENCY_MS_ATTR,
    LATENCY_RATIO_ATTR,
    N_FOLDED_ATTR,
    TEST_ACCURACY_ATTR,
)

RANK_KEYS = (LATENCY_MS_ATTR, LATENCY_RATIO_ATTR)
# Names of a trial's results where they are written beside its params (`hpo best` tables, csv
# and json): a param of one of these names would be a second column of that name.
RESULT_NAMES = (
    "number",
    "trial",
    "accuracy",
    "params",
    LATENCY_MS_ATTR,
    LATENCY_IQR_ATTR,
    TEST_ACCURACY_ATTR,
    LATENCY_RATIO_ATTR,
    N_FOLDED_ATTR,
    LATENCY_BACKEND_ATTR,
)


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
    # The latency's spread (IQR of the probe's timed runs, ms); None where none was recorded.
    latency_iqr_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "accuracy": self.accuracy,
            LATENCY_MS_ATTR: self.latency_ms,
            LATENCY_IQR_ATTR: self.latency_iqr_ms,
            TEST_ACCURACY_ATTR: self.test_accuracy,
            LATENCY_RATIO_ATTR: self.latency_ratio,
            N_FOLDED_ATTR: self.n_folded,
            LATENCY_BACKEND_ATTR: self.latency_backend,
            "params": self.params,
        }


def ms_text(value: float) -> str:
    """A latency as every table, report and figure prints it: 4 significant digits (0.04622,
    1.403, 12.35), so two front points that differ show different figures."""
    return f"{value:.4g}"


def _latency(result: TrialResult, rank_by: str) -> float:
    if rank_by == LATENCY_RATIO_ATTR:
        return result.latency_ratio if result.latency_ratio is not None else float("inf")
    return result.latency_ms


def _spread(result: TrialResult, rank_by: str) -> float:
    """The latency's spread on the `rank_by` scale (a ratio's spread scales with it)."""
    spread = result.latency_iqr_ms or 0.0
    if rank_by == LATENCY_RATIO_ATTR:
        ratio = result.latency_ratio
        return spread * ratio / result.latency_ms if ratio is not None and spread else 0.0
    return spread


def pareto_front(results: list[TrialResult], rank_by: str = LATENCY_MS_ATTR) -> list[TrialResult]:
    """Trials no other trial dominates, fastest first: none is as accurate, no slower, and
    better on one, where latencies within their measured spread are equal
    (`hpo.core.dominance`)."""
    on_front = nondominated(
        [r.accuracy for r in results],
        [_latency(r, rank_by) for r in results],
        [_spread(r, rank_by) for r in results],
    )
    front = [r for r, kept in zip(results, on_front, strict=True) if kept]
    return sorted(front, key=lambda r: (_latency(r, rank_by), -r.accuracy, r.number))


def feasible(results: list[TrialResult], budget: float | None) -> list[TrialResult]:
    """The trials within a study's latency budget (`[study] max_latency_ms`; all without one):
    the ones its Pareto front is drawn from, wherever a front is shown."""
    return results if budget is None else [r for r in results if r.latency_ms <= budget]


def within_budget(
    results: list[TrialResult], max_latency: float, rank_by: str = LATENCY_MS_ATTR
) -> list[TrialResult]:
    """Trials at or under the latency budget, most accurate first (faster breaks ties)."""
    fitting = [r for r in results if _latency(r, rank_by) <= max_latency]
    return sorted(fitting, key=lambda r: (-r.accuracy, _latency(r, rank_by), r.number))


def choose(
    results: list[TrialResult], max_latency: float | None, rank_by: str = LATENCY_MS_ATTR
) -> list[TrialResult]:
    """The Pareto front, or the trials within `max_latency` most accurate first."""
    if max_latency is None:
        return pareto_front(results, rank_by)
    return within_budget(results, max_latency, rank_by)


def why_empty(
    results: list[TrialResult],
    max_latency: float | None,
    rank_by: str = LATENCY_MS_ATTR,
    study_budget: float | None = None,
) -> str:
    """Why `choose` found nothing among `results` (the study's complete trials), in one line."""
    if not results:
        return "no complete trial yet"
    fastest = min(results, key=lambda r: (_latency(r, rank_by), r.number))
    unit = " ms" if rank_by == LATENCY_MS_ATTR else ""
    closest = (
        f"the fastest is trial {fastest.number} at {ms_text(_latency(fastest, rank_by))}{unit}"
    )
    if max_latency is not None:
        return f"no complete trial has {rank_by} <= {max_latency:g}{unit}; {closest}"
    return f"no complete trial within the study's latency budget ({study_budget:g} ms); {closest}"


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


def reference_point(results: list[TrialResult]) -> tuple[float, float]:
    """Hypervolume reference: accuracy 0 and 1.1 x the slowest observed latency.

    Accuracy 0 is the worst possible value; 10 % beyond the slowest trial keeps that trial's
    contribution above zero, so every trial on the front adds area.
    """
    if not results:
        raise ValueError("no results")
    return 0.0, 1.1 * max(r.latency_ms for r in results)


def hypervolume(results: list[TrialResult], reference: tuple[float, float]) -> float:
    """Area (accuracy x ms) the trials dominate up to `reference` = (accuracy, latency_ms).

    The area itself, measured at the recorded medians: the latency spread decides which
    trials a front shows, not how much area they cover.
    """
    ref_accuracy, ref_latency = reference
    inside = [r for r in results if r.accuracy > ref_accuracy and r.latency_ms < ref_latency]
    ordered = sorted(inside, key=lambda r: r.latency_ms)
    if not ordered:
        return 0.0
    area, best = 0.0, ref_accuracy
    edges = [r.latency_ms for r in ordered[1:]] + [ref_latency]
    for current, right in zip(ordered, edges, strict=True):
        # Between this trial's latency and the next one's, the best accuracy so far covers.
        best = max(best, current.accuracy)
        area += (right - current.latency_ms) * (best - ref_accuracy)
    return area


def hypervolume_history(
    results: list[TrialResult], reference: tuple[float, float]
) -> list[tuple[int, float]]:
    """(trial number, hypervolume of the completed trials up to it), in trial order."""
    ordered = sorted(results, key=lambda r: r.number)
    return [(r.number, hypervolume(ordered[: i + 1], reference)) for i, r in enumerate(ordered)]
