"""The latency-aware sampler: its expected improvement, its architecture space, reproducibility,
and no duplicate configurations across worker processes on a real database."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest

from hpo.core.spec import validate
from hpo.search.architecture import ArchitectureSpace, architecture_key
from hpo.search.ehvi import expected_improvement, hypervolume, staircase
from hpo.search.samplers import sampler_for
from tests.cells import CELLS, OPS, FunctionProbe, TableProbe, table_accuracy, table_latency
from tests.conftest import ROOT
from tests.pg import pg_url

__all__ = ["pg_url"]  # fixture used below


def run_table_study(seed: int, trials: int, startup: int = 5) -> list[dict]:
    sampler = sampler_for(
        "latency_aware",
        seed,
        architecture=ArchitectureSpace.from_distributions(CELLS),
        probe=TableProbe(),
    )
    sampler.startup_trials = startup
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        cell = {name: trial.suggest_categorical(name, OPS) for name in CELLS}
        return table_accuracy(cell), table_latency(cell)

    study.optimize(objective, n_trials=trials)
    return [t.params for t in study.trials]


# --- expected hypervolume improvement ----------------------------------------------------------


def test_hypervolume_of_a_staircase() -> None:
    points = np.array([[0.5, 1.0], [0.8, 2.0], [0.4, 3.0]])  # the last one is dominated
    assert staircase(points, (0.0, 4.0)).tolist() == [[0.5, 1.0], [0.8, 2.0]]
    assert hypervolume(points, (0.0, 4.0)) == pytest.approx(1.0 * 0.5 + 2.0 * 0.8)


def test_expected_improvement_matches_monte_carlo() -> None:
    front = np.array([[0.5, 1.0], [0.7, 2.0], [0.9, 3.5]])
    reference = (0.0, 4.0)
    latency = np.array([0.5, 1.5, 2.5, 3.9, 0.2, 4.5])
    mean = np.array([0.4, 0.65, 0.85, 0.95, 0.97, 0.99])
    std = np.array([0.05, 0.1, 0.02, 0.2, 0.1, 0.1])
    exact = expected_improvement(front, latency, mean, std, reference)
    rng = np.random.default_rng(0)
    base = hypervolume(front, reference)
    for i in range(len(latency)):
        # An accuracy is a fraction: whatever the model's spread, no run ends above 1.
        draws = np.minimum(rng.normal(mean[i], std[i], 20000), 1.0)
        gains = [
            hypervolume(np.vstack([front, [[a, latency[i]]]]), reference) - base for a in draws
        ]
        assert exact[i] == pytest.approx(np.mean(gains), abs=0.004)
    assert exact[-1] == 0.0, "a candidate beyond the reference latency adds nothing"


# --- the architecture space ------------------------------------------------------------------


def test_architecture_space_of_a_spec() -> None:
    spec = validate(
        {
            "study": {"name": "t"},
            "search": {"model": ["vgg", "resnet"], "norm": ["batch", "none"], "depth": [8, 14]},
        }
    )
    space = ArchitectureSpace.from_spec(spec)
    everything = space.enumerate()
    assert everything is not None and len(everything) == 2 + 4  # depth only for resnet
    assert all(space.contains(a) for a in everything)
    vgg = next(a for a in everything if a["model"] == "vgg")
    assert "depth" not in vgg and not space.contains({**vgg, "depth": 8})
    rng = np.random.default_rng(0)
    drawn = [space.draw(rng) for _ in range(50)]
    assert all(space.contains(a) for a in drawn)
    features = space.features(drawn)
    assert features.shape[0] == 50 and np.isfinite(features).all()
    # Fixed values are one architecture whether written 1 or 1.0.
    assert architecture_key({"width": 1, "norm": "batch"}) == architecture_key(
        {"norm": "batch", "width": 1.0}
    )
    ranged = validate({"study": {"name": "t"}, "search": {"width": {"low": 0.5, "high": 2.0}}})
    assert ArchitectureSpace.from_spec(ranged).enumerate() is None
    # Every point of a stepped range is inside it (0.7 is 1.9999999 steps of 0.1 from 0.5).
    stepped = validate(
        {"study": {"name": "t"}, "search": {"width": {"low": 0.5, "high": 1.5, "step": 0.1}}}
    )
    points = ArchitectureSpace.from_spec(stepped).enumerate()
    assert points is not None and len(points) == 11
    assert all(ArchitectureSpace.from_spec(stepped).contains(a) for a in points)
    assert not ArchitectureSpace.from_spec(stepped).contains({**points[0], "width": 0.55})


# --- the sampler ------------------------------------------------------------------------------


def test_same_seed_same_sequence_and_no_duplicates() -> None:
    first, second = run_table_study(seed=3, trials=14), run_table_study(seed=3, trials=14)
    assert first == second, "a single-worker study is reproducible with its seed"
    keys = [architecture_key(p) for p in first]
    assert len(set(keys)) == len(keys), "the architecture is the whole config: no repeats"
    assert run_table_study(seed=4, trials=14) != first


def test_trials_the_pruner_stopped_end_the_random_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna.trial import TrialState, create_trial

    sampler = sampler_for(
        "latency_aware", 0, architecture=ArchitectureSpace.from_distributions(CELLS),
        probe=TableProbe(),
    )  # fmt: skip
    sampler.startup_trials = 3
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    cells = [{"op0": a, "op1": "a", "op2": "a"} for a in OPS[:3]]
    study.add_trial(
        create_trial(params=cells[0], distributions=CELLS, values=[0.3, table_latency(cells[0])])
    )
    for cell in cells[1:]:  # trained one epoch, then stopped at the first rung
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED,
                params=cell,
                distributions=CELLS,
                user_attrs={"val_accuracy_curve": [0.2]},
            )
        )
    chosen_by_model = []
    rank = sampler._by_expected_improvement
    monkeypatch.setattr(
        sampler, "_by_expected_improvement", lambda *a: chosen_by_model.append(1) or rank(*a)
    )
    trial = study.ask()
    for name in CELLS:
        trial.suggest_categorical(name, OPS)
    assert chosen_by_model, "1 complete + 2 stopped trials = 3 trained: the model chooses"


def test_architecture_is_chosen_given_the_trials_training_params() -> None:
    """Block "a" trains well only with optimizer "x", block "b" only with "y" (same latency):
    once the surrogate knows that, each trial's block follows its optimizer."""
    blocks = {"block": optuna.distributions.CategoricalDistribution(["a", "b"])}
    partner = {"x": "a", "y": "b"}
    sampler = sampler_for(
        "latency_aware", 0, architecture=ArchitectureSpace.from_distributions(blocks),
        probe=FunctionProbe(lambda architecture: 1.0),
    )  # fmt: skip
    sampler.startup_trials = 6
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        optimizer = trial.suggest_categorical("optimizer", ["x", "y"])
        block = trial.suggest_categorical("block", ["a", "b"])
        return (0.9 if partner[optimizer] == block else 0.1), 1.0

    study.optimize(objective, n_trials=20)
    modelled = [t.params for t in study.trials[8:]]
    matched = sum(partner[p["optimizer"]] == p["block"] for p in modelled)
    assert {p["optimizer"] for p in modelled} == {"x", "y"}
    assert matched == len(modelled), f"{matched}/{len(modelled)} blocks matched the optimizer"


