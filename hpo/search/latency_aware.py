"""A sampler that knows each architecture's latency before training it.

Latency depends only on the architecture, and an untrained network can be timed in about a
second (a probe), while training it takes minutes. So for each trial this sampler:

1. takes the architectures whose latency is known (probed by any worker), and draws more,
   probing them within a small time allowance per trial (none is trained);
2. drops those over the latency budget, and those already tried when the architecture is the
   whole configuration;
3. fits an accuracy surrogate (extremely randomized trees) on the finished trials;
4. picks the candidate with the largest expected hypervolume improvement: the latency axis is
   exact, only accuracy is uncertain (`hpo.search.ehvi`). Trials other workers are running count
   as points at their predicted accuracy, so concurrent workers spread out;
5. when the architecture is the whole configuration (nothing else is searched), claims it (a
   database-wide unique key, when a claim function is given), so no two trials, on any
   worker, run the same one. Otherwise the training params make each configuration new.

Training hyperparameters (lr, optimizer, ...) come from a base sampler (TPE), drawn before the
architecture. They never change latency, so the base sampler judges them on accuracy alone
(`hpo.search.accuracy_view`): a fast run that trained badly is not a model for the next one.
The surrogate sees them too, so it learns how much of a trial's accuracy came from
its training settings rather than its architecture, and it predicts each candidate architecture
with this trial's settings. Until a few trials have finished, architectures are drawn at random
(never one known to be over the budget).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import intersection_search_space
from optuna.trial import FrozenTrial, TrialState

from hpo.core.spec import SEED_LIMIT
from hpo.core.trial_attrs import VAL_CURVE_ATTR
from hpo.search.accuracy_view import accuracy_view
from hpo.search.architecture import Architecture, ArchitectureSpace, architecture_key
from hpo.search.ehvi import AccuracyScale, expected_improvement
from hpo.search.surrogate import AccuracySurrogate
from models.user import UnusableNetwork

# Trials with random architectures before the surrogate is trusted.
STARTUP_TRIALS = 10
# Architectures drawn per trial, besides the ones whose latency is already known.
CANDIDATES = 512
# Seconds of probing per trial the sampler may spend on architectures nobody trains yet; unused
# time carries over. A real probe takes about a second, so this is a probe every other trial.
PROBE_SECONDS_PER_TRIAL = 0.5
# The reference latency is this much beyond the slowest known candidate.
REFERENCE_MARGIN = 1.01


class LatencyProbe(Protocol):
    """Latencies of architectures: the ones already measured, and measuring one more."""

    def known(self) -> list[tuple[Architecture, float]]:
        """Every architecture measured so far (by any worker) with its latency in ms."""
        ...

    def __call__(self, architecture: Architecture) -> float:
        """The architecture's latency in ms (measured now unless already known)."""
        ...


