"""Samplers: each runs the real search space; grid refuses ranges; a seed reproduces a study."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import optuna
import pytest

from hpo.core.errors import SpecError
from hpo.core.names import SAMPLERS
from hpo.core.spec import validate
from hpo.core.trial_attrs import FAIL_REASON_ATTR, SPEC_ATTR, STOP_REASON_ATTR
from hpo.present.study_view import study_view
from hpo.search.joint import JointLatencySampler
from hpo.search.latency_aware import LatencyAwareSampler
from hpo.search.samplers import GridToTarget, check_sampler, make_sampler
from hpo.search.space import suggest
from hpo.store.outcomes import OVER_BUDGET, counts_toward_target, settles_grid_point
from tests.cells import FunctionProbe
from tests.conftest import invoke

SEARCH = {
    "model": ["simple_cnn", "vgg"],
    "norm": ["batch", "group"],
    "optimizer": ["nesterov", "adam"],
    "scheduler": ["step", "cosine"],
    "batch_size": [64, 128],
}
RANGES = {"lr": {"low": 1e-3, "high": 0.1}, "width": {"low": 0.5, "high": 2.0}}


def synthetic_objective(spec):
    """Cheap stand-in for training: the samplers are real, only the scores are synthetic."""

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        config = suggest(trial, spec)
        return config.lr * (2 if config.norm == "batch" else 1), config.width

    return objective


def width_latency(architecture: dict) -> float:
    """A stand-in for probing: wider and group-normalized networks are slower."""
    return architecture["width"] * (1.3 if architecture["norm"] == "group" else 1.0)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_drives_the_space(sampler: str) -> None:
    search = SEARCH if sampler == "grid" else {**SEARCH, **RANGES}
    spec = validate({"study": {"name": "t", "sampler": sampler, "seed": 3}, "search": search})
    chosen = make_sampler(spec, probe=FunctionProbe(width_latency))
    if isinstance(chosen, LatencyAwareSampler):
        chosen.startup_trials = 3  # so the surrogate and expected improvement run too
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=chosen)
    study.optimize(synthetic_objective(spec), n_trials=6)
    states = {t.state for t in study.trials}
    assert states == {optuna.trial.TrialState.COMPLETE}
    for trial in study.trials:
        config = trial.user_attrs["config"]
        assert config["optimizer"] in ("nesterov", "adam")
        assert ("momentum" in config) == (config["optimizer"] == "nesterov")


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2", "qmc"])
def test_same_seed_same_sequence(sampler: str) -> None:
    spec = validate(
        {"study": {"name": "t", "sampler": sampler, "seed": 7}, "search": {**SEARCH, **RANGES}}
    )

    def sequence() -> list[dict]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(spec))
        study.optimize(synthetic_objective(spec), n_trials=8)
        return [t.params for t in study.trials]

    assert sequence() == sequence()


@pytest.mark.parametrize("sampler", ["tpe", "latency_aware"])
def test_the_largest_seed_with_a_trial_offset_still_seeds(sampler: str) -> None:
    # A resumed study's sampler is seeded with `seed + trials so far`, which must stay a seed
    # numpy takes.
    spec = validate(
        {"study": {"name": "t", "sampler": sampler, "seed": 2**32 - 1}, "search": SEARCH}
    )
    chosen = make_sampler(spec, seed_offset=5, probe=FunctionProbe(width_latency))
    if isinstance(chosen, LatencyAwareSampler):
        chosen.startup_trials = 2  # so the surrogate, seeded per trial, runs too
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=chosen)
    study.optimize(synthetic_objective(spec), n_trials=4)
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}


def test_grid_with_a_range_is_a_spec_error() -> None:
    spec = validate({"study": {"name": "t", "sampler": "grid"}, "search": RANGES})
    with pytest.raises(SpecError, match="grid sampler needs a list"):
        make_sampler(spec)


TINY_SPEC = """
[study]
name = "repro"
n_trials = 3
sampler = "random"
seed = 11
[data]
val_size = 32
[train]
epochs = 1
[latency]
warmup = 2
loops = 5
max_rounds = 2
[search]
model = "simple_cnn"
width = 0.25
batch_size = 32
norm = ["batch", "group", "none"]
optimizer = ["nesterov", "adam", "rmsprop"]
lr = { low = 0.001, high = 0.05 }
scheduler = ["cosine", "step", "polynomial"]
"""


def test_cli_run_is_reproducible(tmp_path: Path, tiny_npz: Path) -> None:
    spec = tmp_path / "repro.toml"
    spec.write_text(TINY_SPEC)
    sequences = []
    for name in ("a", "b"):
        db = tmp_path / f"{name}.db"
        result = invoke("run", str(spec), "--data", str(tiny_npz), "--storage", f"sqlite:///{db}")
        assert result.returncode == 0, result.stderr
        with sqlite3.connect(db) as connection:
            rows = connection.execute(
                "SELECT t.number, p.param_name, p.param_value FROM trial_params p "
                "JOIN trials t ON t.trial_id = p.trial_id ORDER BY t.number, p.param_name"
            ).fetchall()
        sequences.append(rows)
    assert len({number for number, _, _ in sequences[0]}) == 3
    assert sequences[0] == sequences[1]


def refused_run(spec_text: str, folder: Path, data: Path) -> str:
    """`hpo run` of a spec it must refuse: exit 2 and no database left behind; its stderr."""
    spec, db = folder / "refused.toml", folder / "refused.db"
    spec.write_text(spec_text)
    result = invoke("run", str(spec), "--data", str(data), "--storage", f"sqlite:///{db}")
    assert result.returncode == 2
    assert not db.exists()
    return result.stderr


def test_a_grid_with_every_point_done_or_running_has_nothing_to_give() -> None:
    """Two points over the budget, one trained, the last running in another worker: this
    worker must wait rather than ask (the target, the grid's size, is out of reach, and a new
    trial would repeat a point)."""
    from hpo.run.worker import grid_taken

    study, spec = grid_study(0)
    for number in range(3):
        trial = study.ask()
        suggest(trial, spec)
        if number < 2:
            trial.set_user_attr(STOP_REASON_ATTR, f"{OVER_BUDGET}: 5.00 ms > 1.00 ms")
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, (0.5, 1.0))
    assert not grid_taken(study)
    running = study.ask()
    suggest(running, spec)
    assert grid_taken(study)
    study.tell(running, (0.5, 1.0))
    assert grid_taken(study)


def test_grid_with_start_from_first_is_a_spec_error() -> None:
    study = {"name": "t", "sampler": "grid", "start_from_first": True}
    with pytest.raises(SpecError, match=r"\[study\] start_from_first: the grid sampler"):
        check_sampler(validate({"study": study, "search": SEARCH}))


def test_cli_grid_with_range_exits_2(tmp_path: Path, tiny_npz: Path) -> None:
    stderr = refused_run(TINY_SPEC.replace('"random"', '"grid"'), tmp_path, tiny_npz)
    assert "[search] lr: the grid sampler needs a list" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_cli_grid_runs_every_point_and_ends_cleanly(tmp_path: Path, tiny_npz: Path) -> None:
    spec = tmp_path / "grid.toml"
    spec.write_text(
        TINY_SPEC.replace('"random"', '"grid"')
        .replace("lr = { low = 0.001, high = 0.05 }", "lr = [0.001, 0.05]")
        .replace('norm = ["batch", "group", "none"]', 'norm = "batch"')
        .replace('optimizer = ["nesterov", "adam", "rmsprop"]', 'optimizer = "nesterov"')
        .replace('scheduler = ["cosine", "step", "polynomial"]', 'scheduler = "cosine"')
    )
    db = tmp_path / "grid.db"
    result = invoke("run", str(spec), "--data", str(tiny_npz), "--storage", f"sqlite:///{db}")
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="repro", storage=f"sqlite:///{db}")
    assert sorted(t.params["lr"] for t in study.trials) == [0.001, 0.05]
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    # n_trials (3) is above the grid's 2 points: raising it would run nothing more.
    again = invoke("run", str(spec), "--data", str(tiny_npz), "--storage", f"sqlite:///{db}")
    assert "is finished: 2 of 2 trials; a grid trains each of its points once" in again.stdout


GRID = {"norm": ["batch", "group"], "optimizer": ["nesterov", "adam"]}


def grid_study(seed: int) -> tuple[optuna.Study, optuna.distributions.BaseDistribution]:
    spec = validate({"study": {"name": "g", "sampler": "grid", "seed": seed}, "search": GRID})
    sampler = make_sampler(spec, settled=settles_grid_point)
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler), spec


@pytest.mark.parametrize("seed", range(5))
def test_grid_redoes_an_interrupted_point_not_a_done_one(seed: int) -> None:
    """Trial 1 of four was interrupted: the fifth trial takes its point (Optuna's grid counts
    any finished trial's point as done, and would repeat a random one)."""
    study, spec = grid_study(seed)
    for number in range(4):
        trial = study.ask()
        suggest(trial, spec)
        if number == 1:
            trial.set_user_attr(FAIL_REASON_ATTR, "interrupted")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, (0.5, 1.0))
    redo = study.ask()
    suggest(redo, spec)
    interrupted = study.trials[1]
    assert redo.params == interrupted.params
    assert sorted(GridToTarget.point_of(t) for t in study.trials) == [0, 1, 1, 2, 3]


