"""Faults around the database: lost trials, the outage budget, concurrent first use, refusals.

End-to-end cases run the real `hpo worker` processes (a paused worker, a database that stays
down); the rest drive the storage layer in this process against real SQLite files and the
PostgreSQL server (or a private cluster where the server's settings must change).
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import optuna
import psycopg
import pytest
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from hpo.core.errors import StorageError
from hpo.core.spec import validate
from hpo.run.worker import work_until_target
from hpo.store.connect import StoredStudy, open_storage, retry_of
from hpo.store.lost import GRACE_ATTR, fail_silent_trials
from hpo.store.studies import create_or_load_study
from hpo.store.url import prepare_sqlite
from tests.conftest import invoke
from tests.pg import (
    SERVER,
    Cluster,
    create_database,
    drop_database,
    pg_url,
    private_postgres,
    reaped,
    server_problem,
    wait_all,
)
from tests.synthetic import SPEC
from tests.test_storage import new_study, two_objectives  # noqa: E402
from tests.test_workers import (
    WORKER_TIMEOUT_S,
    heartbeat,
    start_workers,
    stop_mid_trial,
    tiny_spec,
    trials_of,
    worker_logs,
)

__all__ = ["pg_url", "private_postgres"]  # fixtures used below


# --- the outage budget -----------------------------------------------------------------------


def test_the_retry_budget_is_per_outage_not_per_call(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    storage.retry_seconds = 2.0

    def down() -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    gave_up: list[float] = []

    def call_later(delay: float) -> None:
        time.sleep(delay)
        with pytest.raises(OperationalError):
            storage.retrying(down)
        gave_up.append(time.monotonic() - started)

    started = time.monotonic()
    # Calls from two threads, and one after the other on one of them, while the outage lasts:
    # every one gives up when the outage is 2 s old, not 2 s after it started itself.
    threads = [threading.Thread(target=call_later, args=(d,)) for d in (0.0, 1.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    call_later(0.0)
    assert len(gave_up) == 3
    assert all(1.8 <= t <= 2.6 for t in gave_up), gave_up

    storage.retrying(lambda: None)  # the database is back: the next outage gets a new budget
    started = time.monotonic()
    call_later(0.0)
    assert 1.8 <= gave_up[-1] <= 2.6, gave_up


# --- lost trials -----------------------------------------------------------------------------


def start_trial(stored: StoredStudy, grace: int) -> int:
    """A trial started as a worker with grace period `grace` starts one: params, worker,
    grace period, first heartbeat. Its number."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)  # on purpose
        trial = stored.study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr("worker", f"host:{grace}")
    trial_id = stored.storage.get_trial_id_from_study_id_trial_number(stored.study_id, trial.number)
    stored.storage.set_trial_system_attr(trial_id, GRACE_ATTR, grace)
    stored.storage.record_heartbeat(trial_id)
    return trial.number


def test_silent_trials_are_judged_by_their_own_workers_grace_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This worker would call a trial lost after 2 s of silence; each trial's worker says how
    # long its own silence may last.
    heartbeat(monkeypatch, interval=1, grace=2)
    stored = new_study(f"sqlite:///{tmp_path / 's.db'}")
    short, long = start_trial(stored, grace=1), start_trial(stored, grace=30)
    time.sleep(2.2)  # SQLite's clock has whole seconds: silent for 2 s > 1 s

    lost = fail_silent_trials(stored)

    assert [t.number for t in lost] == [short], "only the trial silent past its own grace"
    assert fail_silent_trials(stored) == [], "a failed trial is failed once"
    trials = stored.study.get_trials()
    assert [trials[short].state, trials[long].state] == [TrialState.FAIL, TrialState.RUNNING]
    retry = trials[2]
    assert retry.state == TrialState.WAITING and retry_of(retry) == short
    assert retry.params == trials[short].params, "the retry runs the lost trial's params"
    assert "worker" not in retry.user_attrs, "the retry starts clean"
    reason = trials[short].user_attrs["fail_reason"]
    assert reason.startswith("worker lost: no heartbeat for ") and lost[0].reason == reason
    assert reason.endswith(" s from host:1; retried as trial 2"), reason

    # The retry loses its worker too: the configuration is not retried a second time.
    assert start_trial(stored, grace=1) == retry.number, "a worker takes the queued retry first"
    time.sleep(2.2)
    assert [t.retry for t in fail_silent_trials(stored)] == [None]
    trials = stored.study.get_trials()
    assert len(trials) == 3 and trials[long].state == TrialState.RUNNING
    assert (
        trials[retry.number]
        .user_attrs["fail_reason"]
        .endswith(f"; not retried again (it was the retry of trial {short})")
    )


