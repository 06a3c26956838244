"""The joint latency-aware sampler: architecture and training params chosen together by a
Gaussian process of accuracy and probed latencies (hpo/search/joint.py)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from hpo.core.spec import validate
from hpo.search.architecture import ArchitectureSpace
from hpo.search.ehvi import AccuracyScale, expected_improvement, hypervolume
from hpo.search.encoding import Encoding, log_spaced
from hpo.search.gaussian_process import GaussianAccuracy
from hpo.search.joint import JointLatencySampler, _front_points
from hpo.search.samplers import make_sampler, sampler_for
from tests.cells import CELLS, OPS, FunctionProbe, TableProbe, table_accuracy, table_latency
from tests.conftest import ROOT
from tests.test_samplers import RANGES, SEARCH, synthetic_objective, width_latency

# A joint space: the architecture's size sets the latency, and the best learning rate differs
# per size (bigger nets want smaller ones), so no one training setting is best everywhere.
SIZES = [1, 2, 3, 4, 5, 6]
RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3]
BATCHES = [16, 32, 64, 128, 256]
SPACE = {
    "size": CategoricalDistribution(SIZES),
    "lr": CategoricalDistribution(RATES),
    "batch_size": CategoricalDistribution(BATCHES),
}
ARCHITECTURE = {"size": SPACE["size"]}
REFERENCE = (0.0, 7.0)


def joint_accuracy(params: dict) -> float:
    size, rate, batch = (
        params["size"],
        RATES.index(params["lr"]),
        BATCHES.index(params["batch_size"]),
    )
    best_rate = 8 - size
    return 0.5 + 0.06 * size - 0.03 * (rate - best_rate) ** 2 - 0.02 * (batch - 2) ** 2


def joint_latency(architecture: dict) -> float:
    return float(architecture["size"])


def best_volume() -> float:
    points = [
        (joint_accuracy({"size": s, "lr": r, "batch_size": b}), float(s))
        for s in SIZES
        for r in RATES
        for b in BATCHES
    ]
    return hypervolume(np.array(points), REFERENCE)


def joint_study(
    name: str,
    seed: int,
    trials: int,
    reported: Callable[[float], float] = float,
    **options: Any,
) -> optuna.Study:
    """A study of the joint space whose first objective is `reported(accuracy)`."""
    sampler = sampler_for(
        name, seed, architecture=ArchitectureSpace.from_distributions(ARCHITECTURE),
        probe=FunctionProbe(joint_latency), **options,
    )  # fmt: skip
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = {n: trial.suggest_categorical(n, d.choices) for n, d in SPACE.items()}
        return reported(joint_accuracy(params)), joint_latency(params)

    study.optimize(objective, n_trials=trials)
    return study


def front_share(study: optuna.Study) -> float:
    points = np.array([t.values for t in study.trials if t.state == TrialState.COMPLETE])
    return hypervolume(points, REFERENCE) / best_volume()


# --- the encoding ------------------------------------------------------------------------------


def test_numeric_choices_are_ordered_and_log_scaled_when_they_span_magnitudes() -> None:
    assert log_spaced([1e-5, 1e-4, 1e-3, 1e-2]) and log_spaced([16.0, 32.0, 64.0, 128.0])
    assert not log_spaced([0.0, 0.1, 0.2]) and not log_spaced([1.0, 2.0, 3.0, 4.0])
    encoding = Encoding({**SPACE, "optimizer": CategoricalDistribution(["sgd", "adam"])})
    rows = encoding.rows([{"size": 1, "lr": 1e-5, "batch_size": 64, "optimizer": "adam"}])
    # batch_size (64 of 16..256 on the log scale: halfway), lr (the lowest), optimizer
    # (one-hot), size (the lowest: 1..6 is evenly spaced, so linear).
    assert rows[0].tolist() == pytest.approx([0.5, 0.0, 0.0, 1.0, 0.0])


# --- the front the sampler must improve on ------------------------------------------------------


def test_a_lucky_run_does_not_raise_the_front_but_a_poor_one_stays_poor() -> None:
    # Twenty runs of one smooth setting, each at accuracy 0.8 give or take 0.005, but run 10
    # scored 0.9 (a lucky seed) and run 15 scored 0.7 (an unlucky one).
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 20)[:, None]
    accuracy = 0.8 + rng.normal(0, 0.005, 20)
    accuracy[10], accuracy[15] = 0.9, 0.7
    complete = [
        optuna.trial.create_trial(values=[float(a), 1.0 + i], params={}, distributions={})
        for i, a in enumerate(accuracy)
    ]
    model = GaussianAccuracy(seed=0).fit(x, accuracy)
    points = _front_points(model, x, complete, 1.0)
    assert points[:, 1].tolist() == [1.0 + i for i in range(20)]
    assert points[10, 0] < 0.85, "the lucky run counts at the model's estimate, near 0.8"
    assert points[15, 0] == 0.7, "a run below the model's estimate counts as observed"
    assert np.all(points[:, 0] <= accuracy)


class _Overshooting:
    """A model whose mean strays past 100 % near the top, as one fitted to runs there does."""

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.array([1.04, 0.9]), np.array([0.05, 0.01])


def test_a_run_that_read_100_percent_leaves_room_above_it() -> None:
    complete = [
        optuna.trial.create_trial(values=[1.0, 2.0], params={}, distributions={}),
        optuna.trial.create_trial(values=[0.85, 1.0], params={}, distributions={}),
    ]
    points = _front_points(_Overshooting(), np.zeros((2, 1)), complete, 1.0)
    # The estimate is E[min(A, 1)] for A ~ N(1.04, 0.05), not the mean past 1 nor the 100 %.
    capped = np.minimum(np.random.default_rng(0).normal(1.04, 0.05, 200_000), 1.0).mean()
    assert points[0, 0] == pytest.approx(capped, abs=5e-4) and points[0, 0] < 0.995
    assert points[1, 0] == 0.85, "below the estimate, a run counts as observed"
    # So a candidate slower than the 100 % run can still improve on it.
    latency, mean, std = np.array([3.0]), np.array([0.999]), np.array([0.01])
    assert expected_improvement(points, latency, mean, std, (0.0, 4.0))[0] > 0


def test_the_scale_of_accuracy_is_read_from_the_values() -> None:
    assert AccuracyScale.of(np.array([0.1, 1.0])) == AccuracyScale(0.0, 1.0)
    assert AccuracyScale.of(np.array([10.0, 93.5])) == AccuracyScale(0.0, 100.0)
    # Minus an error: no ceiling, and a reference a tenth of the spread below the lowest.
    assert AccuracyScale.of(np.array([-0.5, -0.1])) == AccuracyScale(pytest.approx(-0.54), math.inf)
    assert AccuracyScale.of(np.array([-2.0])).reference < -2.0


# --- the sampler -------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["latency_joint", "latency_aware"])
def test_percentages_make_the_choices_fractions_make(sampler: str) -> None:
    """A table that gives accuracy in percent is searched as one in fractions: its 100 % is
    the ceiling, not 1 %."""

    def fraction(accuracy: float) -> float:
        return max(accuracy, 0.01)

    def percent(accuracy: float) -> float:
        return 100 * fraction(accuracy)

    fractions = [t.params for t in joint_study(sampler, 0, 16, fraction).trials]
    assert fractions == [t.params for t in joint_study(sampler, 0, 16, percent).trials]


def test_an_objective_that_is_not_an_accuracy_is_searched_too() -> None:
    """Minus an error (every value below 0) has no ceiling and no reference at 0: the front is
    found as for accuracies."""
    study = joint_study("latency_joint", 0, 30, lambda accuracy: accuracy - 1.0)
    points = np.array([t.values for t in study.trials])
    points[:, 0] += 1.0
    assert hypervolume(points, REFERENCE) / best_volume() >= 0.97


def test_finds_the_joint_front_that_tpe_misses() -> None:
    """Each size has its own best learning rate: modelled jointly, with ordered choices, the
    front is found within 30 trials; TPE, drawing the training params apart, misses most of it."""
    joint = [front_share(joint_study("latency_joint", seed, 30)) for seed in range(2)]
    tpe = [front_share(joint_study("tpe", seed, 30)) for seed in range(2)]
    assert min(joint) >= 0.97, joint
    assert max(tpe) < 0.97, tpe


def test_same_seed_same_sequence_and_no_repeats() -> None:
    first = [t.params for t in joint_study("latency_joint", 3, 16).trials]
    assert first == [t.params for t in joint_study("latency_joint", 3, 16).trials]
    assert first != [t.params for t in joint_study("latency_joint", 4, 16).trials]
    keys = [tuple(sorted(p.items())) for p in first]
    assert len(set(keys)) == len(keys), "a finite space: no configuration is proposed twice"


def test_the_random_start_covers_each_training_param_evenly() -> None:
    """Ten random-start trials take each of ten learning rates once and each of five batch
    sizes twice (independent draws would repeat some and miss others)."""
    for seed in range(3):
        start = joint_study("latency_joint", seed, 10).trials
        assert sorted(t.params["lr"] for t in start) == RATES
        assert sorted(t.params["batch_size"] for t in start) == sorted(BATCHES * 2)


def test_over_the_budget_is_never_chosen_by_the_model() -> None:
    study = joint_study("latency_joint", 0, 24, max_latency=3.5)
    modelled = study.trials[10:]  # after the random start
    assert all(t.params["size"] <= 3 for t in modelled), [t.params["size"] for t in modelled]


def test_conditional_params_and_a_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick spaces of a spec: momentum applies to nesterov only, and is left to the base
    sampler; the joint model chooses the rest once trials have finished."""
    spec = validate(
        {
            "study": {"name": "t", "sampler": "latency_joint", "seed": 1},
            "search": {**SEARCH, **RANGES},
        }
    )
    sampler = make_sampler(spec, probe=FunctionProbe(width_latency))
    assert isinstance(sampler, JointLatencySampler)
    sampler.startup_trials = 4
    chosen = []
    best = sampler._best_configuration
    monkeypatch.setattr(
        sampler, "_best_configuration", lambda *a: chosen.append(r := best(*a)) or r
    )
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(synthetic_objective(spec), n_trials=10)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert len(chosen) == 6 and all(c is not None for c in chosen)
    for trial, configuration in zip(study.trials[4:], chosen, strict=True):
        architecture, settings = configuration
        assert {k: trial.params[k] for k in settings} == settings
        assert all(trial.params[k] == v for k, v in architecture.items() if k in trial.params)
        config = trial.user_attrs["config"]
        assert ("momentum" in config) == (config["optimizer"] == "nesterov")