def test_training_params_are_learnt_from_accuracy_alone() -> None:
    """Block "fast" never trains (about 0.1 whatever the optimizer) but is the fastest, so a
    Pareto ranking keeps one of its runs among the best; block "slow" trains with optimizer
    "good" only. Training params are drawn from the runs that trained well."""
    blocks = {"block": optuna.distributions.CategoricalDistribution(["fast", "slow"])}
    latency = {"fast": 1.0, "slow": 2.0}
    fast_accuracy = {"good": 0.10, "bad1": 0.13, "bad2": 0.12, "bad3": 0.11}

    def share_of_good(seed: int, trials: int = 30) -> float:
        sampler = sampler_for(
            "latency_aware", seed, architecture=ArchitectureSpace.from_distributions(blocks),
            probe=FunctionProbe(lambda architecture: latency[architecture["block"]]),
        )  # fmt: skip
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

        def objective(trial: optuna.Trial) -> tuple[float, float]:
            optimizer = trial.suggest_categorical("optimizer", list(fast_accuracy))
            block = trial.suggest_categorical("block", ["fast", "slow"])
            if block == "fast":
                return fast_accuracy[optimizer], latency[block]
            return (0.8 if optimizer == "good" else 0.2), latency[block]

        study.optimize(objective, n_trials=trials)
        after_start = study.trials[10:]
        return sum(t.params["optimizer"] == "good" for t in after_start) / len(after_start)

    # Ranked by (accuracy, latency) the same seeds draw "good" 43 % of the time after the
    # random start; uniform draws would give 25 %.
    shares = [share_of_good(seed) for seed in range(3)]
    assert np.mean(shares) >= 0.6, shares


