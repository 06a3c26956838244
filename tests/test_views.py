"""`hpo db views` on SQLite and PostgreSQL: the documented query returns decoded rows."""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from hpo.core.results import pareto_front
from hpo.core.trial_attrs import flat
from hpo.store.queries import result_of
from hpo.store.views import distribution_kind
from tests import synthetic
from tests.conftest import FinishedStudy, invoke

QUERY = "SELECT * FROM hpo_trials WHERE latency_ms < 2 ORDER BY accuracy DESC LIMIT 5"
PG_ADMIN = os.environ.get("HPO_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def sqlite_rows(db: Path, query: str = QUERY) -> list[dict[str, Any]]:
    """Run `query` with the sqlite3 module, rows as dicts."""
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(query).fetchall()]


def postgres_rows(url: str, query: str = QUERY) -> list[dict[str, Any]]:
    """Run `query` with psycopg (as psql would), rows as dicts."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row) as connection:
        return list(connection.execute(query).fetchall())


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; skips when the server is unreachable."""
    import psycopg
    from psycopg import sql

    name = f"hpo_views_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable ({PG_ADMIN}): {str(exc).strip()}")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


def create_views(url: str) -> list[dict[str, Any]]:
    """`hpo db views` through the real CLI; returns the columns it reports."""
    result = invoke("db", "views", "--storage", url, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["view"] == "hpo_trials"
    return report["columns"]


def expected_synthetic() -> list[tuple[str, int, float, float]]:
    """(study, number, accuracy, latency_ms) that QUERY must return, from the synthetic rows."""
    rows = [
        ("synthetic", number, *row.values)
        for number, row in enumerate(synthetic.ROWS)
        if row.values is not None
    ]
    rows += [(synthetic.ODD_STUDY, n, *values) for n, (_, values) in enumerate(synthetic.ODD_ROWS)]
    fast = [r for r in rows if r[3] < 2]
    return sorted(fast, key=lambda r: -r[2])[:5]


def check_synthetic(rows: list[dict[str, Any]]) -> None:
    """The query's rows are the expected trials, with every param decoded to its value."""
    assert [(r["study"], r["number"], r["accuracy"], r["latency_ms"]) for r in rows] == (
        expected_synthetic()
    )
    for row in rows:
        assert row["state"] == "COMPLETE"
        if row["study"] == synthetic.ODD_STUDY:
            params, _ = synthetic.ODD_ROWS[row["number"]]
            assert row["lr"] == pytest.approx(0.1)  # a fixed (categorical) value, decoded
            assert row[synthetic.ODD_PARAM] == params[synthetic.ODD_PARAM]
            assert row["norm"] is None
            continue
        params = synthetic.ROWS[row["number"]].params
        for name in ("model", "norm", "optimizer", "batch_size", "width"):
            assert row[name] == params[name], name  # names, not choice indices
        assert row["lr"] == pytest.approx(params["lr"])
        assert row["depth"] == params.get("depth")
        assert isinstance(row["batch_size"], int) and isinstance(row["norm"], str)


def test_view_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "views.db"
    synthetic.make_studies(f"sqlite:///{db}")
    columns = create_views(f"sqlite:///{db}")
    names = [c["name"] for c in columns]
    assert names[:5] == ["study", "number", "state", "accuracy", "latency_ms"]
    assert {"norm", "optimizer", "lr", "batch_size", "depth", synthetic.ODD_PARAM} <= set(names)
    check_synthetic(sqlite_rows(db))
    # The view is live: it sees the failed trial and every study, and running it twice is fine.
    create_views(f"sqlite:///{db}")
    failed = sqlite_rows(db, "SELECT state, accuracy, norm FROM hpo_trials WHERE state = 'FAIL'")
    assert failed == [{"state": "FAIL", "accuracy": None, "norm": "layer"}]
    with sqlite3.connect(db) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM trials").fetchone()
    assert count == len(synthetic.ROWS) + len(synthetic.ODD_ROWS)


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        ("CREATE TABLE hpo_trials (note TEXT)", "a table named hpo_trials is in this database"),
        ("CREATE VIEW hpo_trials AS SELECT 1 AS note", "a view named hpo_trials that hpo did not"),
    ],
    ids=["table", "view"],
)
def test_a_users_own_hpo_trials_is_kept(own: str, expected: str, tmp_path: Path) -> None:
    db = tmp_path / "views.db"
    synthetic.make_studies(f"sqlite:///{db}")
    with sqlite3.connect(db) as connection:
        connection.execute(own)
    result = invoke("db", "views", "--storage", f"sqlite:///{db}")
    assert result.returncode == 2 and result.stderr.startswith(f"hpo: error: {expected}")
    assert sqlite_rows(db, "SELECT * FROM hpo_trials") in ([], [{"note": 1}]), "kept as it was"


