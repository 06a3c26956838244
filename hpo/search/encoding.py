"""Configurations as points of the unit cube, for a Gaussian process over the joint space.

Each param becomes columns in [0, 1] whose distances mean something to a stationary kernel:

- a ranged number: its position in the range (on the log scale for log ranges);
- a choice of numbers (`batch_size = [64, 128, 256]`, a table's grid of learning rates): its
  position among the sorted values, on the log scale when the values are positive and spaced
  more evenly in log than in linear terms, so neighbouring values are near each other;
- any other choice: one column per value (one-hot);
- a param that does not apply to this configuration: -1 (all zeros for one-hot columns).
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

_MISSING = -1.0


def ordered_values(distribution: BaseDistribution) -> list[float] | None:
    """The sorted values of a choice of plain numbers, or None for any other param."""
    if not isinstance(distribution, CategoricalDistribution):
        return None
    choices = distribution.choices
    if not all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices):
        return None
    return sorted(float(c) for c in choices)


def log_spaced(values: list[float]) -> bool:
    """Whether sorted positive `values` are spaced more evenly on the log scale."""
    if len(values) < 3 or values[0] <= 0:
        return False

    def unevenness(points: list[float]) -> float:
        gaps = np.diff(points)
        return float(np.std(gaps) / np.mean(gaps))

    return unevenness([math.log(v) for v in values]) < unevenness(values)


class _Column:
    """How one param is written as columns."""

    def __init__(self, name: str, distribution: BaseDistribution) -> None:
        self.name = name
        self.choices: list[Any] | None = None
        self.position: dict[Any, int] = {}
        self.low = self.high = 0.0
        self.log = False
        ordered = ordered_values(distribution)
        if ordered is not None:
            self.log = log_spaced(ordered)
            self.low, self.high = self._scale(ordered[0]), self._scale(ordered[-1])
        elif isinstance(distribution, CategoricalDistribution):
            self.choices = list(distribution.choices)
            # Each value's column: the first equal choice, as list.index finds it (1 and 1.0
            # alike).
            self.position = {c: i for i, c in reversed(list(enumerate(self.choices)))}
        else:
            assert isinstance(distribution, FloatDistribution | IntDistribution)
            self.log = distribution.log
            self.low = self._scale(float(distribution.low))
            self.high = self._scale(float(distribution.high))

    @property
    def width(self) -> int:
        return len(self.choices) if self.choices is not None else 1

    def _scale(self, value: float) -> float:
        return math.log(value) if self.log else value

    def write(self, values: list[Any], out: np.ndarray) -> None:
        """Writes one value per row of `out` (this param's columns of a feature matrix)."""
        if self.choices is not None:
            out[:] = 0.0
            for row, value in enumerate(values):
                if value is not None and value in self.position:
                    out[row, self.position[value]] = 1.0
            return
        span = self.high - self.low
        for row, value in enumerate(values):
            if value is None:
                out[row, 0] = _MISSING
            else:
                out[row, 0] = (self._scale(float(value)) - self.low) / span if span > 0 else 0.0


class Encoding:
    """Writes configurations (dicts of params) as rows of a feature matrix."""

    def __init__(self, distributions: Mapping[str, BaseDistribution]) -> None:
        self.columns = [
            _Column(name, d) for name, d in sorted(distributions.items()) if not d.single()
        ]
        # Each param's slice of the matrix's columns, in order.
        ends = np.cumsum([c.width for c in self.columns], dtype=int)
        self.slices = [
            slice(int(end) - c.width, int(end)) for c, end in zip(self.columns, ends, strict=True)
        ]
        self.width = max(1, int(ends[-1]) if len(ends) else 0)

    def rows(self, configurations: list[Mapping[str, Any]]) -> np.ndarray:
        matrix = np.zeros((len(configurations), self.width))
        for column, columns in zip(self.columns, self.slices, strict=True):
            values = [configuration.get(column.name) for configuration in configurations]
            column.write(values, matrix[:, columns])
        return matrix

    def columns_of(self, names: set[str]) -> np.ndarray:
        """A mask of the matrix's columns that write the params in `names`."""
        mask = np.zeros(self.width, dtype=bool)
        for column, columns in zip(self.columns, self.slices, strict=True):
            mask[columns] = column.name in names
        return mask
