"""The latency-aware sampler over the joint space: architecture and training params together.

When training params (lr, optimizer, batch size, ...) are searched beside the architecture,
the accuracy of a trial is a function of both, and the best training settings differ between
architectures. The first trials (the random start) spread every param's values evenly, each
trial in another stratum of each param's range (`hpo.search.start`), so the model's first fit
sees the whole range of each. Once they have finished, each trial is chosen as one
configuration:

1. candidate architectures are those with a known latency (probed by any worker, plus new
   probes within the same time allowance as `LatencyAwareSampler`), within the budget;
2. candidate training settings are random draws, the best trials' settings, and small moves
   around those (`hpo.search.neighbours`), each paired with the trial's own architecture and
   with other candidate architectures;
3. a Gaussian process (`hpo.search.gaussian_process`) models accuracy over the joint space,
   encoded so that numeric choices are ordered (`hpo.search.encoding`); latency is never
   modelled: a candidate's latency is its architecture's probed latency;
4. the candidate with the largest expected hypervolume improvement over (predicted accuracy,
   exact latency) wins, after a second round of moves around the leading candidates. The
   front it must improve on takes each finished trial at the lower of its observed accuracy
   and the model's estimate, an expectation capped at 100 % (a lucky training run does not
   raise the bar, nor one that read 100 % put a point where nothing can improve). Trials
   other workers are running count at their predicted accuracy, both on the front and in the
   model, so concurrent workers spread out. A configuration equal to a tried or running one is
   never proposed, and in a finite space each one is claimed database-wide (when a claim
   function is given).

Trials the pruner stopped count in the model with the best accuracy their curve reached, and
(as for `LatencyAwareSampler`) end the random start. Params that apply only to some trials
(momentum for the momentum optimizers, ...) are drawn by the base sampler, on accuracy alone.
When only the architecture is searched, the sampler is `LatencyAwareSampler`: its
extremely-randomized-trees model is the stronger one over a table of cells.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo.core.trial_attrs import VAL_CURVE_ATTR
from hpo.search.architecture import Architecture, ArchitectureSpace, architecture_key, value_at
from hpo.search.ehvi import AccuracyScale, expected_capped, expected_improvement
from hpo.search.encoding import Encoding
from hpo.search.gaussian_process import GaussianAccuracy
from hpo.search.latency_aware import REFERENCE_MARGIN, LatencyAwareSampler
from hpo.search.neighbours import neighbour
from hpo.search.start import design_seed, stratified_unit

# Random training settings per trial, each with a random candidate architecture.
RANDOM_SETTINGS = 256
# The best finished trials whose settings are moved around, and moves per trial.
INCUMBENTS = 8
MOVES = 16
# Other architectures each incumbent's settings (and their moves) are tried with.
PAIRED_ARCHITECTURES = 32
# Leading candidates moved around again, and moves per candidate.
LEADERS = 4
REFINE_MOVES = 32


class JointLatencySampler(LatencyAwareSampler):
    """Architecture and training params chosen together by expected hypervolume improvement,
    with a Gaussian process of accuracy and probed latencies."""

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space = super().infer_relative_search_space(study, trial)
        space.update(self._training_space(study))
        return space

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        training = {k: v for k, v in search_space.items() if k not in self.space.names}
        architecture_only = {k: v for k, v in search_space.items() if k in self.space.names}
        if not training:
            return super().sample_relative(study, trial, architecture_only)
        trained = _trained(study.get_trials(deepcopy=False))
        complete = [t for t in trained if t.state == TrialState.COMPLETE]
        chosen = None
        if complete and len(trained) >= self.startup_trials:
            started = time.perf_counter()
            chosen = self._best_configuration(study, trial, training, trained, complete)
            self.seconds += time.perf_counter() - started
        if chosen is None:
            chosen = self._random_configuration(study, trial, training)
        if chosen is None:
            return super().sample_relative(study, trial, architecture_only)
        architecture, settings = chosen
        self._chosen[trial.number] = architecture
        self._training[trial.number] = {n: (training[n], v) for n, v in settings.items()}
        return {**{k: v for k, v in architecture.items() if k in search_space}, **settings}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        drawn = self._training.get(trial.number, {}).get(param_name)
        known = param_name in self._chosen.get(trial.number, {}) or (
            drawn is not None and drawn[0] == param_distribution
        )
        if known or param_name in self.space.names:
            return super().sample_independent(study, trial, param_name, param_distribution)
        if len(_trained(study.get_trials(deepcopy=False))) >= self.startup_trials:
            return super().sample_independent(study, trial, param_name, param_distribution)
        # The random start, before the space is known (a first trial): drawn with this trial's
        # own generator, so two workers with one seed do not draw alike.
        rng = np.random.default_rng(
            None if self.seed is None else [self.seed, trial.number, *param_name.encode()]
        )
        return value_at(param_distribution, self._stratum(param_name, trial.number, rng))

    def _training_space(self, study: optuna.Study) -> dict[str, BaseDistribution]:
        """Training params every trial so far has (conditional ones are left to the base):
        running trials count, so a second worker knows the space before any trial ends."""
        drawn = [t for t in study.get_trials(deepcopy=False) if t.params]
        if not drawn:
            return {}
        shared = _shared_distributions(drawn)
        return {
            name: distribution
            for name, distribution in shared.items()
            if name not in self.space.names and not distribution.single()
        }

    def _best_configuration(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        training: dict[str, BaseDistribution],
        trained: list[FrozenTrial],
        complete: list[FrozenTrial],
    ) -> tuple[Architecture, dict[str, Any]] | None:
        rng = np.random.default_rng(None if self.seed is None else [self.seed, trial.number])
        names = sorted(training)
        trials = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        architectures, latencies = self._candidates(rng, set())
        if not architectures:
            return None
        # Candidates are (index into `architectures`, training settings): the architectures'
        # keys, latencies and features are computed once, not once per candidate.
        index_of = {architecture_key(a): i for i, a in enumerate(architectures)}
        taken = {
            (index_of[key], _settings_key(t.params, names))
            for t in trials
            if (key := architecture_key(self.space.of(t.params))) in index_of
        }
        encoding = Encoding({**self.space.distributions, **training})
        architecture_columns = encoding.columns_of(set(self.space.names))
        architecture_rows = encoding.rows(architectures)
        trained_rows = encoding.rows([self._configuration(t.params, names) for t in trained])
        accuracy = np.array([_accuracy(t) for t in trained])
        scale = AccuracyScale.of(accuracy)
        model = GaussianAccuracy(self.seed).fit(trained_rows, accuracy)
        # `complete` is `trained`'s complete trials, in the same order.
        is_complete = np.array([t.state == TrialState.COMPLETE for t in trained])
        points = _front_points(model, trained_rows[is_complete], complete, scale.ceiling)
        # Other workers' running trials: at their predicted accuracy on the front and in the
        # model (a constant liar), so this trial looks elsewhere.
        running = [
            self._configuration(t.params, names)
            for t in trials
            if t.state == TrialState.RUNNING and all(n in t.params for n in names)
        ]
        running = [c for c in running if architecture_key(self.space.of(c)) in self._latency_of]
        if running:
            rows = encoding.rows(running)
            mean, _ = model.predict(rows)
            pending = [self._latency_of[architecture_key(self.space.of(c))] for c in running]
            points = np.vstack([points, np.column_stack([mean, pending])])
            model = model.fantasize(rows)
        slowest = max(float(latencies.max()), float(points[:, 1].max()))
        reference = (scale.reference, self.max_latency or REFERENCE_MARGIN * slowest)

        def score(candidates: list[tuple[int, dict[str, Any]]]) -> np.ndarray:
            which = np.array([i for i, _ in candidates])
            ms = latencies[which]
            rows = np.where(
                architecture_columns,
                architecture_rows[which],
                encoding.rows([settings for _, settings in candidates]),
            )
            mean, std = model.predict(rows)
            gain = expected_improvement(points, ms, mean, std, reference, scale.ceiling)
            # Ties (e.g. no improvement anywhere) go to the more accurate, then the faster one.
            return np.lexsort((ms, -mean, -gain))

        first = self._first_round(rng, len(architectures), training, names, complete, index_of)
        candidates = _fresh(first, names, taken)
        if not candidates:
            return None
        order = score(candidates)
        leaders = [candidates[int(i)] for i in order[:LEADERS]]
        moved = [
            (index, neighbour(settings, training, rng))
            for index, settings in leaders
            for _ in range(REFINE_MOVES)
        ]
        candidates = _fresh(leaders + moved, names, taken)
        finite = self.space.finite() and ArchitectureSpace.from_distributions(training).finite()
        for position in score(candidates):
            index, settings = candidates[int(position)]
            architecture = architectures[index]
            if not finite or self._claimed({**architecture, **settings}):
                return architecture, settings
        return None

    def _random_configuration(
        self, study: optuna.Study, trial: FrozenTrial, training: dict[str, BaseDistribution]
    ) -> tuple[Architecture, dict[str, Any]] | None:
        """A configuration of the random start: first this trial's stratum of each param
        (`hpo.search.start`), then, if that one is tried, over the budget or claimed, uniform
        draws; untried, not known to be over the budget, claimed in a finite space."""
        rng = np.random.default_rng(None if self.seed is None else [self.seed, trial.number])
        names = sorted(training)
        taken = {
            (architecture_key(self.space.of(t.params)), _settings_key(t.params, names))
            for t in study.get_trials(deepcopy=False)
            if t.number != trial.number
        }
        over = (
            {architecture_key(a) for a, ms in self.probe.known() if ms > self.max_latency}
            if self.max_latency is not None
            else set()
        )
        draws = ArchitectureSpace.from_distributions(training)
        finite = self.space.finite() and draws.finite()
        for attempt in range(1000):
            unit = (lambda name: self._stratum(name, trial.number, rng)) if not attempt else None
            architecture, settings = self.space.draw(rng, unit), draws.draw(rng, unit)
            if architecture_key(architecture) in over:
                continue
            if (architecture_key(architecture), _settings_key(settings, names)) in taken:
                continue
            if not finite or self._claimed({**architecture, **settings}):
                return architecture, settings
        return None

    @cached_property
    def _design(self) -> int:
        """The random start's design seed (`hpo.search.start`), fixed for this sampler."""
        return design_seed(self.seed)

    def _stratum(self, name: str, number: int, rng: np.random.Generator) -> float:
        """Trial `number`'s position of param `name` in the random start (`hpo.search.start`)."""
        return stratified_unit(self._design, name, number, self.startup_trials, rng)

    def _first_round(
        self,
        rng: np.random.Generator,
        architecture_count: int,
        training: dict[str, BaseDistribution],
        names: list[str],
        complete: list[FrozenTrial],
        index_of: dict[str, int],
    ) -> list[tuple[int, dict[str, Any]]]:
        """Random settings with random architectures, and the best trials' settings (and moves
        around them) with their own and other architectures; architectures by index."""
        draws = ArchitectureSpace.from_distributions(training)
        candidates = [
            (int(rng.integers(architecture_count)), draws.draw(rng)) for _ in range(RANDOM_SETTINGS)
        ]
        for best in _incumbents(complete, INCUMBENTS):
            own = index_of.get(architecture_key(self.space.of(best.params)))
            settings = {n: best.params[n] for n in names}
            tried = [settings] + [neighbour(settings, training, rng) for _ in range(MOVES)]
            paired = [int(i) for i in rng.permutation(architecture_count)[:PAIRED_ARCHITECTURES]]
            if own is not None:
                paired.append(own)
            candidates += [(a, s) for s in tried for a in paired]
        return candidates

    def _configuration(self, params: dict[str, Any], names: list[str]) -> dict[str, Any]:
        return {**self.space.of(params), **{n: params.get(n) for n in names}}


