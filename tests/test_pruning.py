"""Pareto-aware successive halving: rung decisions on synthetic learning curves, and pruning
with two worker processes on one real database."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

from hpo.core.trial_attrs import flat
from hpo.search.pruning import ParetoHalving, crowding_distance, nondominated_ranks
from hpo.store import queries
from hpo.store.connect import load_study, open_storage
from hpo.store.outcomes import counts_toward_target
from tests.conftest import invoke
from tests.pg import pg_url, start_cli, wait_all
from tests.test_workers import create, tiny_spec

__all__ = ["pg_url"]  # fixture used below


def test_rungs_grow_by_eta_below_the_last_epoch() -> None:
    assert ParetoHalving(eta=3, min_epochs=1).rungs(10) == [1, 3, 9]
    assert ParetoHalving(eta=3, min_epochs=1).rungs(9) == [1, 3]
    assert ParetoHalving(eta=2, min_epochs=2).rungs(17) == [2, 4, 8, 16]
    assert ParetoHalving().rungs(1) == []


def test_nondominated_sorting_and_crowding() -> None:
    points = np.array([[0.9, 2.0], [0.5, 1.0], [0.6, 2.5], [0.4, 3.0], [0.7, 1.5]])
    assert nondominated_ranks(points).tolist() == [0, 0, 1, 2, 0]
    front = points[[1, 4, 0]]
    distance = crowding_distance(front)
    assert np.isinf(distance[0]) and np.isinf(distance[2]) and np.isfinite(distance[1])


def test_a_trial_alone_at_a_rung_goes_on() -> None:
    assert ParetoHalving(eta=3).keeps((0.1, 5.0), [])
    assert ParetoHalving(eta=3).keeps((0.1, 5.0), [(0.2, 4.0)]) is False


def test_a_trial_nothing_dominates_goes_on_beyond_the_best_third() -> None:
    # Three latency levels, each with one trial: all three are on the rung's front. MOASHA's
    # top 3 // 3 = 1 would stop two of them; nothing beats any of them at its speed.
    pruner = ParetoHalving(eta=3)
    others = [(0.50, 2.0), (0.40, 1.5)]
    assert pruner.keeps((0.30, 1.0), others)  # fastest, least accurate
    assert pruner.keeps((0.45, 1.7), others)  # in between on both axes
    # Slower than one and less accurate than it: dominated, and not in the best third.
    assert not pruner.keeps((0.35, 1.6), others)


def test_only_the_best_third_goes_on() -> None:
    pruner = ParetoHalving(eta=3)
    # Nine trials at the same latency: only accuracy decides, and 9 // 3 = 3 go on.
    others = [(a, 1.0) for a in (0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80)]
    assert pruner.keeps((0.65, 1.0), others)  # third best of nine
    assert not pruner.keeps((0.55, 1.0), others)  # fourth best


def test_a_faster_trial_survives_a_more_accurate_crowd() -> None:
    # Exact on the latency axis: the fastest trial is on the front, however inaccurate so far.
    pruner = ParetoHalving(eta=3)
    slow_and_good = [(0.6 + 0.01 * i, 2.0) for i in range(8)]
    assert pruner.keeps((0.2, 0.5), slow_and_good)
    # As slow as the rest and worse than all of them: dominated, stopped.
    assert not pruner.keeps((0.2, 2.0), slow_and_good)


def test_a_latency_within_its_spread_is_no_faster_at_a_rung() -> None:
    # A no-norm trial 0.001 ms faster than a far more accurate BatchNorm trial, well inside both
    # probes' IQR (the third column): a tie in latency, so accuracy decides and it is dominated.
    pruner = ParetoHalving(eta=3)
    others = [(0.30, 0.663, 0.004), (0.32, 0.80, 0.01), (0.31, 0.90, 0.01)]
    assert nondominated_ranks(np.array([*others, (0.15, 0.662, 0.005)])).tolist() == [0, 0, 1, 1]
    assert not pruner.keeps((0.15, 0.662, 0.005), others)
    # Without recorded spreads the 0.001 ms counts: the fastest trial is on the front, goes on.
    assert nondominated_ranks(np.array([*others, (0.15, 0.662, 0.0)])[:, :2]).tolist()[-1] == 0
    assert pruner.keeps((0.15, 0.662), [(a, lat) for a, lat, _ in others])
    # Measurably faster (beyond the larger IQR), it goes on with its spread too.
    assert pruner.keeps((0.15, 0.640, 0.005), others)


def test_curves_of_a_synthetic_study() -> None:
    """Replay synthetic learning curves through the rule, in arrival order."""
    pruner = ParetoHalving(eta=3)
    rng = np.random.default_rng(0)
    rungs = pruner.rungs(9)
    finals = rng.uniform(0.3, 0.8, 30)
    latency = rng.choice([1.0, 1.5, 2.0], 30)
    # Curves rise towards their final value; a trial's rank is kept along its curve.
    curves = [[f * (1 - 0.5 ** (e + 1)) for e in range(9)] for f in finals]
    reached: dict[int, list[tuple[float, float]]] = {r: [] for r in rungs}
    stopped_at: dict[int, int] = {}
    for index, curve in enumerate(curves):
        for rung in rungs:
            point = (curve[rung - 1], float(latency[index]))
            kept = pruner.keeps(point, reached[rung])
            reached[rung].append(point)
            if not kept:
                stopped_at[index] = rung
                break
    survivors = [i for i in range(30) if i not in stopped_at]
    assert 0 < len(survivors) < 15, "most trials are stopped early"
    best = int(np.argmax(finals))
    # The best trial overall goes on unless it met an even better one before it at its speed.
    assert best in survivors or any(finals[j] >= finals[best] for j in range(best))
    assert all(rung in rungs for rung in stopped_at.values())


@pytest.fixture
def learnable_npz(tmp_path: Path) -> Path:
    """Small images whose class is their brightness: a tiny CNN learns part of it in two
    batches, so trials of different settings end an epoch at different accuracies. (On random
    labels every trial predicts one class and most of them tie, which no pruner can split.)"""
    rng = np.random.default_rng(0)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n)
        pixels = labels[:, None, None, None] * 25 + rng.integers(0, 30, (n, 32, 32, 3))
        return pixels.astype(np.uint8), labels.astype(np.uint8)

    x_train, y_train = images(160)
    x_test, y_test = images(32)
    path = tmp_path / "learnable.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.mark.xdist_group("processes")
@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_prune_one_study(pg_url: str, learnable_npz: Path, tmp_path: Path) -> None:
    spec = Path(tiny_spec(tmp_path, "halving", 8))
    body = spec.read_text().replace("epochs = 1\n", "epochs = 2\n")
    body = body.replace("val_size = 32\n", "val_size = 96\n")
    body = body.replace("low = 0.01, high = 0.1", "low = 0.0001, high = 0.1")
    # One architecture, so one latency: at a rung a trial is dominated exactly when an earlier
    # one there is more accurate. With eta 10 and fewer than 20 trials at the rung, only the
    # best one and any undominated one go on, so a trial stops unless its accuracy is at least
    # the best so far.
    body = body.replace("seed = 0\n", 'seed = 0\npruner = "pareto"\npruner_eta = 10\n', 1)
    spec.write_text(body)
    create(str(spec), pg_url, learnable_npz)
    # The first trials are set, so some trial surely stops: trials 0 and 1 (one per worker) learn
    # part of the task in their first epoch; trial 2 starts when one of them has finished, and
    # its learning rate is too small to move the network off its initial guess. (Left to the
    # sampler, all 8 trials each at least as accurate as the ones before happened now and then:
    # at 96 validation images, accuracies tie often.)
    storage = open_storage(pg_url)
    stored = load_study(storage, "halving")
    for optimizer, lr in [("adam", 0.0015), ("adam", 0.0015), ("nesterov", 0.0002)]:
        stored.study.enqueue_trial({"optimizer": optimizer, "lr": lr})
    workers = [
        start_cli("worker", "--storage", pg_url, "--study-name", "halving", log=tmp_path / f"w{i}")
        for i in range(2)
    ]
    assert wait_all(workers, 300) == [0, 0], [p.read_text() for p in tmp_path.glob("w*")]
    trials = stored.study.get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert 2 in {t.number for t in pruned}, [
        (t.params, t.user_attrs["val_accuracy_curve"]) for t in trials
    ]
    at_rung = [t.user_attrs["val_accuracy_curve"][0] for t in trials]
    for trial in pruned:  # only a more accurate trial dominates one of the same latency
        assert trial.user_attrs["val_accuracy_curve"][0] < max(at_rung)
    assert sum(counts_toward_target(t) for t in trials) >= 8, "pruned trials count"
    for trial in pruned:
        assert trial.user_attrs["rung"] == 0 and trial.user_attrs["epoch"] == 1
        assert len(trial.user_attrs["val_accuracy_curve"]) == 1
        # The table shows the head; the whole reason sits with the trial's details.
        assert trial.user_attrs["stop_reason"] == "stopped at epoch 1"
        reason = flat(trial.user_attrs, trial.system_attrs)["stop_reason"]
        assert reason.startswith("stopped at epoch 1: ") and "at rung 0" in reason
        assert trial.user_attrs["latency_ms"] > 0 and "val_accuracy" in trial.user_attrs
    for trial in complete:
        assert len(trial.user_attrs["val_accuracy_curve"]) == 2
        assert trial.user_attrs["val_accuracy_curve"][-1] == trial.values[0]
    # A pruned trial is never on the front, not even one with the best accuracy so far.
    front = {r.number for r in queries.best(stored)}
    assert front and front <= {t.number for t in complete}
    shown = invoke("best", "--storage", pg_url, "--study-name", "halving", "--format", "json")
    assert shown.returncode == 0
    assert {t["number"] for t in json.loads(shown.stdout)} == front
    storage.engine.dispose()


def test_a_trial_is_judged_against_trials_started_before_it(tmp_path: Path) -> None:
    """Two trials at a rung at the same instant must not stop each other: each sees only the
    trials numbered below it."""
    from optuna.trial import create_trial

    from hpo.core.spec import validate
    from hpo.store.connect import open_storage
    from hpo.store.queries import rung_points
    from hpo.store.studies import create_or_load_study

    stored = create_or_load_study(
        validate({"study": {"name": "rungs"}}), open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    )
    for accuracy in (0.3, 0.3, 0.5):  # trials 0 and 1 are equal at epoch 1
        attrs = {"val_accuracy_curve": [accuracy], "latency_ms": 0.4}
        if accuracy == 0.5:  # the others recorded no spread: their latency compares exactly
            attrs["latency_iqr_ms"] = 0.02
        stored.study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs=attrs))
    assert rung_points(stored, 1, before=0) == []
    assert rung_points(stored, 1, before=1) == [(0.3, 0.4, 0.0)]
    assert sorted(rung_points(stored, 1, before=3)) == [
        (0.3, 0.4, 0.0),
        (0.3, 0.4, 0.0),
        (0.5, 0.4, 0.02),
    ]
    assert rung_points(stored, 2, before=3) == []  # nobody reached epoch 2


def test_a_pruner_without_a_rung_before_the_last_epoch_is_noted() -> None:
    from hpo.search.pruning import idle_pruner_note

    assert idle_pruner_note("pareto", 3, 3, 20) is None  # rungs at 3 and 9
    assert idle_pruner_note("none", 100, 3, 1) is None
    assert idle_pruner_note("pareto", 5, 3, 5) == (
        "hpo: note: [study] pruner_min_epochs = 5 is not below [train] epochs = 5: the pareto "
        "pruner has no rung before the last epoch and stops no trial"
    )
