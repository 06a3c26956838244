"""Search space: a spec's [search] table -> `trial.suggest_*` calls -> one typed TrialConfig.

This is the only module below the objective that talks to Optuna. Every applicable hyperparameter,
fixed ones included, is recorded as a trial param (a fixed value as a one-element choice), so a
finished trial's params alone rebuild its TrialConfig.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from hpo.params import CATALOG, Hyperparameter
from hpo.spec import Choice, Domain, Fixed, Range, Spec


@dataclass(frozen=True)
class TrialConfig:
    """Every hyperparameter of one trial; those that do not apply are None."""

    model: str
    norm: str
    head: str
    width: float
    depth: int | None
    dropout: float
    optimizer: str
    lr: float
    momentum: float | None
    beta1: float | None
    beta2: float | None
    eps: float | None
    weight_decay: float
    scheduler: str
    step_size: float | None
    gamma: float | None
    t0: float | None
    t_mult: int | None
    max_lr_factor: float | None
    warmup_fraction: float | None
    power: float | None
    batch_size: int
    label_smoothing: float

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `models.build_model` (besides name, norm, num_classes)."""
        kwargs: dict[str, Any] = {"width": self.width, "dropout": self.dropout, "head": self.head}
        if self.depth is not None:
            kwargs["depth"] = self.depth
        return kwargs

    def as_params(self) -> dict[str, Any]:
        """The applicable hyperparameters as a plain dict (None values dropped)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrialConfig:
        """Rebuild a config from a finished trial's params (catalog defaults fill any gap)."""
        chosen: dict[str, Any] = {}
        for param in CATALOG:
            chosen[param.name] = (
                _coerce(param, params.get(param.name, param.default))
                if param.applies(chosen)
                else None
            )
        return cls(**chosen)


def _coerce(param: Hyperparameter, value: Any) -> Any:
    if param.kind == "int":
        return int(value)
    if param.kind == "float":
        return float(value)
    return value


def _suggest(trial: optuna.Trial, param: Hyperparameter, domain: Domain) -> Any:
    if isinstance(domain, Fixed):
        return trial.suggest_categorical(param.name, [domain.value])
    if isinstance(domain, Choice):
        return trial.suggest_categorical(param.name, list(domain.values))
    if isinstance(domain, Range):
        if param.kind == "int":
            step = int(domain.step or 1)
            return trial.suggest_int(
                param.name, int(domain.low), int(domain.high), step=step, log=domain.log
            )
        return trial.suggest_float(
            param.name, domain.low, domain.high, log=domain.log, step=domain.step
        )
    raise TypeError(f"unknown domain {domain!r}")


def suggest(trial: optuna.Trial, spec: Spec) -> TrialConfig:
    """Ask the trial for every applicable hyperparameter of the spec."""
    chosen: dict[str, Any] = {}
    for param in CATALOG:
        if param.applies(chosen):
            chosen[param.name] = _coerce(param, _suggest(trial, param, spec.domain(param.name)))
        else:
            chosen[param.name] = None
    return TrialConfig(**chosen)


def grid_search_space(spec: Spec) -> dict[str, list[Any]]:
    """Every finite choice of the spec, for Optuna's GridSampler (ranges have no grid)."""
    from hpo.errors import SpecError

    space: dict[str, list[Any]] = {}
    for param in CATALOG:
        domain = spec.domain(param.name)
        if isinstance(domain, Range):
            raise SpecError(
                f"[search] {param.name}: the grid sampler needs a list of values, not a range "
                f"(e.g. {param.name} = [{domain.low}, {domain.high}]); or choose another sampler"
            )
        space[param.name] = [domain.value] if isinstance(domain, Fixed) else list(domain.values)
    return space