def _settings_key(settings: dict[str, Any], names: list[str]) -> tuple:
    """A key of the training settings, equal for equal values (16 and 16.0 alike)."""
    return tuple(settings.get(n) for n in names)


def _fresh(
    candidates: list[tuple[int, dict[str, Any]]], names: list[str], taken: set[tuple]
) -> list[tuple[int, dict[str, Any]]]:
    """Candidates (architecture index, settings) that no trial has tried or is running, each
    once."""
    seen = set(taken)
    fresh = []
    for index, settings in candidates:
        key = (index, _settings_key(settings, names))
        if key not in seen:
            seen.add(key)
            fresh.append((index, settings))
    return fresh


def _shared_distributions(trials: list[FrozenTrial]) -> dict[str, BaseDistribution]:
    """The params every one of `trials` has, each with its distribution (the same in all)."""
    shared = dict(trials[0].distributions)
    for t in trials[1:]:
        shared = {
            name: distribution
            for name, distribution in shared.items()
            if t.distributions.get(name) == distribution
        }
    return shared


def _front_points(
    model: GaussianAccuracy, rows: np.ndarray, complete: list[FrozenTrial], ceiling: float
) -> np.ndarray:
    """(accuracy, latency) of the complete trials as the front to improve on: each at the lower
    of its observed accuracy and the model's estimate there. One training run's accuracy is
    noisy; a lucky one, taken at face value, would raise the bar for every configuration near it
    and leave the search nothing to gain there.

    The estimate is the model's accuracy capped at the ceiling (100 %), in expectation (as the
    EHVI counts a candidate's). Near the top of a table where single runs often read 100 %, the
    model's mean strays past it; taken as is, it leaves such a run's 100 % on the front, at the
    ceiling, and every configuration slower than it can gain nothing, so the search would spend
    its trials below the fastest front point."""
    mean, std = model.predict(rows)
    estimate = expected_capped(mean, std, ceiling)
    observed = np.array([t.values[0] for t in complete])
    latency = np.array([t.values[1] for t in complete])
    return np.column_stack([np.minimum(observed, estimate), latency])