def test_pending_trials_count_at_their_predicted_accuracy() -> None:
    """A trial asked while others run (not yet told) is not one of theirs."""
    study = joint_study("latency_joint", 5, 12)
    running = [study.ask() for _ in range(4)]
    for trial in running:
        for name, distribution in SPACE.items():
            trial.suggest_categorical(name, distribution.choices)
    keys = [tuple(sorted(t.params.items())) for t in running]
    assert len(set(keys)) == len(keys)


WORKER = textwrap.dedent(
    """
    import sys
    import optuna
    from hpo.search.architecture import ArchitectureSpace
    from hpo.search.samplers import sampler_for
    from hpo.store.claims import claimer
    from hpo.store.connect import load_study, open_storage
    from tests.cells import FunctionProbe
    from tests.test_latency_joint import ARCHITECTURE, SPACE, joint_accuracy, joint_latency

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url, seed, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    stored = load_study(open_storage(url), "joint")
    stored.study.sampler = sampler_for(
        "latency_joint", seed, architecture=ArchitectureSpace.from_distributions(ARCHITECTURE),
        probe=FunctionProbe(joint_latency), claim=claimer(stored),
    )
    stored.study.sampler.startup_trials = 3

    def objective(trial):
        params = {n: trial.suggest_categorical(n, d.choices) for n, d in SPACE.items()}
        return joint_accuracy(params), joint_latency(params)

    stored.study.optimize(objective, n_trials=trials)
    """
)