def test_a_worker_back_from_an_outage_fails_nobody_for_a_grace_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeat(monkeypatch, interval=1, grace=3)
    stored = new_study(f"sqlite:///{tmp_path / 's.db'}")
    stored.storage.retry_seconds = 5.0
    number = start_trial(stored, grace=1)
    time.sleep(2.2)  # silent past its grace period, maybe because of the same outage
    failures = iter([True, False])

    def flaky() -> None:
        if next(failures):
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    stored.storage.retrying(flaky)  # this worker was cut off too, and is just back
    assert fail_silent_trials(stored) == [], "the others get a grace period to beat again"
    time.sleep(3.1)
    assert [t.number for t in fail_silent_trials(stored)] == [number]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_dead_workers_trial_is_failed_while_the_survivor_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeat(monkeypatch, interval=1, grace=2)
    stored = new_study(f"sqlite:///{tmp_path / 's.db'}")
    # A worker that started a trial, beat once, and died.
    dead = stored.study.ask()
    dead.suggest_float("x", 0.0, 1.0)
    stored.storage.record_heartbeat(
        stored.storage.get_trial_id_from_study_id_trial_number(stored.study_id, dead.number)
    )
    noticed: list[float] = []

    def long_trial(trial: optuna.Trial) -> tuple[float, float]:
        started = time.monotonic()
        while not noticed and time.monotonic() - started < 15:
            if stored.frozen_trial(dead.number).state == TrialState.FAIL:
                noticed.append(time.monotonic() - started)
            time.sleep(0.1)
        return two_objectives(trial)

    assert work_until_target(stored, long_trial, target=2) == 2, "one new trial, one retry"
    # Failed by the background check about a grace period after its last beat (2 s + up to
    # one interval), while this worker's first trial still ran; not when that trial ended.
    assert noticed and noticed[0] < 6, noticed
    retries = [t for t in stored.study.get_trials() if retry_of(t) == dead.number]
    assert [t.state for t in retries] == [TrialState.COMPLETE]


@pytest.mark.xdist_group("processes")
@pytest.mark.slow
def test_a_paused_worker_drops_its_lost_trial_and_goes_on(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeat(monkeypatch, interval=1, grace=3)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    # More trials than one worker runs while the other starts (a tiny trial takes well under a
    # second, a worker's start several): with two, the first one up ran both and the other
    # exited before it could be paused.
    created = invoke(
        "create", tiny_spec(tmp_path, "pause", 12), "--storage", url, "--data", str(tiny_npz)
    )
    assert created.returncode == 0, created.stderr
    workers = start_workers(2, url, "pause", tmp_path)
    paused, survivor = workers
    storage = open_storage(url)
    with reaped(workers):
        number = stop_mid_trial(paused, storage, "pause", 180, sqlite_file=tmp_path / "study.db")
        stopped = time.monotonic()
        lost = wait_for_fail(storage, "pause", number, timeout=60)
        noticed = time.monotonic() - stopped
        os.kill(paused.pid, signal.SIGCONT)
        codes = wait_all(workers, WORKER_TIMEOUT_S)
    log = (tmp_path / "worker-0.log").read_text()
    # The paused worker exits 1 when the lost trial was all it ran (it added nothing), else 0.
    added_nothing = "worker ran 1 trial(s) and every result was dropped" in log
    assert codes == [1 if added_nothing else 0, 0], worker_logs(tmp_path)
    assert "Traceback" not in worker_logs(tmp_path)
    # Grace period 3 s, checks every 1 s; the rest is this test's polling on a busy machine.
    assert noticed < 3 + 1 + 5, noticed
    dropped = [line for line in log.splitlines() if "dropped:" in line]
    assert len(dropped) == 1 and f"trial {number:>3}  dropped" in dropped[0], log
    assert "worker lost: no heartbeat for" in dropped[0]

    trials = trials_of(storage, "pause")
    storage.engine.dispose()
    retry = next(t for t in trials if retry_of(t) == number)
    # Read once the workers have ended: the FAIL and its reason are two writes, and the poll
    # above may have seen the first alone.
    lost = next(t for t in trials if t.number == number)
    reason = lost.user_attrs["fail_reason"]
    assert reason.startswith("worker lost: no heartbeat for ")
    assert reason.endswith(f":{paused.pid}; retried as trial {retry.number}"), reason
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.FAIL}
    assert sum(t.state == TrialState.FAIL for t in trials) == 1, "only the lost trial"