def _trained(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Finished trials with an accuracy: complete ones, and those the pruner stopped."""
    return [
        t
        for t in trials
        if (t.state == TrialState.COMPLETE and t.values and len(t.values) == 2)
        or (t.state == TrialState.PRUNED and t.user_attrs.get(VAL_CURVE_ATTR))
    ]


def _accuracy(trial: FrozenTrial) -> float:
    """A complete trial's accuracy; for a stopped one, the best its curve reached."""
    if trial.state == TrialState.COMPLETE:
        return float(trial.values[0])
    return max(float(v) for v in trial.user_attrs[VAL_CURVE_ATTR])


def _incumbents(complete: list[FrozenTrial], count: int) -> list[FrozenTrial]:
    """The Pareto-optimal trials, then the most accurate ones, at most `count`."""
    ordered = sorted(complete, key=lambda t: (t.values[1], -t.values[0]))
    front, best = [], -np.inf
    for t in ordered:
        if t.values[0] > best:
            front.append(t)
            best = t.values[0]
    chosen = sorted(front, key=lambda t: -t.values[0])[:count]
    numbers = {t.number for t in chosen}
    for t in sorted(complete, key=lambda t: -t.values[0]):
        if len(chosen) >= count:
            break
        if t.number not in numbers:
            chosen.append(t)
            numbers.add(t.number)
    return chosen