@pytest.mark.postgres
def test_view_on_postgresql(pg_url: str) -> None:
    synthetic.make_studies(pg_url)
    create_views(pg_url)
    check_synthetic(postgres_rows(pg_url))
    create_views(pg_url)  # replaces the view
    failed = postgres_rows(pg_url, "SELECT state, norm FROM hpo_trials WHERE accuracy IS NULL")
    assert failed == [{"state": "FAIL", "norm": "layer"}]


def test_views_on_missing_database_exits_2(tmp_path: Path) -> None:
    result = invoke("db", "views", "--storage", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.returncode == 2
    assert result.stderr.startswith("hpo: error: no SQLite database")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("distribution", "kind"),
    [
        ('{"name": "CategoricalDistribution", "attributes": {"choices": ["a", 1]}}', "text"),
        ('{"name": "CategoricalDistribution", "attributes": {"choices": [14, 20]}}', "integer"),
        ('{"name": "CategoricalDistribution", "attributes": {"choices": [1, 0.5]}}', "float"),
        ('{"name": "CategoricalDistribution", "attributes": {"choices": [true]}}', "text"),
        ('{"name": "IntDistribution", "attributes": {"low": 1, "high": 3}}', "integer"),
        ('{"name": "FloatDistribution", "attributes": {"low": 0, "high": 1}}', "float"),
        ("not json", "text"),
    ],
)
def test_distribution_kind(distribution: str, kind: str) -> None:
    assert distribution_kind(distribution) == kind


def finished_rows_match(rows: list[dict[str, Any]], study: optuna.Study) -> None:
    """Rows of a real study carry the same decoded params as Optuna reports."""
    trials = {t.number: t for t in study.get_trials()}
    for row in rows:
        trial = trials[row["number"]]
        assert row["accuracy"] == pytest.approx(trial.values[0])
        assert row["latency_ms"] == pytest.approx(trial.values[1])
        # Params are the searched dimensions only (the spec fixes the model: no column for it).
        assert "model" not in trial.params and "model" not in row
        for name in ("norm", "optimizer", "scheduler"):
            assert row[name] == trial.params[name]
        assert row["lr"] == pytest.approx(trial.params["lr"])
        attrs = trial.user_attrs
        assert row["test_accuracy"] == pytest.approx(attrs["test_accuracy"])
        assert row["latency_iqr_ms"] == pytest.approx(attrs["latency_iqr_ms"])
        assert attrs["latency_iqr_ms"] == pytest.approx(
            flat(attrs, trial.system_attrs)["latency"]["iqr_ms"], rel=1e-3
        )
        assert row["latency_ratio"] == pytest.approx(attrs["latency_ratio"])
        assert (row["n_params"], row["macs"]) == (attrs["n_params"], attrs["macs"])
        assert row["fail_reason"] is None and row["stop_reason"] is None
        assert row["has_model"] == int(any(k.startswith("artifacts:") for k in trial.system_attrs))
    # The front of `hpo best`: latencies within their IQR are equal (`hpo.core.dominance`).
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    front = {r.number for r in pareto_front([result_of(t) for t in complete])}
    assert {r["number"] for r in rows if r["on_front"] == 1} == front & {r["number"] for r in rows}


