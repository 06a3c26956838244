"""Create or load the two-objective study for a spec, and count its finished trials."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import HpoError, SpecError
from hpo.spec import Spec, validate

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


def load_study(storage: RDBStorage, name: str) -> optuna.Study:
    """Load an existing study; an unknown name is an HpoError listing the known ones."""
    names = [s.study_name for s in storage.get_all_studies()]
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise HpoError(f"no study named {name!r} in this storage; studies: {known}")
    return optuna.load_study(study_name=name, storage=storage)


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
