"""The architecture part of a search space: the params that set a network's latency.

An architecture is a dict of those params (conditional ones only where they apply). The space
draws architectures, enumerates small finite spaces, encodes architectures as feature vectors for
a surrogate model, and gives each a canonical key (the same architecture always has the same
key, whatever order its params came in).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.core.keys import canonical_json
from hpo.core.params import CATALOG
from hpo.core.spec import Spec
from hpo.search.encoding import ordered_values
from hpo.search.space import distribution_of, keeps_own_norm

Architecture = dict[str, Any]
# Spaces with at most this many architectures are enumerated instead of sampled.
_ENUMERATE_UP_TO = 4096


def architecture_key(architecture: Mapping[str, Any]) -> str:
    """A canonical text key of an architecture (or any configuration): sorted params, numbers
    as floats, so `width = 1` and `width = 1.0` are one architecture."""
    return canonical_json(architecture)


@dataclass(frozen=True)
class ArchitectureParam:
    """One architecture param: its distribution and when it applies."""

    name: str
    distribution: BaseDistribution
    applies: Callable[[Mapping[str, Any]], bool] = lambda chosen: True


class ArchitectureSpace:
    """The architecture params of a search space, in order (a condition sees earlier ones)."""

    def __init__(self, params: list[ArchitectureParam]) -> None:
        self.params = params
        self.names = tuple(p.name for p in params)

    @classmethod
    def from_spec(cls, spec: Spec) -> ArchitectureSpace:
        """The architecture params of a study spec, with the spec's domains."""
        own_norm = keeps_own_norm(spec)
        params = [
            ArchitectureParam(p.name, distribution_of(p, spec.domain(p.name)), p.applies)
            for p in CATALOG
            if p.architecture
            and not (own_norm and p.name == "norm")
            and p.name not in spec.model_params  # a factory's own param of a family's name
        ]
        # A model factory's own params set its graph too; none has a condition.
        params += [
            ArchitectureParam(p.name, distribution_of(p, domain))
            for p, domain in spec.model_hyperparameters()
        ]
        return cls(params)

    @classmethod
    def from_distributions(cls, distributions: Mapping[str, BaseDistribution]) -> ArchitectureSpace:
        """A space of unconditional params (e.g. a benchmark's table of cells)."""
        return cls([ArchitectureParam(n, d) for n, d in distributions.items()])

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {p.name: p.distribution for p in self.params}

    def searched(self) -> bool:
        """Whether any architecture param has more than one value."""
        return any(not p.distribution.single() for p in self.params)

    def of(self, params: Mapping[str, Any]) -> Architecture:
        """The architecture part of a trial's params (applicable params only); a fixed param,
        which is never a trial param, takes its one value."""
        chosen: Architecture = {}
        for param in self.params:
            if not param.applies(chosen):
                continue
            if param.name in params:
                chosen[param.name] = params[param.name]
            elif param.distribution.single():
                chosen[param.name] = _only_value(param.distribution)
        return chosen

    def contains(self, architecture: Mapping[str, Any]) -> bool:
        """Whether `architecture` is a point of this space."""
        chosen: Architecture = {}
        for param in self.params:
            if not param.applies(chosen):
                if param.name in architecture:
                    return False
                continue
            if param.name not in architecture:
                return False
            value = architecture[param.name]
            if not _contains(param.distribution, value):
                return False
            chosen[param.name] = value
        return len(chosen) == len(architecture)

    def draw(
        self, rng: np.random.Generator, unit: Callable[[str], float] | None = None
    ) -> Architecture:
        """One architecture drawn uniformly param by param (log-uniform for log ranges); with
        `unit`, each param at the position in [0, 1) it gives for the param's name."""
        chosen: Architecture = {}
        for param in self.params:
            if param.applies(chosen):
                chosen[param.name] = (
                    _draw(param.distribution, rng)
                    if unit is None
                    else value_at(param.distribution, unit(param.name))
                )
        return chosen

    def finite(self) -> bool:
        return all(_values(p.distribution) is not None for p in self.params)

    def enumerate(self, limit: int = _ENUMERATE_UP_TO) -> list[Architecture] | None:
        """Every architecture, or None when the space is continuous or larger than `limit`."""
        if not self.finite():
            return None
        found = list(self._walk(limit=limit + 1))
        return found if len(found) <= limit else None

    def _walk(self, limit: int) -> Iterator[Architecture]:
        def extend(index: int, chosen: Architecture) -> Iterator[Architecture]:
            if index == len(self.params):
                yield dict(chosen)
                return
            param = self.params[index]
            if not param.applies(chosen):
                yield from extend(index + 1, chosen)
                return
            for value in _values(param.distribution) or ():
                chosen[param.name] = value
                yield from extend(index + 1, chosen)
                del chosen[param.name]

        yield from itertools.islice(extend(0, {}), limit)

    def features(self, architectures: list[Mapping[str, Any]]) -> np.ndarray:
        """One row of numbers per architecture for a surrogate model.

        A choice becomes one column per value (one-hot); a number its position in its range
        (on the log scale for log ranges). A param that does not apply is all zeros / -1.
        """
        columns: list[np.ndarray] = []
        for param in self.params:
            if param.distribution.single():
                continue
            values = [a.get(param.name) for a in architectures]
            if isinstance(param.distribution, CategoricalDistribution):
                choices = list(param.distribution.choices)
                onehot = np.zeros((len(values), len(choices)))
                for row, value in enumerate(values):
                    if value is not None and value in choices:
                        onehot[row, choices.index(value)] = 1.0
                columns.append(onehot)
            else:
                columns.append(
                    np.array([[_position(param.distribution, v)] for v in values], dtype=float)
                )
        if not columns:
            return np.zeros((len(architectures), 1))
        return np.hstack(columns)


