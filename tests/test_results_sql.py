"""The SQL read path of `hpo best` / `hpo studies` gives what Optuna's get_trials gives."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from hpo.core import results
from hpo.store import queries
from hpo.store.connect import StoredStudy, open_storage
from tests.pg import pg_url

__all__ = ["pg_url"]  # fixture used below

DISTRIBUTIONS = {
    "optimizer": CategoricalDistribution(["nesterov", "adam", "adamw"]),
    "lr": FloatDistribution(1e-3, 0.2, log=True),
    "batch_size": IntDistribution(32, 256, step=32),
    "augment": CategoricalDistribution([True, False]),
}


def fill(study: optuna.Study) -> None:
    """Trials of every kind: with and without attributes, ties, inf latency, failures."""
    trials = []
    for i in range(40):
        params = {
            "optimizer": ["nesterov", "adam", "adamw"][i % 3],
            "lr": 1e-3 * (1 + i),
            "batch_size": 32 * (1 + i % 8),
            "augment": i % 2 == 0,
        }
        attrs = {"test_accuracy": i / 50, "n_folded": i % 4, "latency_backend": "eager"}
        if i % 3:
            attrs["latency_ratio"] = 1 + (i * 7 % 11) / 10
        latency = math.inf if i == 5 else 0.1 + (i * 13 % 17) / 10
        trials.append(
            create_trial(
                values=[(i * 29 % 37) / 37, latency],
                params=params,
                distributions=DISTRIBUTIONS,
                user_attrs=attrs,
            )
        )
    trials.append(create_trial(state=TrialState.FAIL, params={}, distributions={}))
    trials.append(create_trial(values=[0.99, 5.0], params={}, distributions={}))  # no params
    study.add_trials(trials)


def check_same(url: str) -> None:
    storage = open_storage(url)
    study = optuna.create_study(
        storage=storage, study_name="r", directions=["maximize", "minimize"]
    )
    fill(study)
    stored = StoredStudy.of(study, storage)
    other = optuna.create_study(
        storage=open_storage(url), study_name="other", directions=["maximize", "minimize"]
    )
    other.add_trial(create_trial(values=[1.0, 0.01], params={}, distributions={}))

    complete = study.get_trials(states=(TrialState.COMPLETE,))
    expected = [queries.result_of(t) for t in complete]
    fast = queries.completed(stored)
    assert fast == expected
    first = {"optimizer": "nesterov", "lr": 1e-3, "batch_size": 32, "augment": True}
    assert fast[0].params == first, "categorical params are decoded from their stored index"
    for rank_by in results.RANK_KEYS:
        front = results.pareto_front(expected, rank_by)
        assert queries.best(stored, None, rank_by) == front and len(front) >= 2
        for budget in (0.5, 1.2, math.inf):
            assert queries.best(stored, budget, rank_by) == results.within_budget(
                expected, budget, rank_by
            )
    overviews = {o.name: o for o in queries.study_overviews(open_storage(url))}
    assert overviews["r"].n_trials == 42 and overviews["r"].states == {"COMPLETE": 41, "FAIL": 1}
    assert overviews["other"].states == {"COMPLETE": 1}


def test_sql_reads_match_optuna_on_sqlite(tmp_path: Path) -> None:
    check_same(f"sqlite:///{tmp_path / 'r.db'}")


@pytest.mark.postgres
def test_sql_reads_match_optuna_on_postgres(pg_url: str) -> None:
    check_same(pg_url)
