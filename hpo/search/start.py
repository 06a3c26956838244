"""A stratified random start: each param's range covered evenly by the first trials.

Independent uniform draws leave gaps by chance: ten trials may all miss small learning rates,
and a model fitted on them starts blind there. Here, with `rows` trials in the random start,
trial n takes for each param a random point of stratum perm(n mod rows) of its range, where
perm shuffles the strata per param and per block of `rows` trials (a Latin hypercube, built
one param at a time, so a param first asked for by a later trial fits in). The shuffle depends
on the design's seed, the param's name and the block only: workers with one seed share the
design, and their trials (distinct numbers) take distinct strata.
"""

from __future__ import annotations

import numpy as np


def design_seed(seed: int | None) -> int:
    """The design's seed: the study's seed, or a random one for this process."""
    return int(np.random.default_rng().integers(2**32)) if seed is None else seed


def stratified_unit(
    design: int, name: str, number: int, rows: int, rng: np.random.Generator
) -> float:
    """Where trial `number` of the random start draws param `name`, in [0, 1)."""
    rows = max(1, rows)
    block, row = divmod(number, rows)
    order = np.random.default_rng([design, block, *name.encode()]).permutation(rows)
    return float((order[row] + rng.random()) / rows)