def test_the_accuracy_view_keeps_numbers_and_drops_untrained_trials() -> None:
    from optuna.trial import TrialState, create_trial

    from hpo.search.accuracy_view import accuracy_view

    study = optuna.create_study(directions=["maximize", "minimize"])
    x = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(create_trial(params={"x": 0.1}, distributions=x, values=[0.7, 1.5]))
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED, params={"x": 0.2}, distributions=x,
            user_attrs={"val_accuracy_curve": [0.2, 0.3]},
        )
    )  # fmt: skip
    # Over the latency budget: stopped before training, so no curve.
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": 0.3}, distributions=x))
    running = study.ask()
    view, seen = accuracy_view(study, study.trials[running.number])
    assert view.directions == [optuna.study.StudyDirection.MAXIMIZE]
    assert [t.state for t in view.trials] == [
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
    ]  # fmt: skip
    assert view.trials[0].value == 0.7
    assert view.trials[1].intermediate_values == {1: 0.2, 2: 0.3}
    assert seen.number == running.number and seen.state == TrialState.RUNNING


WORKER = textwrap.dedent(
    """
    import sys
    import optuna
    from optuna.distributions import CategoricalDistribution
    from hpo.search.architecture import ArchitectureSpace
    from hpo.search.samplers import sampler_for
    from hpo.store.claims import claimer
    from hpo.store.connect import load_study, open_storage
    from tests.cells import CELLS, OPS, FunctionProbe, TableProbe, table_accuracy, table_latency

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url, seed, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    stored = load_study(open_storage(url), "dup")
    stored.study.sampler = sampler_for(
        "latency_aware", seed, architecture=ArchitectureSpace.from_distributions(CELLS),
        probe=TableProbe(), claim=claimer(stored),
    )
    stored.study.sampler.startup_trials = 3

    def objective(trial):
        cell = {name: trial.suggest_categorical(name, OPS) for name in CELLS}
        return table_accuracy(cell), table_latency(cell)

    stored.study.optimize(objective, n_trials=trials)
    """
)


@pytest.mark.xdist_group("processes")
@pytest.mark.postgres
def test_two_worker_processes_never_run_the_same_configuration(pg_url: str) -> None:
    optuna.create_study(storage=pg_url, study_name="dup", directions=["maximize", "minimize"])
    # The same seed in both workers: without the database claim they would choose alike.
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, pg_url, "7", "8"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=240)
        assert worker.returncode == 0, stderr
    trials = optuna.load_study(study_name="dup", storage=pg_url).trials
    keys = [architecture_key(t.params) for t in trials]
    assert len(trials) == 16 and len(set(keys)) == 16, "two workers ran the same configuration"


def test_a_new_study_on_a_reused_id_has_no_claims(tmp_path) -> None:
    from hpo.store.claims import claimer
    from hpo.store.connect import open_storage
    from hpo.store.studies import create_or_load_study

    storage = open_storage(f"sqlite:///{tmp_path / 'c.db'}")
    spec = validate({"study": {"name": "again"}})
    first = create_or_load_study(spec, storage)
    assert claimer(first)("config-1") and not claimer(first)("config-1")
    optuna.delete_study(study_name="again", storage=storage)
    second = create_or_load_study(spec, storage)
    assert second.study_id == first.study_id  # SQLite hands the freed id out again
    assert claimer(second)("config-1"), "the deleted study's claims are gone"


@pytest.mark.parametrize("name", ["latency_aware", "latency_joint"])
def test_architectures_a_factory_cannot_build_are_never_candidates(name: str) -> None:
    """A user's factory that raises for some params raises in the probe too (hpo builds the
    network to time it): those architectures are left out, and the search goes on."""
    from optuna.distributions import CategoricalDistribution

    from models.user import FactoryRaised

    def latency(architecture: dict) -> float:
        if architecture["blocks"] in (2, 3):
            raise FactoryRaised("the factory raised ValueError: does not fit")
        return float(architecture["blocks"])

    space = {"blocks": CategoricalDistribution([1, 2, 3, 4, 5])}
    sampler = sampler_for(
        name, 0, architecture=ArchitectureSpace.from_distributions(space),
        probe=FunctionProbe(latency),
    )  # fmt: skip
    sampler.startup_trials = 1
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        blocks = trial.suggest_categorical("blocks", [1, 2, 3, 4, 5])
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        return 0.5 + 0.1 * blocks - abs(np.log10(lr) + 2) / 10, latency({"blocks": blocks})

    study.enqueue_trial({"blocks": 1, "lr": 0.01})
    study.optimize(objective, n_trials=6)
    assert all(t.state.name == "COMPLETE" for t in study.trials), [t.state for t in study.trials]
    assert {t.params["blocks"] for t in study.trials} <= {1, 4, 5}
