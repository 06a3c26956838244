"""Model registry: adding an architecture family is adding one file with `@register_model`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from models.catalog import FAMILIES, FAMILY_OPTIONS, families_with, family_names
from models.layers import use_activation

ModelFactory = Callable[..., nn.Module]
# Keyword arguments every family takes (besides norm and num_classes).
COMMON_OPTIONS: tuple[str, ...] = ("width", "dropout", "head", "activation")


@dataclass(frozen=True)
class ModelInfo:
    """A registered model family and its one-line description."""

    name: str
    factory: ModelFactory
    description: str


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory `fn(*, norm, num_classes, **kwargs) -> nn.Module` under `name`."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (factory.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelInfo(name, factory, doc[0] if doc else "")
        return factory

    return decorate


def list_models() -> list[str]:
    """Names of every model family, sorted."""
    return family_names()


def model_info(name: str) -> ModelInfo:
    """The registry entry for `name` (its module imported on first use); KeyError if unknown."""
    if name not in _REGISTRY and name in FAMILIES:
        importlib.import_module(FAMILIES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; allowed: {', '.join(list_models())}") from None


def build_model(name: str, *, norm: str, num_classes: int = 10, **kwargs: object) -> nn.Module:
    """Build the registered model `name` with the given norm layer and head size.

    An option the family does not take (e.g. `kernel` for resnet) is a ValueError that names
    the families taking it.
    """
    info = model_info(name)
    activation = str(kwargs.pop("activation", "relu"))
    for option in kwargs:
        if option not in COMMON_OPTIONS and option not in FAMILY_OPTIONS.get(name, ()):
            takers = families_with(option)
            where = f"{option} applies to {', '.join(takers)}" if takers else "no family takes it"
            raise ValueError(f"model {name!r} has no {option} choice; {where}")
    return use_activation(info.factory(norm=norm, num_classes=num_classes, **kwargs), activation)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