def wait_for_fail(storage: RDBStorage, name: str, number: int, timeout: float) -> FrozenTrial:
    """Trial `number` once it is FAIL."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trial = trials_of(storage, name)[number]
        if trial.state == TrialState.FAIL:
            return trial
        time.sleep(0.1)
    raise AssertionError(f"trial {number} was not failed within {timeout} s")


# --- first use of a new database -------------------------------------------------------------

FIRST_USERS = 3


def at_once(action: Callable[[], object]) -> list[str]:
    """`action` from FIRST_USERS threads released together (each opening its own connections,
    as separate processes would); their errors."""
    barrier = threading.Barrier(FIRST_USERS)
    errors: list[str] = []

    def run() -> None:
        barrier.wait()
        try:
            action()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run) for _ in range(FIRST_USERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def create_at_once(url: str) -> list[str]:
    """What `hpo create` does to the database, from FIRST_USERS threads at once; their errors."""
    return at_once(
        lambda: create_or_load_study(validate(SPEC), open_storage(url)).storage.engine.dispose()
    )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_concurrent_first_use_of_a_new_database(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url, name = f"sqlite:///{tmp_path / 'new.db'}", None
    else:
        if problem := server_problem():
            pytest.skip(problem)
        name = create_database(SERVER)
        url = f"{SERVER}/{name}"
    try:
        # Without care, 2 of 3 failed on every try: "table ... already exists" (SQLite), a
        # duplicate pg_type entry (PostgreSQL), a duplicate version row.
        assert create_at_once(url) == []
        storage = open_storage(url, create=False)
        (study,) = optuna.get_all_study_summaries(storage)
        assert study.study_name == "synthetic" and "spec" in study.user_attrs
        storage.engine.dispose()
    finally:
        if name is not None:
            drop_database(SERVER, name)


def test_workers_switching_a_new_sqlite_file_to_wal_together_all_succeed(tmp_path: Path) -> None:
    # SQLite answers "database is locked" at once, busy timeout or not, to a journal-mode switch
    # that collides with another's: without retries about 1 in 7 of these races failed.
    for attempt in range(50):
        url = make_url(f"sqlite:///{tmp_path / f'{attempt}.db'}")
        assert at_once(partial(prepare_sqlite, url)) == [], f"race {attempt}"


def test_a_lost_race_is_tried_again_and_anything_else_is_raised_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpo.store import races

    monkeypatch.setattr(races.time, "sleep", lambda seconds: None)
    calls: list[str] = []

    def losing(times: int, error: Exception) -> Callable[[], str]:
        def action() -> str:
            calls.append("try")
            if len(calls) <= times:
                raise error
            return "opened"

        return action

    def lost(exc: Exception) -> bool:
        return "locked" in str(exc)

    assert races.retry_lost_race(losing(3, RuntimeError("database is locked")), lost) == "opened"
    assert len(calls) == 4
    calls.clear()
    with pytest.raises(RuntimeError, match="disk I/O error"):
        races.retry_lost_race(losing(3, RuntimeError("disk I/O error")), lost)
    assert len(calls) == 1, "an error that is not a lost race is not tried again"
    calls.clear()
    with pytest.raises(RuntimeError, match="locked"):
        races.retry_lost_race(losing(100, RuntimeError("database is locked")), lost, tries=5)
    assert len(calls) == 5, "the last lost race is raised after the last try"


# --- refusals: authentication and permission -------------------------------------------------


@pytest.mark.postgres
def test_a_user_without_privileges_is_told_permission_denied(
    pg_url: str, tmp_path: Path, tiny_npz: Path
) -> None:
    open_storage(pg_url).engine.dispose()  # the tables exist, made by their owner
    role = f"hpo_test_reader_{secrets.token_hex(4)}"
    database = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    scheme, rest = pg_url.split("://", 1)
    url = f"{scheme}://{role}:hunter2@{rest.split('@', 1)[1]}"
    try:
        # No privilege at all: refused when the storage is opened.
        with pytest.raises(StorageError) as caught:
            open_storage(url)
        # Read-only: opened, refused at the first write, through the CLI.
        with psycopg.connect(f"{SERVER}/{database}", autocommit=True) as owner:
            owner.execute(
                sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                    sql.Identifier(role)
                )
            )
        spec = tiny_spec(tmp_path, "ro", 2)
        created = invoke("create", spec, "--storage", url, "--data", str(tiny_npz))
    finally:
        drop_database(SERVER, database)  # with the grants and the role's connections
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    for message in (str(caught.value), created.stderr.removeprefix("hpo: error: ")):
        assert message.startswith(f"permission denied for user '{role}' in postgresql"), message
        assert "permission denied for table" in message and "cannot connect" not in message
        assert "hunter2" not in message and len(message.strip().splitlines()) == 1
    assert created.returncode == 2 and created.stderr.startswith("hpo: error: ")


@pytest.mark.postgres
def test_wrong_credentials_are_told_authentication_failed(private_postgres: Cluster) -> None:
    # The private server asks this role for its password (scram); everyone else is trusted.
    server = private_postgres.server
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute("CREATE ROLE hpo_pw LOGIN PASSWORD 'right'")
    hba = private_postgres.folder / "data" / "pg_hba.conf"
    hba.write_text("host all hpo_pw 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    private_postgres.reload()
    host = f"127.0.0.1:{private_postgres.port}"
    cases = {
        "hpo_pw": 'password authentication failed for user "hpo_pw"',
        "nobody": 'role "nobody" does not exist',
    }
    for user, detail in cases.items():
        with pytest.raises(StorageError) as caught:
            open_storage(f"postgresql://{user}:hunter2@{host}/postgres")
        message = str(caught.value)
        assert message.startswith("authentication failed for user"), message
        assert detail in message and "check the user name and password" in message
        assert "hunter2" not in message and "\n" not in message