def _only_value(distribution: BaseDistribution) -> Any:
    """The value of a one-value distribution."""
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[0]
    assert isinstance(distribution, IntDistribution | FloatDistribution)
    return distribution.low


def _values(distribution: BaseDistribution) -> list[Any] | None:
    """Every value of a finite distribution, or None for a continuous one."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, IntDistribution):
        return list(range(distribution.low, distribution.high + 1))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        count = int(round((distribution.high - distribution.low) / distribution.step)) + 1
        return [distribution.low + i * distribution.step for i in range(count)]
    return None


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not distribution.low <= value <= distribution.high:
        return False
    step = getattr(distribution, "step", None)
    if step is None:
        return True
    # Compare with the nearest whole number of steps: `% 1` of 2.9999999 is ~1, not 0.
    steps = (value - distribution.low) / step
    return math.isclose(steps, round(steps), abs_tol=1e-8)


def _draw(distribution: BaseDistribution, rng: np.random.Generator) -> Any:
    # Not `value_at(distribution, rng.random())`: that would draw other values from the same
    # seed, and every seeded study (and benchmark figure) of the latency-aware sampler with it.
    values = _values(distribution)
    if values is not None and not (isinstance(distribution, IntDistribution) and distribution.log):
        return values[int(rng.integers(len(values)))]
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    low, high = float(distribution.low), float(distribution.high)
    if distribution.log:
        drawn = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        drawn = rng.uniform(low, high)
    if isinstance(distribution, IntDistribution):
        return int(min(high, max(low, round(drawn))))
    return float(drawn)


def value_at(distribution: BaseDistribution, unit: float) -> Any:
    """The value at position `unit` in [0, 1) of a distribution: of its values in order, or
    of its range (on the log scale for log ranges). Numeric choices are taken in sorted
    order, so neighbouring positions are neighbouring values."""
    numeric = isinstance(distribution, CategoricalDistribution) and ordered_values(distribution)
    values = sorted(distribution.choices, key=float) if numeric else _values(distribution)
    if values is not None and not (isinstance(distribution, IntDistribution) and distribution.log):
        return values[min(len(values) - 1, int(unit * len(values)))]
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    low, high = float(distribution.low), float(distribution.high)
    if distribution.log:
        drawn = math.exp(math.log(low) + unit * (math.log(high) - math.log(low)))
    else:
        drawn = low + unit * (high - low)
    if isinstance(distribution, IntDistribution):
        return int(min(high, max(low, round(drawn))))
    return float(min(high, max(low, drawn)))


def _position(distribution: BaseDistribution, value: Any) -> float:
    if value is None:
        return -1.0
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    low, high, x = float(distribution.low), float(distribution.high), float(value)
    if distribution.log:
        low, high, x = math.log(low), math.log(high), math.log(x)
    return (x - low) / (high - low) if high > low else 0.0
