"""Search space: a spec's [search] table -> `trial.suggest_*` calls -> one typed TrialConfig.

Trials ask Optuna for their hyperparameters here and nowhere else. Only searched dimensions become
trial params, so the dashboard's analytics and importance charts show what was searched; the
whole configuration, fixed values included, is stored with the trial (`keep`: hpo's runner keeps
it as a system attribute the dashboard does not list), which rebuilds its TrialConfig
(`TrialConfig.from_trial`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.core.errors import SpecError
from hpo.core.params import CATALOG, Hyperparameter
from hpo.core.spec import Choice, Domain, Fixed, Range, Spec
from hpo.core.trial_attrs import CONFIG_ATTR
from hpo.core.trial_config import TrialConfig, coerce


def distribution_of(param: Hyperparameter, domain: Domain) -> BaseDistribution:
    """The Optuna distribution `suggest` asks for `param` over `domain` (a fixed value is a
    one-element choice)."""
    if isinstance(domain, Fixed):
        return CategoricalDistribution([domain.value])
    if isinstance(domain, Choice):
        return CategoricalDistribution(list(domain.values))
    if param.kind == "int":
        step = int(domain.step or 1)
        return IntDistribution(int(domain.low), int(domain.high), log=domain.log, step=step)
    return FloatDistribution(domain.low, domain.high, log=domain.log, step=domain.step)


def _suggest(trial: optuna.Trial, param: Hyperparameter, domain: Domain) -> Any:
    distribution = distribution_of(param, domain)
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(param.name, list(distribution.choices))
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            param.name,
            distribution.low,
            distribution.high,
            step=distribution.step,
            log=distribution.log,
        )
    assert isinstance(distribution, FloatDistribution)
    return trial.suggest_float(
        param.name,
        distribution.low,
        distribution.high,
        log=distribution.log,
        step=distribution.step,
    )


# Stores a trial's whole configuration (as `TrialConfig.as_params` gives it) with the trial.
KeepConfig = Callable[[optuna.Trial, dict[str, Any]], None]


def keep_as_user_attr(trial: optuna.Trial, config: dict[str, Any]) -> None:
    """The configuration as the user attribute `config`: plain Optuna, no storage access."""
    trial.set_user_attr(CONFIG_ATTR, config)


def suggest(trial: optuna.Trial, spec: Spec, keep: KeepConfig = keep_as_user_attr) -> TrialConfig:
    """Ask the trial for every searched hyperparameter of the spec; fixed ones are taken as they
    are. The whole configuration is stored on the trial with `keep`."""
    chosen: dict[str, Any] = {}
    for param in CATALOG:
        if not param.applies(chosen):
            chosen[param.name] = None
            continue
        domain = spec.domain(param.name)
        value = domain.value if isinstance(domain, Fixed) else _suggest(trial, param, domain)
        chosen[param.name] = coerce(param, value)
    config = TrialConfig(**chosen)
    keep(trial, config.as_params())
    return config


def grid_search_space(spec: Spec) -> dict[str, list[Any]]:
    """Every finite choice of the spec, for Optuna's GridSampler (ranges have no grid)."""
    space: dict[str, list[Any]] = {}
    for param in CATALOG:
        domain = spec.domain(param.name)
        if isinstance(domain, Range):
            raise SpecError(
                f"[search] {param.name}: the grid sampler needs a list of values, not a range "
                f"(e.g. {param.name} = [{domain.low}, {domain.high}]); or choose another sampler"
            )
        if not isinstance(domain, Fixed):  # fixed values are never suggested
            space[param.name] = list(domain.values)
    return space
