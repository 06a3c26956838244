"""Latency probes: an untrained network times like the trained one, probes are shared by worker
processes through the database, and the latency budget stops over-budget architectures before
training (or the whole run, when nothing can fit)."""

from __future__ import annotations

import html
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial

from hpo.core.spec import DataSection, LatencySection, validate
from hpo.core.trial_attrs import flat
from hpo.core.trial_config import TrialConfig
from hpo.measure.fused import runtime_of
from hpo.measure.fusion import fold_batchnorm
from hpo.measure.probe import measure_network_latency, seeded
from hpo.measure.protocol import Protocol, measure_runners
from hpo.store import queries
from hpo.store.connect import open_storage
from hpo.store.studies import create_or_load_study
from hpo.train.data import load_raw, prepare
from hpo.train.loop import train
from hpo.train.model import build_network
from tests.conftest import ROOT, invoke
from tests.pg import pg_url
from tests.test_workers import tiny_spec

__all__ = ["pg_url"]  # fixture used below

CPU = torch.device("cpu")
WIDTHS = (0.25, 2.0)  # a fast and a slow simple_cnn: latencies ~10x apart


def test_a_probe_times_the_trained_network_within_its_spread(tiny_npz: Path) -> None:
    config = TrialConfig.from_params({"model": "simple_cnn", "norm": "batch", "width": 1.0})
    untrained = seeded(lambda: build_network(config, 10)).eval()
    trained = seeded(lambda: build_network(config, 10))
    section = DataSection(dataset=str(tiny_npz), val_size=16)
    train(trained, prepare(load_raw(section), section, CPU), config, epochs=1, seed=0)
    trained.eval()
    latency = LatencySection()
    runtimes = [runtime_of(fold_batchnorm(m)[0], latency, CPU) for m in (untrained, trained)]
    probe, after = measure_runners([r.run for r in runtimes], Protocol.from_section(latency), CPU)
    # Interleaved rounds: the two medians differ by less than the spread of either.
    assert abs(probe.median_ms - after.median_ms) <= max(probe.iqr_ms, after.iqr_ms)


def widths_spec(tmp_path: Path, name: str, budget: float | None, n_trials: int) -> str:
    body = Path(tiny_spec(tmp_path, name, n_trials)).read_text()
    body = body.replace("[search]\n", f"[search]\nwidth = {list(WIDTHS)}\n")
    body = body.replace("width = 0.25\n", "")
    # The budget comes from CPU probes, so the study must time on the CPU too (not CUDA).
    body = body.replace("[train]\n", '[train]\ndevice = "cpu"\n')
    if budget is not None:
        body = body.replace("seed = 0\n", f"seed = 0\nmax_latency_ms = {budget}\n", 1)
    path = tmp_path / f"{name}-budget.toml"
    path.write_text(body)
    return str(path)


def probe_of_width(width: float, spec_path: str) -> float:
    spec = validate(_read(spec_path))
    config = TrialConfig.from_params({"model": "simple_cnn", "norm": "batch", "width": width})
    network = seeded(lambda: build_network(config, 10))
    return measure_network_latency(network, spec.latency, CPU)["latency"]["median_ms"]


def _read(path: str) -> dict:
    import tomllib

    return tomllib.loads(Path(path).read_text())


@pytest.mark.slow
def test_over_budget_architectures_are_never_trained(tmp_path: Path, tiny_npz: Path) -> None:
    probe_spec = widths_spec(tmp_path, "probe", None, 1)
    fast, slow = (probe_of_width(w, probe_spec) for w in WIDTHS)
    assert slow > 3 * fast
    budget = round(math.sqrt(fast * slow), 4)
    spec = widths_spec(tmp_path, "budget", budget, 3)
    db = tmp_path / "b.db"
    result = invoke("run", spec, "--data", str(tiny_npz), "--storage", f"sqlite:///{db}")
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="budget", storage=f"sqlite:///{db}").trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    over = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(complete) == 3, "over-budget trials do not count toward n_trials"
    assert all(t.params["width"] == WIDTHS[0] and t.values[1] <= budget for t in complete)
    assert over, "the random sampler proposed the slow width at least once"
    for trial in over:
        assert trial.params["width"] == WIDTHS[1]
        # A short head in the table; the whole reason with the trial's details.
        assert trial.user_attrs["stop_reason"] == "over latency budget"
        reason = flat(trial.user_attrs, trial.system_attrs)["stop_reason"]
        assert reason.startswith("over latency budget: ") and f"> {budget:.2f} ms" in reason
        assert trial.constraints["latency_budget"] > 0, "marked infeasible for the samplers"
        assert "train_seconds" not in trial.user_attrs, "never trained"
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        assert seconds <= 2.0, f"an over-budget proposal cost {seconds:.1f} s"
    assert all(t.constraints["latency_budget"] <= 0 for t in complete)
    assert "PRUNED: over latency budget" in result.stdout
    out = tmp_path / "report"
    report = invoke(
        "report", "--storage", f"sqlite:///{db}", "--study-name", "budget", "--out", str(out)
    )
    assert report.returncode == 0, report.stderr
    reason = flat(over[0].user_attrs, over[0].system_attrs)["stop_reason"]
    assert html.escape(reason) in (out / "index.html").read_text()


