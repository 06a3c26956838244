"""Many workers on one study, against real databases: killed workers, a restarted server, SQLite.

Every worker is the real `hpo worker` process training a tiny network. Heartbeats are shortened
through HPO_HEARTBEAT_INTERVAL / HPO_GRACE_PERIOD so a dead worker's trial is noticed in
seconds, not a minute.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.store.connect import open_storage, retry_of
from tests.conftest import invoke
from tests.pg import (
    Cluster,
    create_database,
    pg_url,
    private_postgres,
    reaped,
    start_cli,
    wait_all,
)

__all__ = ["pg_url", "private_postgres"]  # fixtures used below

TINY_SPEC = """
[study]
name = "{name}"
n_trials = {n_trials}
sampler = "random"
seed = 0

[data]
train_size = 64
val_size = 32

[train]
epochs = 1
eval_batch_size = 256

[latency]
warmup = 2
loops = 5
max_rounds = 1
max_seconds = 0.5

[search]
model = "simple_cnn"
width = 0.25
batch_size = 32
optimizer = ["nesterov", "adam"]
lr = {{ low = 0.01, high = 0.1, log = true }}
"""

WORKER_TIMEOUT_S = 300


def tiny_spec(folder: Path, name: str, n_trials: int) -> str:
    """A real spec whose trials train a tiny CNN for one short epoch."""
    path = folder / f"{name}.toml"
    path.write_text(TINY_SPEC.format(name=name, n_trials=n_trials))
    return str(path)


def trials_of(storage: RDBStorage, name: str) -> list[FrozenTrial]:
    """The study's trials as stored right now."""
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def states(trials: list[FrozenTrial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def create(spec: str, url: str, data: Path) -> None:
    result = invoke("create", spec, "--storage", url, "--data", str(data))
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def start_workers(n: int, url: str, name: str, folder: Path) -> list[subprocess.Popen]:
    """`n` real `hpo worker` processes on the study, each logging to folder/worker-I.log."""
    return [
        start_cli("worker", "--storage", url, "--study-name", name, log=folder / f"worker-{i}.log")
        for i in range(n)
    ]


def worker_logs(folder: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(folder.glob("worker-*.log")))


def new_database(cluster: Cluster) -> str:
    """The URL of a new, empty database on `cluster`."""
    return f"{cluster.server}/{create_database(cluster.server)}"


def heartbeat(monkeypatch: pytest.MonkeyPatch, interval: int, grace: int) -> None:
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", str(interval))
    monkeypatch.setenv("HPO_GRACE_PERIOD", str(grace))


@pytest.mark.xdist_group("processes")
@pytest.mark.slow
@pytest.mark.postgres
def test_sigkilled_worker_trial_fails_and_is_retried(
    pg_url: str, tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeat(monkeypatch, interval=1, grace=4)
    target, n_workers = 4, 2
    create(tiny_spec(tmp_path, "kill", target), pg_url, tiny_npz)
    workers = start_workers(n_workers, pg_url, "kill", tmp_path)
    victim, survivors = workers[0], workers[1:]
    storage = open_storage(pg_url)
    with reaped(workers):
        killed = kill_mid_trial(victim, storage, "kill", timeout=180)
        codes = wait_all(survivors, WORKER_TIMEOUT_S)
    output = worker_logs(tmp_path)
    assert codes == [0] * len(survivors), output

    trials = trials_of(storage, "kill")
    storage.engine.dispose()
    by_number = {t.number: t for t in trials}
    assert by_number[killed].state == TrialState.FAIL, "the dead worker's trial ends FAIL"
    retries = [t for t in trials if retry_of(t) == killed]
    assert len(retries) == 1, "a trial whose worker died is retried exactly once"
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == by_number[killed].params, "the retry runs the original params"
    assert retry.user_attrs["worker"] != by_number[killed].user_attrs["worker"]
    counts = states(trials)
    assert target <= counts.get("COMPLETE", 0) <= target + n_workers - 1, counts
    assert "RUNNING" not in counts and "WAITING" not in counts, counts


def kill_mid_trial(worker: subprocess.Popen, storage: RDBStorage, name: str, timeout: float) -> int:
    """SIGKILL `worker` while it runs a trial; the number of that trial.

    The worker is frozen first (SIGSTOP), so the trial seen RUNNING cannot finish before the kill.
    """
    number = stop_mid_trial(worker, storage, name, timeout)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    return number


def stop_mid_trial(
    worker: subprocess.Popen,
    storage: RDBStorage,
    name: str,
    timeout: float,
    sqlite_file: Path | None = None,
) -> int:
    """SIGSTOP `worker` while it runs a trial (it stays stopped); the number of that trial.

    With `sqlite_file`, never while it writes: a process stopped inside a write transaction
    holds the file's write lock, and no other process can write until it goes on.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker exited before it could be stopped"
        if running_on(storage, name, worker.pid):
            os.kill(worker.pid, signal.SIGSTOP)
            mine = running_on(storage, name, worker.pid)
            if mine and (sqlite_file is None or can_write(sqlite_file)):
                return mine[0].number
            os.kill(worker.pid, signal.SIGCONT)
        time.sleep(0.1)
    raise AssertionError(f"worker {worker.pid} never ran a trial within {timeout} s")


def can_write(sqlite_file: Path) -> bool:
    """Whether a write transaction on the SQLite file can start now (no one holds its lock)."""
    connection = sqlite3.connect(sqlite_file, timeout=0.2)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.rollback()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


def running_on(storage: RDBStorage, name: str, pid: int) -> list[FrozenTrial]:
    """RUNNING trials of the worker process `pid` (the worker notes host:pid on each trial)."""
    return [
        t
        for t in trials_of(storage, name)
        if t.state == TrialState.RUNNING and t.user_attrs.get("worker", "").endswith(f":{pid}")
    ]


@pytest.mark.xdist_group("processes")
@pytest.mark.slow
@pytest.mark.postgres
def test_workers_survive_a_postgresql_restart(
    private_postgres: Cluster, tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A grace period well above the outage, so live trials are not declared dead meanwhile.
    heartbeat(monkeypatch, interval=1, grace=20)
    monkeypatch.setenv("HPO_DB_RETRY_SECONDS", "120")
    url = new_database(private_postgres)
    target = 5
    create(tiny_spec(tmp_path, "restart", target), url, tiny_npz)
    workers = start_workers(2, url, "restart", tmp_path)
    storage = open_storage(url)
    with reaped(workers):
        before = wait_for_complete(storage, "restart", at_least=1, timeout=180)
        private_postgres.stop()
        time.sleep(3)  # workers keep training; their heartbeats and writes fail meanwhile
        private_postgres.start()
        codes = wait_all(workers, WORKER_TIMEOUT_S)
    output = worker_logs(tmp_path)
    assert codes == [0, 0], output
    assert "unreachable" in output and "reachable again" in output, "the outage was ridden out"

    trials = trials_of(storage, "restart")
    storage.engine.dispose()
    after = {t.number for t in trials if t.state == TrialState.COMPLETE}
    assert before <= after, "trials completed before the restart are still there"
    counts = states(trials)
    assert target <= counts.get("COMPLETE", 0) <= target + 1, counts
    assert "RUNNING" not in counts, counts


def wait_for_complete(storage: RDBStorage, name: str, at_least: int, timeout: float) -> set[int]:
    """Numbers of the COMPLETE trials once there are `at_least` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {t.number for t in trials_of(storage, name) if t.state == TrialState.COMPLETE}
        if len(done) >= at_least:
            return done
        time.sleep(0.5)
    raise AssertionError(f"no {at_least} COMPLETE trials within {timeout} s")


@pytest.mark.xdist_group("processes")
@pytest.mark.slow
def test_three_workers_on_one_sqlite_file(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeat(monkeypatch, interval=1, grace=10)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    target, n_workers = 6, 3
    create(tiny_spec(tmp_path, "lite", target), url, tiny_npz)
    workers = start_workers(n_workers, url, "lite", tmp_path)
    codes = wait_all(workers, WORKER_TIMEOUT_S)
    output = worker_logs(tmp_path)
    assert codes == [0] * n_workers, output
    assert "locked" not in output.lower(), output
    counts = states(trials_of(open_storage(url), "lite"))
    assert target <= counts.get("COMPLETE", 0) <= target + n_workers - 1, counts
    assert set(counts) == {"COMPLETE"}, counts


@pytest.mark.xdist_group("processes")
@pytest.mark.slow
@pytest.mark.postgres
def test_worker_gives_up_with_one_line_when_the_database_stays_down(
    private_postgres: Cluster, tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeat(monkeypatch, interval=1, grace=20)
    budget = 4
    monkeypatch.setenv("HPO_DB_RETRY_SECONDS", str(budget))
    url = new_database(private_postgres).replace("postgres@", "postgres:hunter2@", 1)
    spec = tiny_spec(tmp_path, "down", 2)
    # A long trial: the database goes away while the worker trains.
    result = invoke(
        *("create", spec, "--storage", url, "--data", str(tiny_npz)),
        *("--set", "train.epochs=500"),
    )
    assert result.returncode == 0, result.stderr
    log = tmp_path / "worker.log"
    worker = start_cli("worker", "--storage", url, "--study-name", "down", log=log)
    storage = open_storage(url)
    with reaped([worker]):
        wait_for_training(storage, "down", worker, timeout=180)
        storage.engine.dispose()
        private_postgres.stop()
        stopped = time.monotonic()
        error_after = None
        while worker.poll() is None and time.monotonic() - stopped < 120:
            if error_after is None and "hpo: error:" in log.read_text():
                error_after = time.monotonic() - stopped
            time.sleep(0.05)
        code = worker.wait(timeout=30)
    text = log.read_text()
    assert code == 1, text
    errors = [line for line in text.splitlines() if line.startswith("hpo: error:")]
    assert len(errors) == 1 and "lost the database" in errors[0], text
    assert "hunter2" not in text and "Traceback" not in text, text
    # The budget is the outage's, shared by every call and the heartbeat thread; a budget per
    # call let a worker with 10 s run on for 35-46 s.
    assert error_after is not None and error_after < budget + 2, (error_after, text)


def wait_for_training(
    storage: RDBStorage, name: str, worker: subprocess.Popen, timeout: float
) -> None:
    """Return once `worker` has trained its trial for an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker ended before it trained"
        if any("epoch" in t.user_attrs for t in running_on(storage, name, worker.pid)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no trial trained an epoch within {timeout} s")
