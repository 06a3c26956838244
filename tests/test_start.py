"""The stratified random start (hpo/search/start.py) and positions in a distribution."""

from __future__ import annotations

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.search.architecture import value_at
from hpo.search.start import stratified_unit


def test_each_block_of_trials_takes_every_stratum_once() -> None:
    rng = np.random.default_rng(0)
    for block in range(3):
        units = [stratified_unit(7, "lr", n, 8, rng) for n in range(8 * block, 8 * block + 8)]
        assert sorted(int(u * 8) for u in units) == list(range(8))
    strata = {name: [int(stratified_unit(7, name, n, 8, rng) * 8) for n in range(8)]
              for name in ("lr", "batch_size", "weight_decay")}  # fmt: skip
    assert len({tuple(s) for s in strata.values()}) == 3, "each param has its own shuffle"


def strata(design: int, jitter: int) -> list[int]:
    rng = np.random.default_rng(jitter)
    return [int(stratified_unit(design, "lr", n, 10, rng) * 10) for n in range(10)]


def test_one_seed_one_design_across_workers() -> None:
    """Two workers with one seed place a trial number alike (the within-stratum jitter aside),
    so their trials, numbered apart, take distinct strata."""
    assert strata(5, jitter=1) == strata(5, jitter=2)
    assert strata(5, jitter=1) != strata(6, jitter=1)


def test_positions_map_to_values_in_order() -> None:
    choices = CategoricalDistribution([256, 16, 64])
    assert [value_at(choices, u) for u in (0.0, 0.4, 0.99)] == [16, 64, 256]
    assert value_at(CategoricalDistribution(["adam", "sgd"]), 0.7) == "sgd"
    assert value_at(FloatDistribution(1e-4, 1e-2, log=True), 0.5) == pytest.approx(1e-3)
    assert value_at(FloatDistribution(0.0, 0.5), 0.2) == pytest.approx(0.1)
    assert value_at(IntDistribution(1, 5), 0.99) == 5 and value_at(IntDistribution(1, 5), 0.0) == 1
