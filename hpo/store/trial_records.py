"""Writing a running trial's attributes in the layout of `hpo.core.trial_attrs`.

Scalars people read become user attributes (the dashboard lists them); structures become trial
system attributes, which Optuna keeps in its own table and the dashboard never shows, so its
trial table stays one line per trial.
"""

from __future__ import annotations

from typing import Any

import optuna

from hpo.core.trial_attrs import CONFIG_ATTR, laid_out
from hpo.store.optuna_internals import trial_id


def record(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Set `attrs` on the running trial: scalars shown, structures out of the dashboard."""
    layout = laid_out(attrs)
    for key, value in layout.shown.items():
        trial.set_user_attr(key, value)
    if layout.hidden:
        storage_id = trial_id(trial)
        for key, value in layout.hidden.items():
            trial.storage.set_trial_system_attr(storage_id, key, value)


def keep_config(trial: optuna.Trial, config: dict[str, Any]) -> None:
    """Store the trial's whole configuration where `TrialConfig.from_trial` finds it."""
    record(trial, {CONFIG_ATTR: config})