def test_grid_points_mean_the_same_configuration_in_every_worker() -> None:
    """Two workers (or a resumed run) have other seed offsets: the grid's order must not
    follow them, or a stored point names another configuration and some are trained twice."""
    spec = validate(
        {"study": {"name": "g", "sampler": "grid"}, "search": {**GRID, "batch_size": [64, 128]}}
    )
    workers = [make_sampler(spec, seed_offset=offset) for offset in (0, 1_000_003, 4)]
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number in range(8):
        study.sampler = workers[number % len(workers)]
        trial = study.ask()
        suggest(trial, spec)
        study.tell(trial, (0.5, 1.0))
    configurations = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(configurations) == 8


def test_a_grid_ends_when_every_point_is_trained_or_over_the_budget(tmp_path: Path) -> None:
    """Points over the budget are done (never tried again) without counting toward n_trials:
    the worker ends once the grid is, instead of repeating trained points to make the count."""
    from hpo.run.worker import work_until_target
    from hpo.store.connect import StoredStudy, open_storage

    spec = validate({"study": {"name": "g", "sampler": "grid", "seed": 1}, "search": GRID})
    storage = open_storage(f"sqlite:///{tmp_path / 'g.db'}")
    study = optuna.create_study(
        storage=storage, study_name="g", directions=["maximize", "minimize"]
    )
    study.sampler = make_sampler(spec, settled=settles_grid_point)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        config = suggest(trial, spec)
        if config.norm == "group":
            trial.set_user_attr(STOP_REASON_ATTR, f"{OVER_BUDGET}: 5.00 ms > 1.00 ms")
            raise optuna.TrialPruned
        return 0.5, 1.0

    study.set_user_attr(SPEC_ATTR, spec.raw)
    stored = StoredStudy.of(study, storage)
    work_until_target(stored, objective, target=4)
    trials = study.get_trials()
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials) == 4
    assert not any(counts_toward_target(t) for t in trials if t.state.name == "PRUNED")
    # The report and the dashboard call it finished too, against the grid's size.
    progress = study_view(stored).progress
    assert progress.done
    assert progress.line().startswith(
        "finished: 2 of 4 trials, 2 more over the latency budget (not trained);"
    )
    storage.engine.dispose()


