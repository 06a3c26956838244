"""Search space: a spec's [search] table -> `trial.suggest_*` calls -> one typed TrialConfig.

Trials ask Optuna for their hyperparameters here and nowhere else. Only searched dimensions become
trial params, so the dashboard's analytics and importance charts show what was searched; the
whole configuration, fixed values included, is stored with the trial (`keep`: hpo's runner keeps
it as a system attribute the dashboard does not list), which rebuilds its TrialConfig
(`TrialConfig.from_trial`).
"""

from __future__ import annotations

import math
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
        if not param.applies(chosen) or (param.name == "norm" and keeps_own_norm(spec)):
            chosen[param.name] = None
            continue
        domain = spec.domain(param.name)
        value = domain.value if isinstance(domain, Fixed) else _suggest(trial, param, domain)
        chosen[param.name] = coerce(param, value)
    own = {
        param.name: coerce(
            param, domain.value if isinstance(domain, Fixed) else _suggest(trial, param, domain)
        )
        for param, domain in spec.model_hyperparameters()
    }
    config = TrialConfig(**chosen, model_params=own)
    keep(trial, config.as_params())
    return config


def first_values(spec: Spec) -> dict[str, Any]:
    """The searched params of the spec's starting trial (`[study] start_from_first`): each
    list's first value, each range's `first` or else its middle (geometric when log; on the
    step grid when it has one), for the params that apply given the values before them, and
    for a model factory's own params (`[search.model_params]`)."""
    chosen: dict[str, Any] = {}
    searched: dict[str, Any] = {}
    for param in CATALOG:
        if not param.applies(chosen):
            chosen[param.name] = None
            continue
        domain = spec.domain(param.name)
        chosen[param.name] = _first(param, domain)
        if not isinstance(domain, Fixed):
            searched[param.name] = chosen[param.name]
    for param, domain in spec.model_hyperparameters():
        if not isinstance(domain, Fixed):
            searched[param.name] = _first(param, domain)
    return searched


def _first(param: Hyperparameter, domain: Domain) -> Any:
    """A param's value in the starting trial (see `first_values`)."""
    if isinstance(domain, Fixed):
        value = domain.value
    elif isinstance(domain, Choice):
        value = domain.values[0]
    else:
        value = _middle(param, domain) if domain.first is None else domain.first
    return coerce(param, value)


def _middle(param: Hyperparameter, domain: Range) -> float:
    """The middle of a range on its own scale, snapped to its step and to an int for int
    params."""
    middle = math.sqrt(domain.low * domain.high) if domain.log else (domain.low + domain.high) / 2
    if domain.step is not None:
        middle = domain.low + round((middle - domain.low) / domain.step) * domain.step
    elif param.kind == "int":
        middle = round(middle)
    return min(max(middle, domain.low), domain.high)


def keeps_own_norm(spec: Spec) -> bool:
    """Whether the spec's model is a factory without `norm_layer` (it keeps its own norm)."""
    if spec.model_ref is None:
        return False
    from models import user  # torch: only for a spec that names a model factory

    return not user.loaded(spec.model_ref).gets_norm_layer("norm" in spec.search)


def grid_search_space(spec: Spec) -> dict[str, list[Any]]:
    """Every finite choice of the spec, for Optuna's GridSampler (ranges have no grid)."""
    space: dict[str, list[Any]] = {}
    every = [(p, spec.domain(p.name)) for p in CATALOG] + spec.model_hyperparameters()
    for param, domain in every:
        if isinstance(domain, Range):
            raise SpecError(
                f"[search] {param.name}: the grid sampler needs a list of values, not a range "
                f"(e.g. {param.name} = [{domain.low}, {domain.high}]); or choose another sampler"
            )
        if not isinstance(domain, Fixed):  # fixed values are never suggested
            space[param.name] = list(domain.values)
    return space
