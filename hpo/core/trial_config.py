"""A trial's configuration: every hyperparameter it was trained with, as one typed record.

A finished trial rebuilds it from what it stored (`TrialConfig.from_trial`): its stored
configuration (`hpo.core.trial_attrs.stored_config`: every value, fixed ones included), or for
studies made before that existed, its params (which then held every value). That is how
`hpo export` rebuilds or retrains a trial's network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hpo.core.model_ref import is_model_ref
from hpo.core.params import CATALOG, Hyperparameter, factory_may_name
from hpo.core.trial_attrs import stored_config
from models.catalog import FAMILY_OPTIONS


def stored_params(
    params: Mapping[str, Any],
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every hyperparameter value a trial stored: its configuration, then its params."""
    return {**(stored_config(user_attrs, system_attrs) or {}), **params}


@dataclass(frozen=True)
class TrialConfig:
    """Every hyperparameter of one trial; those that do not apply are None."""

    model: str
    norm: str | None  # None: a model factory without norm_layer keeps its own norm layers
    head: str | None  # head, activation, width, dropout: None for a model factory (families only)
    activation: str | None
    width: float | None
    depth: int | None
    pool: str | None
    kernel: str | None
    bottleneck: float | None
    attention: str | None
    se_ratio: int | None
    growth_rate: int | None
    dense_layers: int | None
    compression: float | None
    dense_order: str | None
    dropout: float | None
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
    onecycle_warmup: float | None
    warmup_fraction: float | None
    power: float | None
    batch_size: int
    translate: int
    loss: str
    label_smoothing: float | None
    # A model factory's own hyperparameters ([search.model_params]); empty for a family.
    model_params: dict[str, Any] = field(default_factory=dict)

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `models.build_model` (besides name, norm, num_classes): the
        common ones and every option of the model's family that applies; a model factory's
        own params."""
        if is_model_ref(self.model):
            return dict(self.model_params)
        kwargs: dict[str, Any] = {
            "width": self.width,
            "dropout": self.dropout,
            "head": self.head,
            "activation": self.activation,
        }
        for option in FAMILY_OPTIONS[self.model]:
            if getattr(self, option) is not None:
                kwargs[option] = getattr(self, option)
        return kwargs

    def architecture(self) -> dict[str, Any]:
        """The params that set the network's inference graph (its latency), where they apply."""
        return {
            **{
                p.name: getattr(self, p.name)
                for p in CATALOG
                if p.architecture and getattr(self, p.name) is not None
            },
            **self.model_params,
        }

    def as_params(self) -> dict[str, Any]:
        """The applicable hyperparameters as a plain dict (None values dropped), a model
        factory's own params beside the others."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model_params"}
        return {**{k: v for k, v in values.items() if v is not None}, **self.model_params}

    @classmethod
    def from_trial(
        cls,
        params: Mapping[str, Any],
        user_attrs: Mapping[str, Any],
        system_attrs: Mapping[str, Any] | None = None,
    ) -> TrialConfig:
        """Rebuild the config a trial was trained with from its params and attributes."""
        return cls.from_params(stored_params(params, user_attrs, system_attrs))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrialConfig:
        """Rebuild a config from a finished trial's params (catalog defaults fill any gap).

        For a model factory every other name is one of its own params, and a missing norm
        means the factory keeps its own norm layers."""
        chosen: dict[str, Any] = {}
        user_model = is_model_ref(params.get("model"))
        for param in CATALOG:
            if not param.applies(chosen) or (
                user_model and param.name == "norm" and "norm" not in params
            ):
                chosen[param.name] = None
                continue
            chosen[param.name] = coerce(param, params.get(param.name, param.default))
        own = {k: v for k, v in params.items() if factory_may_name(k)} if user_model else {}
        return cls(**chosen, model_params=own)


def coerce(param: Hyperparameter, value: Any) -> Any:
    """`value` as the parameter's Python type (int, float, or the choice as it is)."""
    if param.kind == "int":
        return int(value)
    if param.kind == "float":
        return float(value)
    return value