def test_a_grid_over_the_budget_everywhere_is_told_what_to_change(tmp_path: Path) -> None:
    """Every point over the budget: the grid is done, `hpo studies` has the grid's size as
    the target, and the report says to change the grid or the budget (more n_trials would
    run nothing)."""
    from hpo.core.errors import HpoError
    from hpo.present.report import build_report
    from hpo.run.worker import work_until_target
    from hpo.store.connect import StoredStudy, open_storage
    from hpo.store.queries import study_overviews

    spec = validate({"study": {"name": "g", "sampler": "grid", "n_trials": 9}, "search": GRID})
    storage = open_storage(f"sqlite:///{tmp_path / 'g.db'}")
    study = optuna.create_study(
        storage=storage, study_name="g", directions=["maximize", "minimize"]
    )
    study.set_user_attr(SPEC_ATTR, spec.raw)
    study.sampler = make_sampler(spec, settled=settles_grid_point)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        suggest(trial, spec)
        trial.set_user_attr(STOP_REASON_ATTR, f"{OVER_BUDGET}: 5.00 ms > 1.00 ms")
        raise optuna.TrialPruned

    stored = StoredStudy.of(study, storage)
    work_until_target(stored, objective, target=4)
    assert (
        study_view(stored)
        .progress.line()
        .startswith("finished: 0 of 4 trials, 4 more over the latency budget")
    )
    assert [o.target for o in study_overviews(storage)] == [4]
    with pytest.raises(HpoError, match="every point of its grid is done .* raise \\[study\\]"):
        build_report(stored)
    storage.engine.dispose()


