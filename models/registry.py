"""Model registry: a family is one file with `@register_model` plus its record in the catalog.

`models.catalog` names the families and their options without torch (the study spec is checked
against it); registering a factory checks it against that record, so the two cannot drift apart.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from hpo.core.model_ref import is_model_ref
from models.catalog import FAMILIES, FAMILY_OPTIONS, FAMILY_POOL, families_with, family_names
from models.layers import use_activation

ModelFactory = Callable[..., nn.Module]
# Keyword arguments every family takes (besides norm and num_classes).
COMMON_OPTIONS: tuple[str, ...] = ("width", "dropout", "head")
# Options applied to any family's network once it is built (the factory never sees them).
APPLIED_OPTIONS: tuple[str, ...] = ("activation",)
_CATALOG = "models/catalog.py"


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
        _check_against_catalog(name, factory)
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (factory.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelInfo(name, factory, doc[0] if doc else "")
        return factory

    return decorate


def _check_against_catalog(name: str, factory: ModelFactory) -> None:
    """ValueError unless the catalog records `name` with exactly the options `factory` takes."""
    if name not in FAMILIES or name not in FAMILY_OPTIONS or name not in FAMILY_POOL:
        raise ValueError(
            f"model {name!r} is not in {_CATALOG}: add its module to FAMILIES, its options to "
            "FAMILY_OPTIONS and its own downsampling to FAMILY_POOL"
        )
    takes = list(inspect.signature(factory).parameters)
    missing = [p for p in ("norm", "num_classes", *COMMON_OPTIONS) if p not in takes]
    if missing:
        raise ValueError(f"model {name!r}: the factory must take {', '.join(missing)}")
    options = [p for p in takes if p not in ("norm", "num_classes", *COMMON_OPTIONS)]
    unlisted = [p for p in options if p not in FAMILY_OPTIONS[name]]
    untaken = [p for p in FAMILY_OPTIONS[name] if p not in options]
    if unlisted or untaken:
        problems = [f"the factory takes {', '.join(unlisted)}"] if unlisted else []
        problems += [f"the factory does not take {', '.join(untaken)}"] if untaken else []
        raise ValueError(
            f"model {name!r} does not match FAMILY_OPTIONS[{name!r}] in {_CATALOG}: "
            + "; ".join(problems)
        )


def list_models() -> list[str]:
    """Names of every model family, sorted."""
    return family_names()


def model_info(name: str) -> ModelInfo:
    """The registry entry for `name` (its module imported on first use); KeyError if unknown."""
    if name not in _REGISTRY and name in FAMILIES:
        importlib.import_module(FAMILIES[name])
        if name not in _REGISTRY:
            raise ValueError(
                f"{FAMILIES[name]} registers no model {name!r}, but FAMILIES in {_CATALOG} "
                "says it does"
            )
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; allowed: {', '.join(list_models())}") from None


def build_model(
    name: str, *, norm: str | None, num_classes: int = 10, **kwargs: object
) -> nn.Module:
    """Build the registered model `name` with the given norm layer and head size.

    An option the family does not take (e.g. `kernel` for resnet) is a ValueError that names
    the families taking it.
    """
    if is_model_ref(name):  # a user's factory, imported by `models.user.load`
        from models import user

        return user.build(name, norm=norm, num_classes=num_classes, **kwargs)
    info = model_info(name)
    activation = str(kwargs.pop(APPLIED_OPTIONS[0], "relu"))
    for option in kwargs:
        if option not in COMMON_OPTIONS and option not in FAMILY_OPTIONS.get(name, ()):
            takers = families_with(option)
            where = f"{option} applies to {', '.join(takers)}" if takers else "no family takes it"
            raise ValueError(f"model {name!r} has no {option} choice; {where}")
    return use_activation(info.factory(norm=norm, num_classes=num_classes, **kwargs), activation)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters, frozen ones (`requires_grad=False`) included: they are part of
    the network's size, as its folded copy counts them."""
    return sum(p.numel() for p in model.parameters())