def test_a_budget_nothing_meets_ends_the_run_with_one_line(tmp_path: Path, tiny_npz: Path) -> None:
    db = tmp_path / "n.db"
    spec = widths_spec(tmp_path, "none", 0.0001, 3)
    result = invoke("run", spec, "--data", str(tiny_npz), "--storage", f"sqlite:///{db}")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "max_latency_ms = 0.0001: no architecture of the search space fits" in result.stderr
    assert "the fastest probed is" in result.stderr
    trials = optuna.load_study(study_name="none", storage=f"sqlite:///{db}").trials
    assert all(t.state == TrialState.PRUNED for t in trials) and len(trials) <= 2 * len(WIDTHS)


def test_best_of_a_budgeted_study_is_its_feasible_front(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    spec = validate({"study": {"name": "f", "max_latency_ms": 1.0}, "search": {"lr": [0.1]}})
    stored = create_or_load_study(spec, open_storage(url))
    distributions = {"lr": optuna.distributions.CategoricalDistribution([0.1])}
    for values in ([0.5, 0.4], [0.6, 0.9], [0.9, 1.5]):  # the last one was never feasible
        stored.study.add_trial(
            create_trial(values=values, params={"lr": 0.1}, distributions=distributions)
        )
    assert [r.number for r in queries.best(stored)] == [0, 1]
    assert [r.number for r in queries.best(stored, max_latency=2.0)] == [2, 1, 0]
    shown = invoke("best", "--storage", url, "--study-name", "f", "--format", "json")
    assert [t["number"] for t in json.loads(shown.stdout)] == [0, 1]


PROBER = textwrap.dedent(
    """
    import json, sys
    import torch
    from hpo.core.spec import validate
    from hpo.run.probing import StudyLatencies
    from hpo.store.connect import load_study, open_storage

    url, spec = sys.argv[1], validate(json.loads(sys.argv[2]))
    stored = load_study(open_storage(url), spec.study.name)
    probe = StudyLatencies(stored, spec, torch.device("cpu"), 10, sys.argv[3])
    result = probe.probe({"model": "simple_cnn", "norm": "batch", "width": 0.5})
    print(json.dumps({"cached": result.cached, "latency_ms": result.latency_ms}))
    """
)


@pytest.mark.xdist_group("processes")
@pytest.mark.postgres
def test_two_worker_processes_share_one_probe(pg_url: str) -> None:
    raw = {"study": {"name": "shared"}, "latency": {"warmup": 2, "loops": 5, "max_rounds": 2}}
    create_or_load_study(validate(raw), open_storage(pg_url)).storage.engine.dispose()
    # Both processes want the same architecture's probe at the same time.
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", PROBER, pg_url, json.dumps(raw), f"worker-{i}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr
        results.append(json.loads(stdout))
    assert sorted(r["cached"] for r in results) == [False, True], "measured once, by one worker"
    assert results[0]["latency_ms"] == results[1]["latency_ms"]
    storage = open_storage(pg_url)
    with storage.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT worker, latency_ms FROM hpo_latency_probes").all()
    storage.engine.dispose()
    assert len(rows) == 1 and rows[0][1] == results[0]["latency_ms"]


def test_a_probe_without_the_fold_speedup_gets_it_at_training(
    tmp_path: Path, tiny_npz: Path
) -> None:
    """A probe cached under another study's budget (over it: no speedup measured) still gives
    the trial that trains this architecture its fold speedup."""
    from hpo.run.objective import train_configuration

    spec = validate(_read(tiny_spec(tmp_path, "speedup", 1)))
    config = TrialConfig.from_params(
        {"model": "simple_cnn", "norm": "batch", "width": 0.25, "lr": 0.01, "batch_size": 32}
    )
    network = seeded(lambda: build_network(config, 10))
    over_budget = measure_network_latency(network, spec.latency, CPU, max_latency=1e-9)
    assert "speedup" not in over_budget
    section = spec.data.model_copy(update={"dataset": str(tiny_npz)})
    data = prepare(load_raw(section), section, CPU)
    outcome = train_configuration(config, spec, data, CPU, latency=over_budget)
    assert outcome.attrs["speedup"] > 0 and "latency_unfused_eager" in outcome.attrs
    assert outcome.latency_ms == over_budget["latency"]["median_ms"]


def test_a_failed_probe_leaves_a_placeholder_taken_over_by_another_worker(tmp_path: Path) -> None:
    """Worker A's probe looked stale, B took it over; A then fails: B's placeholder stays."""
    from hpo.store import probes
    from hpo.store.hpo_tables import ensure_tables

    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}")
    ensure_tables(storage)

    def taken_over_then_failing() -> dict:
        (started,) = read_started(storage)
        assert probes._take_over(storage, "k", started, "worker-b", started)
        raise RuntimeError("worker A's measurement failed")

    with pytest.raises(RuntimeError):
        probes.get_or_measure(storage, "k", {}, "ctx", taken_over_then_failing, "worker-a")
    with storage.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT worker FROM hpo_latency_probes").all()
    assert rows == [("worker-b",)]