class LatencyAwareSampler(BaseSampler):
    """Architecture by expected hypervolume improvement over probed latencies; the rest by a
    base sampler."""

    def __init__(
        self,
        space: ArchitectureSpace,
        probe: LatencyProbe,
        base: BaseSampler,
        *,
        seed: int | None = None,
        max_latency: float | None = None,
        claim: Callable[[str], bool] | None = None,
        startup_trials: int = STARTUP_TRIALS,
        candidates: int = CANDIDATES,
        probe_seconds_per_trial: float = PROBE_SECONDS_PER_TRIAL,
    ) -> None:
        self.space = space
        self.probe = probe
        self.base = base
        self.seed = seed
        self.max_latency = max_latency
        self.claim = claim
        self.startup_trials = startup_trials
        self.candidates = candidates
        self.probe_seconds_per_trial = probe_seconds_per_trial
        self._allowance = 0.0
        self._chosen: dict[int, Architecture] = {}
        # Per trial: training params drawn ahead, with the distribution each was drawn from.
        self._training: dict[int, dict[str, tuple[BaseDistribution, Any]]] = {}
        self._latency_of: dict[str, float] = {}
        # Architectures a user's factory raised for when probed: never candidates.
        self._unbuildable: set[str] = set()
        # Per trial: the study seen by accuracy alone, which the base sampler draws from.
        self._views: dict[int, tuple[optuna.Study, FrozenTrial]] = {}
        self.seconds = 0.0  # time spent choosing architectures (probes included), for reports

    # --- Optuna's sampler interface -------------------------------------------------------

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        view, seen = self._view(study, trial)
        space = {
            name: distribution
            for name, distribution in self.base.infer_relative_search_space(view, seen).items()
            if name not in self.space.names
        }
        if self.space.searched():
            space.update(self.space.distributions)
        return space

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        rest = {k: v for k, v in search_space.items() if k not in self.space.names}
        params = self.base.sample_relative(*self._view(study, trial), rest) if rest else {}
        if not self.space.searched():
            return params
        started = time.perf_counter()
        training = self._training_params(study, trial, params)
        architecture = self._choose(study, trial, params, training)
        self.seconds += time.perf_counter() - started
        self._chosen[trial.number] = architecture
        self._training[trial.number] = training
        return {**params, **{k: v for k, v in architecture.items() if k in search_space}}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        chosen = self._chosen.get(trial.number, {})
        if param_name in chosen:
            return chosen[param_name]
        drawn = self._training.get(trial.number, {}).get(param_name)
        # Drawn ahead from the same distribution (a changed spec asks with another one).
        if drawn is not None and drawn[0] == param_distribution:
            return drawn[1]
        return self.base.sample_independent(
            *self._view(study, trial), param_name, param_distribution
        )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._chosen.pop(trial.number, None)
        self._training.pop(trial.number, None)
        self._views.pop(trial.number, None)
        self.base.after_trial(study, trial, state, values)

    def _view(self, study: optuna.Study, trial: FrozenTrial) -> tuple[optuna.Study, FrozenTrial]:
        """The study by accuracy alone, and this trial in it: built once per trial, when its
        first param is drawn (later draws of the same trial see the same history)."""
        if trial.number not in self._views:
            self._views[trial.number] = accuracy_view(study, trial)
        return self._views[trial.number]

    # --- choosing the architecture --------------------------------------------------------

    def _training_params(
        self, study: optuna.Study, trial: FrozenTrial, relative: dict[str, Any]
    ) -> dict[str, tuple[BaseDistribution, Any]]:
        """This trial's training params that every finished trial has (the unconditional ones),
        drawn now by the base sampler so the architecture can be chosen given them, each with
        its distribution. Conditional ones (momentum, ...) are drawn later, when asked for."""
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not finished:
            return {}
        shared = intersection_search_space(finished)
        view, seen = self._view(study, trial)
        return {
            name: (
                distribution,
                relative[name]
                if name in relative
                else self.base.sample_independent(view, seen, name, distribution),
            )
            for name, distribution in sorted(shared.items())
            if name not in self.space.names and not distribution.single()
        }

    def _choose(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        params: dict[str, Any],
        training: dict[str, tuple[BaseDistribution, Any]],
    ) -> Architecture:
        rng = np.random.default_rng(None if self.seed is None else [self.seed, trial.number])
        trials = study.get_trials(deepcopy=False)
        # When the architecture is the whole configuration, a tried one would be a duplicate.
        whole = not params and not _other_params(trials, self.space.names)
        taken = {architecture_key(self.space.of(t.params)) for t in trials} if whole else set()
        complete = [
            t for t in trials if t.state == TrialState.COMPLETE and t.values and len(t.values) == 2
        ]
        # Trials stopped early by the pruner were trained too: they end the random start, else
        # a pruned study (2 of 3 trials stopped at the first rung) would stay random for long.
        stopped = sum(
            t.state == TrialState.PRUNED and bool(t.user_attrs.get(VAL_CURVE_ATTR)) for t in trials
        )
        if complete and len(complete) + stopped >= self.startup_trials:
            candidates, latencies = self._candidates(rng, taken)
            if candidates:
                order = self._by_expected_improvement(
                    trials, complete, candidates, latencies, training
                )
                for index in order:
                    architecture = candidates[int(index)]
                    if not whole or self._claimed(architecture):
                        return architecture
        return self._random(rng, taken, whole)

    def _random(self, rng: np.random.Generator, taken: set[str], whole: bool) -> Architecture:
        """A uniformly drawn architecture, untaken and not known to be over the budget."""
        over = (
            {architecture_key(a) for a, ms in self.probe.known() if ms > self.max_latency}
            if self.max_latency is not None
            else set()
        )
        for _ in range(1000):
            architecture = self.space.draw(rng)
            key = architecture_key(architecture)
            if key not in taken and key not in over and (not whole or self._claimed(architecture)):
                return architecture
        return architecture  # nothing untaken within budget was found: the fastest way on

    def _candidates(
        self, rng: np.random.Generator, taken: set[str]
    ) -> tuple[list[Architecture], np.ndarray]:
        """Feasible, untaken architectures with known latency (probing some new ones)."""
        known = {
            architecture_key(a): (a, latency)
            for a, latency in self.probe.known()
            if self.space.contains(a)
        }
        pool = self.space.enumerate(limit=self.candidates)
        if pool is None:
            pool = [a for a, _ in known.values()]
            pool += [self.space.draw(rng) for _ in range(self.candidates)]
        self._allowance += self.probe_seconds_per_trial
        chosen: dict[str, tuple[Architecture, float]] = {}
        for architecture in pool:
            key = architecture_key(architecture)
            if key in taken or key in chosen:
                continue
            if key in known:
                latency = known[key][1]
            elif key in self._unbuildable:
                continue
            elif self._allowance > 0:
                started = time.perf_counter()
                try:
                    latency = self.probe(architecture)
                except UnusableNetwork:
                    # A user's factory that cannot build these params: never a candidate (a
                    # trial of them would only fail).
                    self._unbuildable.add(key)
                    continue
                finally:
                    self._allowance -= time.perf_counter() - started
                known[key] = (architecture, latency)
            else:
                continue
            if self.max_latency is None or latency <= self.max_latency:
                chosen[key] = (architecture, latency)
        # Bounded both ways: a long wait (e.g. on a dead worker's probe) must not stop probing
        # for hundreds of trials, nor idle trials save up minutes of probing.
        self._allowance = min(
            max(self._allowance, -self.probe_seconds_per_trial), 10 * self.probe_seconds_per_trial
        )
        self._latency_of = {key: latency for key, (_, latency) in known.items()}
        architectures = [a for a, _ in chosen.values()]
        return architectures, np.array([latency for _, latency in chosen.values()])

    def _by_expected_improvement(
        self,
        trials: list[FrozenTrial],
        complete: list[FrozenTrial],
        candidates: list[Architecture],
        latencies: np.ndarray,
        training: dict[str, tuple[BaseDistribution, Any]],
    ) -> np.ndarray:
        """Candidate indices, largest expected hypervolume improvement first, each candidate
        predicted with this trial's `training` params."""
        settings = TrainingFeatures(training)
        accuracy = np.array([t.values[0] for t in complete])
        points = np.array([[t.values[0], t.values[1]] for t in complete])
        seed = None if self.seed is None else (self.seed + len(trials)) % SEED_LIMIT
        surrogate = AccuracySurrogate(seed).fit(
            settings.join(
                self.space.features([self.space.of(t.params) for t in complete]),
                [t.params for t in complete],
            ),
            accuracy,
        )
        # Other workers' running trials count at their predicted accuracy (a constant liar).
        known = self._latency_of
        running = [
            t
            for t in trials
            if t.state == TrialState.RUNNING
            and architecture_key(self.space.of(t.params)) in known
            and settings.covers(t.params)
        ]
        if running:
            architectures = [self.space.of(t.params) for t in running]
            predicted, _ = surrogate.predict(
                settings.join(self.space.features(architectures), [t.params for t in running])
            )
            pending = [
                [m, known[architecture_key(a)]]
                for m, a in zip(predicted, architectures, strict=True)
            ]
            points = np.vstack([points, np.array(pending)])
        mean, std = surrogate.predict(
            settings.join(self.space.features(candidates), [settings.values] * len(candidates))
        )
        slowest = max(float(latencies.max()), float(points[:, 1].max()))
        scale = AccuracyScale.of(accuracy)
        reference = (scale.reference, self.max_latency or REFERENCE_MARGIN * slowest)
        gain = expected_improvement(points, latencies, mean, std, reference, scale.ceiling)
        # Ties (e.g. no improvement anywhere) go to the more accurate, then the faster one.
        return np.lexsort((latencies, -mean, -gain))

    def _claimed(self, configuration: dict[str, Any]) -> bool:
        return self.claim is None or self.claim(architecture_key(configuration))


class TrainingFeatures:
    """Surrogate columns for the training params this trial drew (those every finished trial
    has), appended to the architecture's columns."""

    def __init__(self, training: dict[str, tuple[BaseDistribution, Any]]) -> None:
        self.space = ArchitectureSpace.from_distributions(
            {name: distribution for name, (distribution, _) in training.items()}
        )
        self.values = {name: value for name, (_, value) in training.items()}

    def covers(self, params: dict[str, Any]) -> bool:
        """Whether `params` holds every training param the surrogate reads."""
        return all(name in params for name in self.space.names)

    def join(self, architecture: np.ndarray, params: list[dict[str, Any]]) -> np.ndarray:
        if not self.space.names:
            return architecture
        return np.hstack([architecture, self.space.features(params)])


def _other_params(trials: list[FrozenTrial], names: tuple[str, ...]) -> bool:
    """Whether trials so far searched anything besides the architecture."""
    return any(
        name not in names and not distribution.single()
        for t in trials
        for name, distribution in t.distributions.items()
    )