@pytest.mark.postgres
def test_view_reasons_and_front_on_both_databases(tmp_path: Path, pg_url: str) -> None:
    """A failed trial's reason, a pruned trial's reason, and the front, read through the view."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    for url in (f"sqlite:///{tmp_path / 'r.db'}", pg_url):
        study = optuna.create_study(
            study_name="reasons", storage=url, directions=["maximize", "minimize"]
        )
        lr = {"lr": FloatDistribution(1e-3, 1.0, log=True)}
        points = [(0.6, 0.3), (0.7, 0.5), (0.65, 0.6), (0.6, 0.3)]  # the third is dominated
        for accuracy, latency in points:
            study.add_trial(
                create_trial(params={"lr": 0.1}, distributions=lr, values=[accuracy, latency])
            )
        reasons = {"fail_reason": 'diverged: loss "nan" at step 3', "stop_reason": "over budget"}
        for key, state in (("fail_reason", TrialState.FAIL), ("stop_reason", TrialState.PRUNED)):
            # The stopped trial's latency was measured (0.25 ms, faster than any on the front).
            measured = {"latency_ms": 0.25} if state == TrialState.PRUNED else {}
            study.add_trial(
                create_trial(
                    state=state,
                    params={"lr": 0.1},
                    distributions=lr,
                    user_attrs={key: reasons[key], **measured},
                )
            )
        create_views(url)
        query = (
            "SELECT number, on_front, latency_ms, fail_reason, stop_reason FROM hpo_trials "
            "ORDER BY number"
        )
        rows = (
            sqlite_rows(tmp_path / "r.db", query)
            if url.startswith("sqlite")
            else postgres_rows(url, query)
        )
        assert [r["on_front"] for r in rows] == [1, 1, 0, 1, 0, 0], "equal points are both on it"
        assert rows[4]["fail_reason"] == reasons["fail_reason"], "JSON strings are decoded"
        assert rows[5]["stop_reason"] == reasons["stop_reason"] and rows[5]["fail_reason"] is None
        # A stopped trial shows the latency it measured; no objective, so never on the front.
        assert [r["latency_ms"] for r in rows[4:]] == [None, 0.25]


@pytest.mark.postgres
def view_front(url: str, sqlite_file: Path) -> set[int]:
    """(Re)create the view on the database at `url` (SQLite: `sqlite_file`) and return the
    numbers of its trials with on_front = 1."""
    create_views(url)
    query = "SELECT number, on_front FROM hpo_trials ORDER BY number"
    rows = sqlite_rows(sqlite_file, query) if "sqlite" in url else postgres_rows(url, query)
    return {r["number"] for r in rows if r["on_front"] == 1}


def test_on_front_counts_latencies_within_their_iqr_as_equal(tmp_path: Path, pg_url: str) -> None:
    """on_front is the front `hpo best` shows (`hpo.core.dominance`): latencies within the
    larger IQR are equal, and a trial that recorded none compares exactly."""
    from optuna.trial import TrialState, create_trial

    from hpo.store import queries
    from hpo.store.connect import StoredStudy, open_storage

    rng = np.random.default_rng(0)
    # A no-norm trial 0.001 ms faster than a far more accurate BatchNorm one, within both IQRs;
    # one that recorded no IQR, within the IQR of a more accurate one (the larger IQR counts);
    # then, measurably slower, near ties of every kind, some without a recorded IQR.
    points: list[tuple[float, float, float | None]] = [
        (0.663, 0.663, 0.004),
        (0.245, 0.662, 0.005),
        (0.55, 0.650, None),
        (0.60, 0.655, 0.01),
    ]
    for _ in range(40):
        spread = rng.choice([-1.0, 0.0, 0.002, 0.005, 0.02])
        points.append(
            (
                float(rng.choice([0.3, 0.4, 0.5, 0.6, 0.7])),
                round(float(rng.uniform(0.7, 0.8)), 3),
                None if spread < 0 else float(spread),
            )
        )
    for url in (f"sqlite:///{tmp_path / 'front.db'}", pg_url):
        storage = open_storage(url)
        study = optuna.create_study(
            study_name="front", storage=storage, directions=["maximize", "minimize"]
        )
        for accuracy, latency, spread in points:
            attrs = {} if spread is None else {"latency_iqr_ms": spread}
            study.add_trial(create_trial(values=[accuracy, latency], user_attrs=attrs))
        study.add_trial(create_trial(state=TrialState.FAIL))
        on_front = view_front(url, tmp_path / "front.db")
        assert on_front == {r.number for r in queries.best(StoredStudy.of(study, storage))}
        assert 0 in on_front and not on_front & {1, 2, 3}
        assert on_front != {t.number for t in study.best_trials}, "the exact front differs"
        storage.engine.dispose()


def test_every_front_leaves_out_trials_over_the_studys_budget(tmp_path: Path, pg_url: str) -> None:
    """A budget lowered after trials completed: `hpo best`, the view's on_front and the front
    the report and dashboard draw are the trials within it, the same ones."""
    from optuna.trial import create_trial

    from hpo.present.report import build_report
    from hpo.present.study_view import study_view
    from hpo.store import queries
    from hpo.store.connect import StoredStudy, open_storage

    points = [(0.9, 0.8), (0.7, 0.65), (0.6, 0.5), (0.5, 0.4), (0.4, 0.45)]
    for url in (f"sqlite:///{tmp_path / 'budget.db'}", pg_url):
        storage = open_storage(url)
        study = optuna.create_study(
            study_name="budget", storage=storage, directions=["maximize", "minimize"]
        )
        study.set_user_attr("spec", {"study": {"name": "budget", "max_latency_ms": 0.7}})
        for accuracy, latency in points:
            study.add_trial(create_trial(values=[accuracy, latency]))
        on_front = view_front(url, tmp_path / "budget.db")
        stored = StoredStudy.of(study, storage)
        assert on_front == {1, 2, 3}, "trial 0 is over the budget"
        assert on_front == {r.number for r in queries.best(stored)}
        assert on_front == {r.number for r in study_view(stored).front}
        report = build_report(stored)
        assert {r.number for r in report.front} == on_front
        assert 0 not in {number for number, _ in report.history}, "nor its hypervolume"
        storage.engine.dispose()


def test_a_budget_written_none_is_no_budget_in_every_front(tmp_path: Path, pg_url: str) -> None:
    """`max_latency_ms = "none"` is stored as null: the view's SQL reads no budget (not the
    string, which PostgreSQL cannot cast and SQLite reads as 0)."""
    from optuna.trial import create_trial

    from hpo.core.spec import apply_overrides, validate
    from hpo.core.trial_attrs import SPEC_ATTR
    from hpo.store import queries
    from hpo.store.connect import StoredStudy, open_storage

    raw = apply_overrides(
        {"study": {"name": "nb", "max_latency_ms": 0.5}}, ["study.max_latency_ms=none"]
    )
    for url in (f"sqlite:///{tmp_path / 'none.db'}", pg_url):
        storage = open_storage(url)
        study = optuna.create_study(
            study_name="nb", storage=storage, directions=["maximize", "minimize"]
        )
        study.set_user_attr(SPEC_ATTR, validate(raw).raw)
        for accuracy, latency in [(0.9, 0.8), (0.6, 0.4), (0.5, 0.45)]:
            study.add_trial(create_trial(values=[accuracy, latency]))
        stored = StoredStudy.of(study, storage)
        assert {r.number for r in queries.best(stored)} == {0, 1}
        assert view_front(url, tmp_path / "none.db") == {0, 1}
        storage.engine.dispose()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # asked by hand
def test_progress_counts_the_trials_the_workers_count(tmp_path: Path) -> None:
    """An interrupted trial (queued again) and one over the budget are not among n_trials: the
    report's and dashboard's status line says what the workers say, not "4 of 2"."""
    from optuna.trial import TrialState, create_trial

    from hpo.core.spec import validate
    from hpo.core.trial_attrs import FAIL_REASON_ATTR, SPEC_ATTR, STOP_REASON_ATTR
    from hpo.present.study_view import study_view
    from hpo.store.connect import StoredStudy, open_storage
    from hpo.store.outcomes import OVER_BUDGET

    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}")
    study = optuna.create_study(
        study_name="p", storage=storage, directions=["maximize", "minimize"]
    )
    spec = validate({"study": {"name": "p", "n_trials": 2, "max_latency_ms": 1.0}})
    study.set_user_attr(SPEC_ATTR, spec.raw)
    stored = StoredStudy.of(study, storage)
    study.add_trial(create_trial(values=[0.6, 0.5]))
    study.add_trial(
        create_trial(state=TrialState.FAIL, user_attrs={FAIL_REASON_ATTR: "interrupted"})
    )
    reason = f"{OVER_BUDGET}: 2.00 ms > 1.00 ms"
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={STOP_REASON_ATTR: reason}))
    unfinished = study_view(stored).progress
    assert not unfinished.done
    assert unfinished.line().startswith("unfinished: 1 of 2 trials, 1 more over the latency")
    study.add_trial(create_trial(values=[0.7, 0.6]))
    # A dead worker's trial, RUNNING with no heartbeat long past the grace period, is not
    # running to the workers, nor here.
    dead = study.ask()
    started = datetime.datetime.now() - datetime.timedelta(hours=1)
    with sqlite3.connect(tmp_path / "p.db") as connection:
        connection.execute(
            "UPDATE trials SET datetime_start = ? WHERE number = ?", (started, dead.number)
        )
    progress = study_view(stored).progress
    assert progress.done
    assert progress.line() == (
        "finished: 2 of 2 trials, 1 more over the latency budget (not trained); "
        "the front last moved at trial 3"
    )
    storage.engine.dispose()


@pytest.mark.slow
def test_view_on_a_finished_quickstart_study(finished_study: FinishedStudy, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    db.write_bytes(finished_study.db.read_bytes())  # the view is the only change; keep it apart
    url = f"sqlite:///{db}"
    create_views(url)
    rows = sqlite_rows(db, "SELECT * FROM hpo_trials ORDER BY accuracy DESC")
    assert len(rows) == finished_study.n_trials
    study = optuna.load_study(study_name=finished_study.name, storage=url)
    finished_rows_match(rows, study)
    fast = sqlite_rows(db)
    assert [r["number"] for r in fast] == [
        r["number"] for r in rows if r["latency_ms"] is not None and r["latency_ms"] < 2
    ][:5]


@pytest.mark.slow
@pytest.mark.postgres
def test_view_on_a_finished_study_copied_to_postgresql(
    finished_study: FinishedStudy, pg_url: str
) -> None:
    from hpo.store.connect import open_storage

    target = open_storage(pg_url)
    optuna.copy_study(
        from_study_name=finished_study.name,
        from_storage=finished_study.url,
        to_storage=target,
    )
    target.engine.dispose()
    create_views(pg_url)
    rows = postgres_rows(pg_url, "SELECT * FROM hpo_trials ORDER BY accuracy DESC")
    assert len(rows) == finished_study.n_trials
    finished_rows_match(rows, optuna.load_study(study_name=finished_study.name, storage=pg_url))


def test_best_and_the_view_decode_the_design_options(tmp_path: Path) -> None:
    """Trials over pooling, kernels, bottleneck, attention, DenseNet and loss (suggested by hpo's
    own search space, no training): `hpo best` and the view give each value, never an index."""
    from hpo.core.spec import validate
    from hpo.search.space import suggest
    from hpo.store.connect import open_storage
    from hpo.store.studies import create_or_load_study

    search = {
        "model": ["vgg", "densenet"],
        "pool": ["max", "avg", "conv"],
        "kernel": ["3x3", "5x5"],
        "bottleneck": [0.0, 0.25],
        "attention": ["none", "se"],
        "se_ratio": [4, 16],
        "growth_rate": [8, 12],
        "dense_order": ["pre", "post"],
        "loss": ["cross_entropy", "nll", "multi_margin", "bce", "mse", "kl"],
    }
    url = f"sqlite:///{tmp_path / 'design.db'}"
    storage = open_storage(url)
    spec = validate({"study": {"name": "design", "n_trials": 12}, "search": search})
    study = create_or_load_study(spec, storage).study
    study.sampler = optuna.samplers.RandomSampler(seed=3)
    study.optimize(lambda t: (suggest(t, spec).width * t.number / 20, 1.0 + t.number), n_trials=12)
    storage.engine.dispose()
    trials = {t.number: t for t in study.get_trials()}

    create_views(url)
    rows = sqlite_rows(tmp_path / "design.db", "SELECT * FROM hpo_trials ORDER BY number")
    assert len(rows) == 12
    seen = set()
    for row in rows:
        params = trials[row["number"]].params
        for name in search:
            assert row[name] == params.get(name), (name, row)  # values, never choice indices
            seen.add((name, row[name]))
    assert {("pool", "conv"), ("attention", "se"), ("model", "densenet")} <= seen

    result = invoke("best", "--study-name", "design", "--storage", url, "--format", "json")
    assert result.returncode == 0, result.stderr
    for shown in json.loads(result.stdout):
        trial = trials[shown["number"]]
        # Searched params and the fixed rest of the configuration, all decoded.
        assert shown["params"] == {**trial.user_attrs["config"], **trial.params}
        assert shown["params"]["loss"] in search["loss"]
        assert "pool" in shown["params"]
        assert ("kernel" in shown["params"]) == (shown["params"]["model"] == "vgg")


def test_a_param_named_like_a_column_but_for_case_gets_its_own(tmp_path: Path) -> None:
    """SQL ignores case in names: a param `Accuracy` is not a second `accuracy` column."""
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    db = tmp_path / "case.db"
    study = optuna.create_study(
        study_name="case", storage=f"sqlite:///{db}", directions=["maximize", "minimize"]
    )
    names = ("Accuracy", "Width", "width")
    study.add_trial(
        create_trial(
            values=[0.5, 1.0],
            params={name: value for value, name in enumerate(names, start=3)},
            distributions={name: IntDistribution(0, 9) for name in names},
        )
    )
    columns = [c["name"] for c in create_views(f"sqlite:///{db}")]
    assert {"accuracy", "param_Accuracy", "Width", "param_width"} <= set(columns), columns
    (row,) = sqlite_rows(db, "SELECT accuracy, param_Accuracy, Width, param_width FROM hpo_trials")
    assert row == {"accuracy": 0.5, "param_Accuracy": 3, "Width": 4, "param_width": 5}


def test_the_view_has_its_columns_in_the_order_it_reports(tmp_path: Path) -> None:
    db = tmp_path / "order.db"
    synthetic.make_studies(f"sqlite:///{db}")
    reported = [c["name"] for c in create_views(f"sqlite:///{db}")]
    with sqlite3.connect(db) as connection:
        cursor = connection.execute("SELECT * FROM hpo_trials LIMIT 1")
        assert [column[0] for column in cursor.description] == reported