def read_started(storage: object) -> tuple:
    import sqlalchemy as sa

    from hpo.store.hpo_tables import probes

    with storage.engine.connect() as connection:  # type: ignore[attr-defined]
        return connection.execute(sa.select(probes.c.started)).one()


def test_a_worker_whose_clock_is_ahead_waits_for_anothers_fresh_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A placeholder's age is read on the database's clock, not the worker's: a worker whose
    clock runs an hour ahead waits for the other worker's result instead of measuring again."""
    import datetime
    import threading

    import sqlalchemy as sa

    from hpo.measure.latency_result import LatencyResult
    from hpo.store import probes
    from hpo.store.hpo_tables import ensure_tables

    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}")
    ensure_tables(storage)
    with storage.engine.connect() as connection:  # the database's clock (UTC on SQLite)
        started = connection.execute(sa.select(sa.func.now())).scalar_one()
    assert probes._claim(storage, "k", {}, "ctx", "worker-b", started)
    theirs = LatencyResult(stats={"median_ms": 1.5})
    finisher = threading.Timer(1.0, probes._measure, (storage, "k", lambda: theirs, "worker-b"))

    class AheadClock(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> AheadClock:  # type: ignore[override]
            return super().now(tz) + datetime.timedelta(hours=1)

    def measure_again() -> LatencyResult:
        raise AssertionError("worker A measured a probe worker B was measuring")

    monkeypatch.setattr(datetime, "datetime", AheadClock)
    finisher.start()
    try:
        record = probes.get_or_measure(storage, "k", {}, "ctx", measure_again, "worker-a")
    finally:
        finisher.join()
    assert record.cached and record.latency_ms == 1.5


def test_a_live_probe_is_waited_for_and_a_silent_one_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe measured for longer than the grace period is waited for while its worker's
    heartbeat refreshes the placeholder; once the refreshes stop (the worker died or froze),
    another worker takes it over after the grace period, not minutes later."""
    import threading
    import time

    from hpo.measure.latency_result import LatencyResult
    from hpo.store import probes
    from hpo.store.hpo_tables import ensure_tables

    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("HPO_GRACE_PERIOD", "2")
    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}")
    ensure_tables(storage)
    measuring = threading.Event()

    def slow_measurement() -> LatencyResult:
        measuring.set()
        time.sleep(4)  # twice the grace period, beating all along
        return LatencyResult(stats={"median_ms": 1.5})

    def measure_again() -> LatencyResult:
        raise AssertionError("worker A measured a live probe worker B was measuring")

    slow = threading.Thread(
        target=probes.get_or_measure, args=(storage, "k", {}, "ctx", slow_measurement, "worker-b")
    )
    slow.start()
    try:
        assert measuring.wait(30)
        record = probes.get_or_measure(storage, "k", {}, "ctx", measure_again, "worker-a")
    finally:
        slow.join()
    assert record.cached and record.latency_ms == 1.5

    # A placeholder nobody refreshes: worker C claimed it and went silent.
    (now,) = read_started(storage)
    assert probes._claim(storage, "silent", {}, "ctx", "worker-c", now)
    waited = time.monotonic()
    mine = LatencyResult(stats={"median_ms": 2.5})
    record = probes.get_or_measure(storage, "silent", {}, "ctx", lambda: mine, "worker-a")
    assert not record.cached and record.latency_ms == 2.5
    assert time.monotonic() - waited < 30, "taken over after the grace period, not minutes"


def test_an_over_budget_reason_shows_a_tiny_budget() -> None:
    from hpo.run.objective import over_budget_reason

    assert over_budget_reason(3.111, 2.0) == "over latency budget: 3.11 ms > 2.00 ms"
    assert over_budget_reason(0.58, 1e-9) == "over latency budget: 0.58 ms > 1e-09 ms"
