"""Spec `[study] sampler` -> an Optuna sampler."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.core.errors import SpecError
from hpo.core.spec import SEED_LIMIT, Spec
from hpo.search.architecture import ArchitectureSpace
from hpo.search.joint import JointLatencySampler
from hpo.search.latency_aware import LatencyAwareSampler, LatencyProbe
from hpo.search.space import grid_search_space

# What `auto` means: the sampler the benchmarks found best for this kind of study.
AUTO = "tpe"
# Optuna's GridSampler keeps a trial's point and the grid it is of in these system attributes.
_GRID_POINT = "grid_id"
_SPACE = "search_space"
# The samplers that start with random trials before proposing from a model.
MODEL_BASED = ("tpe", "gp", "latency_aware", "latency_joint")


class GridToTarget(optuna.samplers.GridSampler):
    """Optuna's grid sampler, without its `study.stop()` once every point is taken: that works
    only inside `study.optimize`, and hpo's workers ask and tell (it raised after the last
    point's trial). They stop at the grid's size instead (`study_target`).

    Which points are done is the study's own notion, `settled` (default: every finished
    trial's, as Optuna has it): a point whose trial was interrupted, crashed or lost is taken
    again, rather than a done one repeated. Queued retries count as in flight."""

    def __init__(
        self,
        search_space: Mapping[str, Sequence[Any]],
        seed: int | None = None,
        settled: Callable[[FrozenTrial], bool] | None = None,
    ) -> None:
        super().__init__(search_space, seed=seed)
        self.settled = settled or (lambda trial: trial.state.is_finished())

    @staticmethod
    def point_of(trial: FrozenTrial) -> int | None:
        """The grid point `trial` takes (None: not a grid trial)."""
        point = trial.system_attrs.get(_GRID_POINT)
        return None if point is None else int(point)

    def untaken_points(self, study: optuna.Study) -> list[int]:
        """The points neither done nor in flight (running, or queued) in any worker."""
        points, settled, in_flight = self._points(study)
        return sorted(points - settled - in_flight)

    def _get_unvisited_grid_ids(self, study: optuna.Study) -> list[int]:
        points, settled, in_flight = self._points(study)
        # As Optuna's: once every point is taken, the ones not done yet (in flight elsewhere).
        return sorted(points - settled - in_flight) or sorted(points - settled)

    def _points(self, study: optuna.Study) -> tuple[set[int], set[int], set[int]]:
        """Every point, the settled ones and the ones in flight."""
        points = set(range(self._n_min_trials))
        settled, in_flight = set(), set()
        for trial in study.get_trials(deepcopy=False):
            point = self.point_of(trial)
            if point is None or not self._same_search_space(trial.system_attrs[_SPACE]):
                continue
            if trial.state in (TrialState.RUNNING, TrialState.WAITING):
                in_flight.add(point)
            elif self.settled(trial):
                settled.add(point)
        return points, settled, in_flight

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def resolved(name: str) -> str:
    """The sampler a `[study] sampler` value stands for (`auto` -> AUTO)."""
    return AUTO if name == "auto" else name


def check_sampler(spec: Spec) -> None:
    """Refuse a sampler the spec cannot use (e.g. grid over a continuous range): SpecError."""
    if spec.study.sampler == "grid":
        grid_search_space(spec)
        if spec.study.start_from_first:
            # Its queued first configuration would take no grid point: one point trained
            # twice, another never.
            raise SpecError(
                "[study] start_from_first: the grid sampler trains every point of the grid in "
                "its own order; use it with another sampler, or leave it out"
            )
    name = resolved(spec.study.sampler)
    if spec.study.random_start is not None and name not in MODEL_BASED:
        raise SpecError(
            f"[study] random_start: sampler {name} has no random start; it applies to auto, "
            f"{', '.join(MODEL_BASED)} (clear it with --set study.random_start=none)"
        )


def make_sampler(
    spec: Spec,
    seed_offset: int = 0,
    probe: LatencyProbe | None = None,
    claim: Callable[[str], bool] | None = None,
    settled: Callable[[FrozenTrial], bool] | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler named by the spec, seeded with `[study] seed + seed_offset`.

    The offset is the number of trials already in the study, so a resumed study continues
    with fresh draws instead of replaying the first ones. `probe` and `claim` serve the
    latency-aware sampler (latencies of architectures; a database-wide claim on a config);
    `settled` tells the grid sampler which trials' points are done.
    """
    # Wrapped to stay a seed numpy takes, however many trials the study has.
    seed = None if spec.study.seed is None else (spec.study.seed + seed_offset) % SEED_LIMIT
    if spec.study.sampler == "grid":
        # The grid's order comes from its seed, and a trial's stored point is an index into
        # it: every worker and every resumed run must read the same order.
        seed = spec.study.seed
    return sampler_for(
        spec.study.sampler,
        seed,
        architecture=ArchitectureSpace.from_spec(spec),
        probe=probe,
        claim=claim,
        max_latency=spec.study.max_latency_ms,
        grid=lambda: grid_search_space(spec),
        random_start=spec.study.random_start,
        settled=settled,
    )


def sampler_for(
    name: str,
    seed: int | None,
    *,
    architecture: ArchitectureSpace | None = None,
    probe: LatencyProbe | None = None,
    claim: Callable[[str], bool] | None = None,
    max_latency: float | None = None,
    grid: Callable[[], dict[str, list[Any]]] | None = None,
    random_start: int | None = None,
    settled: Callable[[FrozenTrial], bool] | None = None,
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called `name` (as in `[study] sampler`), seeded with `seed`;
    `random_start` trials before a model-based sampler proposes from its model (None: its own
    default)."""
    name = resolved(name)
    startup = {} if random_start is None else {"n_startup_trials": random_start}
    with warnings.catch_warnings():
        # QMC and NSGA-III are marked experimental; a spec that names one asked for it.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name in ("latency_aware", "latency_joint"):
            if architecture is None or probe is None:
                raise ValueError(f"the {name} sampler needs the architecture space and a probe")
            base = optuna.samplers.TPESampler(seed=seed, **startup)
            kind = LatencyAwareSampler if name == "latency_aware" else JointLatencySampler
            own = {} if random_start is None else {"startup_trials": random_start}
            return kind(
                architecture, probe, base, seed=seed, max_latency=max_latency, claim=claim, **own
            )
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **startup)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "grid":
            if grid is None:
                raise ValueError("the grid sampler needs the grid")
            return GridToTarget(grid(), seed=seed, settled=settled)
        if name == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, **startup)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        if name == "nsga3":
            return optuna.samplers.NSGAIIISampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")