def random_start_study(sampler: str, random_start: int | None) -> optuna.Study:
    """Seven trials of a seeded study, with `random_start` (None: the sampler's default)."""
    study_section = {"name": "t", "sampler": sampler, "seed": 5}
    if random_start is not None:
        study_section["random_start"] = random_start
    spec = validate({"study": study_section, "search": {**SEARCH, **RANGES}})
    chosen = make_sampler(spec, probe=FunctionProbe(width_latency))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=chosen)
    study.optimize(synthetic_objective(spec), n_trials=7)
    return study


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_random_start_sets_when_the_model_takes_over(sampler: str) -> None:
    """Same seed: with `random_start = 3` the first three trials are the random start's draws
    as with the default (10), and from the fourth on the model proposes something else."""
    default = [t.params for t in random_start_study(sampler, None).trials]
    short = [t.params for t in random_start_study(sampler, 3).trials]
    assert short[:3] == default[:3]
    assert short[3:] != default[3:]


def test_random_start_sets_when_the_joint_model_takes_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """latency_joint: with `random_start = 3` its model proposes from the fourth trial on (with
    the default, 10, not within seven trials), and the three random-start trials spread the
    learning rate over the three thirds of its (log) range."""
    modelled: list[int] = []
    best = JointLatencySampler._best_configuration

    def counted(self, study, trial, *rest):
        modelled.append(trial.number)
        return best(self, study, trial, *rest)

    monkeypatch.setattr(JointLatencySampler, "_best_configuration", counted)
    random_start_study("latency_joint", None)
    assert modelled == []
    study = random_start_study("latency_joint", 3)
    assert modelled == [3, 4, 5, 6]
    low, high = RANGES["lr"]["low"], RANGES["lr"]["high"]
    thirds = [int(3 * math.log(t.params["lr"] / low) / math.log(high / low)) for t in study.trials]
    assert sorted(thirds[:3]) == [0, 1, 2]


def test_random_start_with_a_sampler_without_one_exits_2(tmp_path: Path, tiny_npz: Path) -> None:
    spec_text = TINY_SPEC.replace("seed = 11", "seed = 11\nrandom_start = 2")
    assert refused_run(spec_text, tmp_path, tiny_npz).strip() == (
        "hpo: error: [study] random_start: sampler random has no random start; it applies to "
        "auto, tpe, gp, latency_aware, latency_joint (clear it with --set study.random_start=none)"
    )
