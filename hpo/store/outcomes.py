"""How a trial ended, which ended trials count toward a study's `n_trials`, and what that
target is: the one rule the workers, `hpo studies`, the report and the dashboard share."""

from __future__ import annotations

import math
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.core.errors import SpecError
from hpo.core.spec import Spec, validate
from hpo.core.trial_attrs import FAIL_REASON_ATTR, STOP_REASON_ATTR
from hpo.search.samplers import GridToTarget
from hpo.search.space import grid_search_space

# Reasons of failures that belong to the configuration: such a trial is a result (this
# configuration diverges, does not fit, or cannot be built) and counts towards the study's
# target.
DIVERGED = "diverged"
OUT_OF_MEMORY = "out of memory"
NO_NETWORK = "no network with these params"  # a user's factory cannot build them

# Why a trial was stopped untrained: its architecture's probed latency is over the budget.
OVER_BUDGET = "over latency budget"


def over_budget(trial: FrozenTrial) -> bool:
    """Whether the trial was stopped untrained because its architecture is over the budget."""
    reason = str(trial.user_attrs.get(STOP_REASON_ATTR, ""))
    return trial.state == TrialState.PRUNED and reason.startswith(OVER_BUDGET)


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


def grid_size(spec: Spec) -> int:
    """How many points the spec's grid has."""
    return math.prod(map(len, grid_search_space(spec).values()))


def study_target(spec: Spec) -> int:
    """The study's `n_trials`, or the grid's size when the grid sampler has fewer points."""
    if spec.study.sampler == "grid":
        return min(spec.study.n_trials, grid_size(spec))
    return spec.study.n_trials


def stored_target(raw: Any) -> tuple[int | None, Spec | None]:
    """The target of a study's stored spec (`study_target`) and the spec; for a spec that no
    longer validates, its `n_trials` as written (None without one) and no spec."""
    try:
        spec = validate(raw) if isinstance(raw, dict) else None
        if spec is not None:
            return study_target(spec), spec
    except SpecError:
        pass
    target = raw.get("study", {}).get("n_trials") if isinstance(raw, dict) else None
    return (target if isinstance(target, int) else None), None


def grid_points_settled(trials: list[FrozenTrial]) -> int:
    """How many distinct grid points the trials have done (`settles_grid_point`)."""
    points = {GridToTarget.point_of(t) for t in trials if settles_grid_point(t)}
    return len(points - {None})
