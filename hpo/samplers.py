"""Spec `[study] sampler` -> an Optuna sampler."""

from __future__ import annotations

import optuna

from hpo.space import grid_search_space
from hpo.spec import Spec

SAMPLER_HELP = {
    "auto": "TPE, Optuna 5's default for multi-objective studies",
    "random": "independent uniform/log-uniform draws",
    "grid": "every combination of the spec's finite choices (no ranges)",
    "qmc": "quasi-Monte Carlo (Sobol) points",
    "tpe": "Tree-structured Parzen Estimator",
    "gp": "Gaussian-process Bayesian optimization",
    "nsga2": "NSGA-II evolutionary multi-objective search",
    "nsga3": "NSGA-III evolutionary multi-objective search",
}


def make_sampler(spec: Spec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler named by the spec, seeded with `[study] seed + seed_offset`.

    The offset is the number of trials already in the study, so a resumed study continues
    with fresh draws instead of replaying the first ones.
    """
    name = spec.study.sampler
    seed = None if spec.study.seed is None else spec.study.seed + seed_offset
    if name in ("auto", "tpe"):
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(grid_search_space(spec), seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")