@pytest.mark.xdist_group("processes")
def test_two_worker_processes_never_run_the_same_configuration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'joint.db'}"
    study = optuna.create_study(
        storage=url, study_name="joint", directions=["maximize", "minimize"]
    )
    # One finished trial: the space is known to both workers from their first draw. (Before
    # any trial has params, a first trial cannot be claimed: its params are not known yet.)
    first = {"size": 1, "lr": 1e-5, "batch_size": 16}
    study.add_trial(
        optuna.trial.create_trial(
            params=first, distributions=SPACE, values=[joint_accuracy(first), 1.0]
        )
    )
    # The same seed in both workers: without claims and pending trials they would choose alike.
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, "7", "8"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=240)
        assert worker.returncode == 0, stderr
    trials = optuna.load_study(study_name="joint", storage=url).trials
    keys = [tuple(sorted(t.params.items())) for t in trials]
    assert len(trials) == 17 and len(set(keys)) == 17, "two workers ran the same configuration"


def test_an_architecture_only_space_is_the_latency_aware_sampler() -> None:
    """Over a table of cells (nothing but the architecture searched) the sampler makes the
    latency-aware sampler's choices, which its trees make well there."""
    from tests.test_latency_aware import run_table_study

    def run(name: str) -> list[dict]:
        sampler = sampler_for(
            name, 2, architecture=ArchitectureSpace.from_distributions(CELLS), probe=TableProbe()
        )
        sampler.startup_trials = 5
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

        def objective(trial: optuna.Trial) -> tuple[float, float]:
            cell = {name: trial.suggest_categorical(name, OPS) for name in CELLS}
            return table_accuracy(cell), table_latency(cell)

        study.optimize(objective, n_trials=12)
        return [t.params for t in study.trials]

    assert run("latency_joint") == run("latency_aware") == run_table_study(2, 12)
