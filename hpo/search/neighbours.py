"""Nearby configurations: a few params of a configuration moved a small step each.

Used to search around the best trials: a numeric choice moves to a neighbouring value (in its
sorted order), a ranged number by a small Gaussian step of its (log) range, any other choice to
another of its values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.search.encoding import ordered_values

# Standard deviation of a step along a ranged number, as a share of its (log) range.
_STEP = 0.1


def neighbour(
    configuration: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """`configuration` with each searched param moved with probability 1 / (number of params),
    and at least one moved."""
    names = sorted(n for n, d in distributions.items() if not d.single() and n in configuration)
    moved = dict(configuration)
    if not names:
        return moved
    chosen = rng.random(len(names)) < 1.0 / len(names)
    chosen[int(rng.integers(len(names)))] = True
    for name, move in zip(names, chosen, strict=True):
        if move:
            moved[name] = _step(distributions[name], configuration[name], rng)
    return moved


def _step(distribution: BaseDistribution, value: Any, rng: np.random.Generator) -> Any:
    ordered = ordered_values(distribution)
    if ordered is not None:
        assert isinstance(distribution, CategoricalDistribution)
        choices = sorted(distribution.choices, key=float)
        index = choices.index(value) + int(rng.choice([-2, -1, -1, 1, 1, 2]))
        return choices[min(len(choices) - 1, max(0, index))]
    if isinstance(distribution, CategoricalDistribution):
        others = [c for c in distribution.choices if c != value]
        return others[int(rng.integers(len(others)))]
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    low, high, x = float(distribution.low), float(distribution.high), float(value)
    if distribution.log:
        low, high, x = math.log(low), math.log(high), math.log(x)
    moved = min(high, max(low, x + rng.normal(0.0, _STEP * (high - low))))
    if distribution.log:
        moved = math.exp(moved)
    step = distribution.step
    if step is not None:
        moved = distribution.low + round((moved - distribution.low) / step) * step
    moved = min(float(distribution.high), max(float(distribution.low), moved))
    return int(round(moved)) if isinstance(distribution, IntDistribution) else float(moved)
