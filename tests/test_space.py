"""Search space: suggestions follow the spec, conditional params appear only when they apply."""

from __future__ import annotations

import optuna
import pytest

from hpo.errors import SpecError
from hpo.params import CATALOG
from hpo.space import TrialConfig, grid_search_space, suggest
from hpo.spec import validate


def run_space(search: dict, n_trials: int = 30) -> list[optuna.trial.FrozenTrial]:
    spec = validate({"study": {"name": "t"}, "search": search})
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1)
    )
    study.optimize(lambda t: (suggest(t, spec).lr, 0.0), n_trials=n_trials)
    return study.trials


def test_choices_and_ranges_are_respected() -> None:
    trials = run_space(
        {"lr": {"low": 1e-3, "high": 1e-1}, "optimizer": ["adam", "nesterov"], "norm": "group"}
    )
    for trial in trials:
        assert 1e-3 <= trial.params["lr"] <= 1e-1
        assert trial.params["optimizer"] in ("adam", "nesterov")
        assert trial.params["norm"] == "group"  # fixed values are recorded too
    assert {t.params["optimizer"] for t in trials} == {"adam", "nesterov"}


def test_conditional_params_only_when_they_apply() -> None:
    trials = run_space(
        {"optimizer": ["sgd", "nesterov", "adam"], "scheduler": ["step", "cosine", "polynomial"]}
    )
    for trial in trials:
        params = trial.params
        assert ("momentum" in params) == (params["optimizer"] == "nesterov")
        assert ("beta1" in params) == (params["optimizer"] == "adam")
        assert ("step_size" in params) == (params["scheduler"] == "step")
        assert ("gamma" in params) == (params["scheduler"] == "step")
        assert ("power" in params) == (params["scheduler"] == "polynomial")


def test_config_rebuilds_from_params_alone() -> None:
    for trial in run_space({"lr": {"low": 1e-3, "high": 1e-1}, "optimizer": ["sgd", "adamw"]}):
        config = TrialConfig.from_params(trial.params)
        assert config.lr == trial.params["lr"]
        assert config.as_params() == trial.params


def test_every_catalog_default_is_valid() -> None:
    for param in CATALOG:
        assert param.check_value(param.default) is None, param.name


def test_grid_refuses_ranges() -> None:
    spec = validate({"study": {"name": "t"}, "search": {"lr": {"low": 0.01, "high": 0.1}}})
    with pytest.raises(SpecError, match=r"\[search\] lr: the grid sampler needs a list"):
        grid_search_space(spec)
