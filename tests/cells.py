"""A small table of architectures with a known latency and accuracy, for sampler tests.

Plain Python (no torch), so the worker processes of the tests start quickly.
"""

from __future__ import annotations

from collections.abc import Callable

from optuna.distributions import CategoricalDistribution

from hpo.search.architecture import architecture_key

OPS = ["a", "b", "c", "d"]
CELLS = {f"op{i}": CategoricalDistribution(OPS) for i in range(3)}


def table_latency(architecture: dict) -> float:
    """A deterministic latency per cell (the sampler's probe in these tests)."""
    return 0.1 + sum(OPS.index(architecture[f"op{i}"]) * (i + 1) * 0.05 for i in range(3))


def table_accuracy(architecture: dict) -> float:
    """Slower cells are more accurate, with a twist so the front is not trivial."""
    score = sum(OPS.index(architecture[f"op{i}"]) for i in range(3))
    return 0.3 + 0.05 * score - 0.04 * (architecture["op1"] == "d")


class TableProbe:
    def __init__(self) -> None:
        self.measured: dict[str, tuple[dict, float]] = {}

    def known(self) -> list[tuple[dict, float]]:
        return list(self.measured.values())

    def __call__(self, architecture: dict) -> float:
        latency = table_latency(architecture)
        self.measured[architecture_key(architecture)] = (dict(architecture), latency)
        return latency


class FunctionProbe:
    """A probe whose latency is a function of the architecture (deterministic, instant)."""

    def __init__(self, latency: Callable[[dict], float]) -> None:
        self.latency = latency
        self.measured: dict[str, tuple[dict, float]] = {}

    def known(self) -> list[tuple[dict, float]]:
        return list(self.measured.values())

    def __call__(self, architecture: dict) -> float:
        latency = self.latency(architecture)
        self.measured[architecture_key(architecture)] = (dict(architecture), latency)
        return latency
