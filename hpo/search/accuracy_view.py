"""A study's trials seen by accuracy alone, for the sampler that draws the training params.

Training params (lr, optimizer, schedule, ...) never change a trial's latency: latency depends
only on the architecture. A two-objective sampler ranks trials by Pareto rank, so the fastest
trial counts among the best whatever its accuracy, and the training params of a fast but
untrainable run would be copied as if they were good ones. Judged on accuracy alone, they are
learnt from the runs that trained well.

The view is a single-objective, in-memory copy of the study: every trial keeps its number (a
base sampler matches the running trial by number), finished trials keep their validation
accuracy as their value, trials the pruner stopped keep their accuracy curve as intermediate
values (how far they got and how well), and trials that never trained (over the latency budget,
failed) say nothing about training params, so they are copied as failed.
"""

from __future__ import annotations

import optuna
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from hpo.core.trial_attrs import VAL_CURVE_ATTR

_VIEW = "accuracy-view"


def accuracy_view(study: optuna.Study, trial: FrozenTrial) -> tuple[optuna.Study, FrozenTrial]:
    """The view of `study` (see the module docstring) and `trial` as the view holds it."""
    storage = InMemoryStorage()
    # Made on the storage, not by create_study, which logs a line for every new study.
    storage.create_new_study([StudyDirection.MAXIMIZE], _VIEW)
    view = optuna.Study(_VIEW, storage)
    view.add_trials([_copy(t) for t in study.get_trials(deepcopy=False)])
    return view, view.get_trials(deepcopy=False)[trial.number]


def _copy(trial: FrozenTrial) -> FrozenTrial:
    curve = [float(v) for v in trial.user_attrs.get(VAL_CURVE_ATTR) or []]
    common = {
        "params": trial.params,
        "distributions": trial.distributions,
        "system_attrs": trial.system_attrs,
    }
    if trial.state == TrialState.COMPLETE and trial.values:
        return create_trial(value=trial.values[0], **common)
    if trial.state == TrialState.PRUNED and curve:
        intermediate = {epoch: value for epoch, value in enumerate(curve, start=1)}
        return create_trial(state=TrialState.PRUNED, intermediate_values=intermediate, **common)
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return create_trial(state=trial.state, **common)
    return create_trial(state=TrialState.FAIL, **common)
