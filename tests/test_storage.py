"""Storage: engine options, bad URLs, outage retries, and the worker loop's counting rules.

PostgreSQL tests use their own database on the real server; the worker-loop tests run a no-op
objective in this process on a real SQLite file.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import optuna
import psycopg
import pytest
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError

from hpo.core.errors import SettingError, StorageError
from hpo.core.spec import validate
from hpo.run.signals import (
    HeldInterrupts,
    Terminated,
    interrupted_trial,
    queued_again,
    sigterm_as_interrupt,
)
from hpo.run.worker import own_seed_offset, work_until_target
from hpo.store.connect import StoredStudy, open_storage, retry_of
from hpo.store.progress import target_counts
from hpo.store.resilience import Resilience, ResilientRDBStorage, is_transient
from hpo.store.url import mask_password, parse_url, safe_url, scrub
from tests.conftest import invoke
from tests.pg import SERVER, pg_url, server_problem, start_cli, wait_all
from tests.test_workers import tiny_spec

__all__ = ["pg_url"]  # fixture used below


@pytest.fixture
def quick_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("HPO_GRACE_PERIOD", "2")


def two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    return trial.suggest_float("x", 0.0, 1.0), 1.0


def new_study(url: str) -> StoredStudy:
    storage = open_storage(url)
    study = optuna.create_study(
        storage=storage, study_name="s", directions=["maximize", "minimize"]
    )
    return StoredStudy.of(study, storage)


# --- bad input -------------------------------------------------------------------------------

BAD_URLS = {
    "wrong scheme": ("postgres://u:hunter2@127.0.0.1:5432/db", "did you mean postgresql://"),
    "unknown scheme": ("http://u:hunter2@127.0.0.1/db", "unsupported storage 'http'"),
    "wrong host": ("postgresql://u:hunter2@nosuchhost.invalid:5432/db", "host nosuchhost.invalid"),
    "wrong port": ("postgresql://u:hunter2@127.0.0.1:1/db", "host 127.0.0.1"),
    "three slashes": (
        "postgresql:///u:hunter2@127.0.0.1:5432/db",
        "the user and host are in the database name; expected two slashes",
    ),
    "no colon": ("postgresql//u:hunter2@127.0.0.1:5432/db", "malformed storage URL"),
    "no scheme": ("u:hunter2@127.0.0.1/db", "malformed storage URL"),
    "a space at the end": ("sqlite:///hpo.db ", "it starts or ends with white space"),
    "host as an option": (
        "postgresql:///db?user=u&password=hunter2&host=127.0.0.1&port=1",
        "(host 127.0.0.1)",
    ),
}


@pytest.mark.parametrize("case", BAD_URLS, ids=list(BAD_URLS))
def test_bad_url_is_one_clear_error(case: str) -> None:
    url, expected = BAD_URLS[case]
    with pytest.raises(StorageError) as caught:
        open_storage(url)
    message = str(caught.value)
    assert expected in message
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.postgres
def test_wrong_database_names_it_and_the_host() -> None:
    if problem := server_problem():
        pytest.skip(problem)
    scheme, rest = SERVER.split("://", 1)
    host = rest.split("@", 1)[-1]
    with pytest.raises(StorageError) as caught:
        open_storage(f"{scheme}://postgres:hunter2@{host}/hpo_no_such_db")
    message = str(caught.value)
    assert 'database "hpo_no_such_db" does not exist' in message
    assert f"host {host.split(':')[0]}" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "url",
    ["postgres://u:hunter2@127.0.0.1:5432/db", "postgresql://u:hunter2@nosuchhost.invalid/db"],
    ids=["wrong scheme", "wrong host"],
)
@pytest.mark.parametrize("command", ["create", "worker"])
def test_cli_bad_url_exits_2_with_one_masked_line(
    command: str, url: str, tiny_npz: Path, tmp_path: Path
) -> None:
    if command == "create":
        args = ["create", tiny_spec(tmp_path, "x", 2), "--data", str(tiny_npz)]
    else:
        args = ["worker", "--study-name", "x"]
    result = invoke(*args, "--storage", url)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("hpo: error: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("\udcff.db", "the path is not valid UTF-8"),  # a Latin-1 byte, as Python reads argv
        ("%00x.db", "the path holds a NUL character"),
        ("a" * 300 + ".db", "the file name is 303 bytes long; at most"),
    ],
    ids=["not utf-8", "nul", "too long"],
)
def test_a_sqlite_file_name_no_file_system_takes_is_one_line(
    name: str, expected: str, tiny_npz: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "dbs"
    folder.mkdir()
    spec = tiny_spec(tmp_path, "x", 2)
    url = f"sqlite:///{folder}/{name}"
    for args in (["create", spec, "--data", str(tiny_npz)], ["studies"]):
        result = invoke(*args, "--storage", url)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("hpo: error: SQLite database '")
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not any(folder.iterdir()), "nothing is created"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HPO_HEARTBEAT_INTERVAL": "soon"}, "HPO_HEARTBEAT_INTERVAL='soon'"),
        ({"HPO_GRACE_PERIOD": "0"}, "HPO_GRACE_PERIOD='0'"),
        ({"HPO_HEARTBEAT_INTERVAL": "30", "HPO_GRACE_PERIOD": "30"}, "must be greater"),
        ({"HPO_DB_RETRY_SECONDS": "-1"}, "HPO_DB_RETRY_SECONDS"),
    ],
)
def test_bad_heartbeat_settings(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingError, match=expected):
        Resilience.from_env()


def test_heartbeat_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "3")
    monkeypatch.setenv("HPO_GRACE_PERIOD", "9")
    monkeypatch.setenv("HPO_DB_RETRY_SECONDS", "0")
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert (storage.heartbeat_interval, storage.grace_period) == (3, 9)
    assert storage.retry_seconds == 0


# --- engine options --------------------------------------------------------------------------


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    storage = open_storage(f"sqlite:///{db}")
    assert storage.engine_kwargs["connect_args"]["timeout"] >= 30
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reading_commands_keep_a_sqlite_files_journal_mode(tmp_path: Path) -> None:
    """`studies` and `best` only read: a file another program made keeps its rollback journal
    (the WAL switch is for the commands that write)."""
    db = tmp_path / "plain.db"
    study = optuna.create_study(
        study_name="plain", storage=f"sqlite:///{db}", directions=["maximize", "minimize"]
    )
    study.optimize(two_objectives, n_trials=1)
    url = f"sqlite:///{db}"
    assert invoke("studies", "--storage", url).returncode == 0
    assert invoke("best", "--storage", url, "--study-name", "plain").returncode == 2
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_sqlite_path_from_home_is_the_file_in_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    stored = new_study("sqlite:///~/s.db")
    stored.study.optimize(two_objectives, n_trials=1)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["s.db"]
    assert not (tmp_path / "~").exists(), "no folder named ~"
    again = optuna.load_study(study_name="s", storage=open_storage("sqlite:///~/s.db"))
    assert len(again.trials) == 1


# Workers racing for one trial: each round, every worker reads the trial, then all change its
# state at once. Without the write lock SQLite let every worker of every round win.
RACERS = 3
RACE_ROUNDS = 3


def racing_state_changes(url: str, state: TrialState, before: TrialState) -> list[int]:
    """Per round, how many of RACERS workers (each with its own storage) got the change of a
    fresh trial in state `before` to `state`."""
    stored = new_study(url)
    racers = [open_storage(url) for _ in range(RACERS)]
    winners = []
    for _ in range(RACE_ROUNDS):
        stored.study.enqueue_trial({"x": 0.5})
        number = len(stored.study.get_trials(deepcopy=False)) - 1
        trial_id = stored.storage.get_trial_id_from_study_id_trial_number(stored.study_id, number)
        if before == TrialState.RUNNING:
            assert stored.storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        winners.append(race_once(racers, trial_id, state))
        if state == TrialState.RUNNING:
            stored.storage.set_trial_state_values(trial_id, TrialState.FAIL)
    for storage in (stored.storage, *racers):
        storage.engine.dispose()
    return winners


def race_once(racers: list[ResilientRDBStorage], trial_id: int, state: TrialState) -> int:
    """How many racers, released together after each read the trial, got its change to `state`."""
    barrier = threading.Barrier(len(racers))
    won: list[bool] = []

    def race(storage: ResilientRDBStorage) -> None:
        storage.get_trial(trial_id)
        barrier.wait()
        try:
            won.append(storage.set_trial_state_values(trial_id, state))
        except UpdateFinishedTrialError:
            won.append(False)  # another racer finished it first

    threads = [threading.Thread(target=race, args=(racer,)) for racer in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(won)


@pytest.mark.parametrize(
    ("state", "before"),
    [(TrialState.RUNNING, TrialState.WAITING), (TrialState.FAIL, TrialState.RUNNING)],
    ids=["take a waiting retry", "fail a silent trial"],
)
@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_one_worker_wins_each_trial_state_change(
    database: str,
    state: TrialState,
    before: TrialState,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    url = (
        request.getfixturevalue("pg_url")
        if database == "postgresql"
        else f"sqlite:///{tmp_path / 's.db'}"
    )
    assert racing_state_changes(url, state, before) == [1] * RACE_ROUNDS


@pytest.mark.postgres
def test_postgres_pool_survives_killed_connections(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = open_storage(pg_url)
    pool = storage.engine.pool
    assert pool._pre_ping and pool._recycle == 300 and pool.size() == 2
    study = new_study(pg_url).study
    study.optimize(two_objectives, n_trials=2)
    # Kill every server connection of this database, as a server restart would.
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()[0]
    assert killed >= 1, "the pool kept a connection open"
    with caplog.at_level(logging.WARNING, logger="hpo.storage"):
        study.optimize(two_objectives, n_trials=1)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    # pool_pre_ping replaced the dead connections before use: no retry was needed.
    assert "unreachable" not in caplog.text


# --- outage retries --------------------------------------------------------------------------


def test_transient_errors_are_told_apart() -> None:
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    wrapped = StorageInternalError("commit failed")
    wrapped.__cause__ = lost
    assert is_transient(lost) and is_transient(wrapped)
    assert not is_transient(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_transient(ValueError("bad value"))


def test_retries_wait_out_an_outage_then_give_up(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert isinstance(storage, ResilientRDBStorage)
    storage.retry_seconds = 3.0
    failures = iter([True, True, False])

    def flaky() -> str:
        if next(failures):
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        return "ok"

    assert storage.retrying(flaky) == "ok"

    def down() -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    started = time.monotonic()
    with pytest.raises(OperationalError):
        storage.retrying(down)
    assert 1.0 < time.monotonic() - started <= 3.5

    def broken() -> None:
        raise ValueError("not a connection problem")

    started = time.monotonic()
    with pytest.raises(ValueError):
        storage.retrying(broken)
    assert time.monotonic() - started < 0.5, "other errors are not retried"


# --- the worker loop -------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # study.ask() on purpose
def test_waiting_worker_reruns_a_dead_workers_trial(tmp_path: Path, quick_heartbeat: None) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    stored = new_study(url)
    # A worker that started a trial, beat once, and died.
    dead = stored.study.ask()
    dead_x = dead.suggest_float("x", 0.0, 1.0)
    stored.storage.record_heartbeat(
        stored.storage.get_trial_id_from_study_id_trial_number(stored.study_id, dead.number)
    )

    runs = work_until_target(stored, two_objectives, target=3)

    trials = stored.study.get_trials()
    assert trials[dead.number].state == TrialState.FAIL
    retries = [t for t in trials if retry_of(t) == dead.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == {"x": dead_x}, "the retry runs the dead trial's params"
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # Two new trials while the dead one still looked alive, then its retry: exactly the target.
    assert len(complete) == 3 and runs == 3


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_running_trial_without_heartbeat_is_not_waited_for(
    tmp_path: Path, quick_heartbeat: None
) -> None:
    stored = new_study(f"sqlite:///{tmp_path / 's.db'}")
    stored.study.ask()  # RUNNING, never beats (a client without heartbeat, or killed at once)
    assert target_counts(stored).running == 1, "a fresh trial may not have beaten yet"
    time.sleep(2.2)
    assert target_counts(stored).running == 0
    started = time.monotonic()
    assert work_until_target(stored, two_objectives, target=2) == 2
    assert time.monotonic() - started < 5


def test_finished_study_runs_nothing(tmp_path: Path, quick_heartbeat: None) -> None:
    stored = new_study(f"sqlite:///{tmp_path / 's.db'}")
    stored.study.optimize(two_objectives, n_trials=3)
    assert work_until_target(stored, two_objectives, target=3) == 0
    assert work_until_target(stored, two_objectives, target=4) == 1


# --- signals ---------------------------------------------------------------------------------


@pytest.mark.xdist_group("processes")
@pytest.mark.slow
def test_sigterm_and_ctrl_c_fail_the_running_trial(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("HPO_GRACE_PERIOD", "10")
    cases = {signal.SIGTERM: 143, signal.SIGINT: 130}
    urls, workers = {}, {}
    for sig in cases:
        urls[sig] = f"sqlite:///{tmp_path / f'{sig.name}.db'}"
        # Epochs enough for hours: the first trial is still running when the signal comes,
        # however long the other worker takes to start (200 epochs once ran all 3 trials first).
        spec = tiny_spec(tmp_path, sig.name.lower(), 3)
        created = invoke(
            *("create", spec, "--storage", urls[sig], "--data", str(tiny_npz)),
            *("--set", "train.epochs=100000"),
        )
        assert created.returncode == 0, created.stderr
        workers[sig] = start_cli(
            *("worker", "--storage", urls[sig], "--study-name", sig.name.lower()),
            log=tmp_path / f"{sig.name}.log",
        )
    for sig, worker in workers.items():
        wait_until_running(urls[sig], sig.name.lower(), worker, timeout=120)
        worker.send_signal(sig)
    codes = wait_all(list(workers.values()), timeout=60)
    for (sig, expected), code in zip(cases.items(), codes, strict=True):
        log = (tmp_path / f"{sig.name}.log").read_text()
        assert code == expected, f"{sig.name}: exit {code}, expected {expected}\n{log[-3000:]}"
        trials = optuna.load_study(study_name=sig.name.lower(), storage=urls[sig]).get_trials()
        line = (
            f"hpo: interrupted; trial {trials[0].number} was marked FAIL (interrupted) and its "
            f"configuration queued again as trial {trials[1].number}"
        )
        assert line in log, log[-3000:]
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
        assert trials[0].user_attrs["fail_reason"] == "interrupted"
        assert trials[1].params == trials[0].params


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_held_interrupts_come_where_asked_and_a_second_one_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Ctrl-C as an interactive worker has it (a test runner's process may ignore it).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with HeldInterrupts() as held:
            signal.raise_signal(signal.SIGINT)  # held: nothing raised here
            with pytest.raises(KeyboardInterrupt), held.delivered():
                pytest.fail("the held interrupt comes on entering delivered()")
            held.raise_pending()  # nothing left
            signal.raise_signal(signal.SIGINT)
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)  # twice: at once
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "restored"
    finally:
        signal.signal(signal.SIGINT, before)
    # Once per held interrupt: why nothing happens at once.
    assert capsys.readouterr().err.count("hpo: stopping once this trial is stored") == 2


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_an_ignored_interrupt_stays_ignored_while_held() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a worker started with `&`
    try:
        with HeldInterrupts() as held:
            signal.raise_signal(signal.SIGINT)
            with held.delivered():
                held.raise_pending()  # nothing was held
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    except KeyboardInterrupt:
        pytest.fail("an ignored Ctrl-C was held and raised")
    finally:
        signal.signal(signal.SIGINT, before)


class SignalledSampler(optuna.samplers.RandomSampler):
    """Sends this process SIGTERM while the first trial is created (it is stored RUNNING)."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.sent = False

    def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
        if not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGTERM)
        return super().infer_relative_search_space(study, trial)


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_sigterm_while_a_trial_is_created_fails_it(tmp_path: Path, quick_heartbeat: None) -> None:
    stored = new_study(f"sqlite:///{tmp_path / 's.db'}")
    stored.study.sampler = SignalledSampler()
    with sigterm_as_interrupt(), pytest.raises(Terminated) as stopped:
        work_until_target(stored, two_objectives, target=3)
    trials = stored.study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING], "not RUNNING"
    assert trials[0].user_attrs["fail_reason"] == "interrupted"
    assert interrupted_trial(stopped.value) == trials[0].number


def test_workers_starting_together_get_their_own_sampler_seeds(tmp_path: Path) -> None:
    """Two `hpo run` on one study (salt 0) started at the same trial count drew the same
    configurations; the second now takes another seed offset, the first keeps its own."""
    from hpo.search.samplers import make_sampler
    from hpo.store.claims import claimer

    stored = new_study(f"sqlite:///{tmp_path / 's.db'}")
    first = own_seed_offset(claimer(stored), 3)
    second = own_seed_offset(claimer(stored), 3)
    assert first == 3, "a lone worker's offset is the trial count: reproducible"
    assert second != first
    assert own_seed_offset(claimer(stored), 4) == 4
    spec = validate({"study": {"name": "s", "sampler": "random"}, "search": {"lr": [0.1, 0.2]}})
    draws = []
    for offset in (first, second):
        study = optuna.create_study(sampler=make_sampler(spec, seed_offset=offset))
        draws.append([study.ask().suggest_float("x", 0.0, 1.0) for _ in range(3)])
    assert draws[0] != draws[1]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # asked by hand
def test_a_queued_retry_starts_without_the_failed_runs_models_and_details(
    tmp_path: Path,
) -> None:
    """The failed run's uploaded model and recorded details stay with it (a retry showed them
    as its own); what the samplers keep (a grid point, a queued configuration) goes along."""
    from hpo.store.lost import queue_again

    stored = new_study(f"sqlite:///{tmp_path / 's.db'}")
    trial = stored.study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    attrs = {
        "artifacts:abc": {"filename": "model.onnx"},
        "hpo:detail:latency": {"median_ms": 1.0},
        "hpo:config": {"x": 0.5},
        "grid_id": 3,
    }
    for key, value in attrs.items():
        stored.storage.set_trial_system_attr(trial._trial_id, key, value)
    stored.study.tell(trial, state=TrialState.FAIL)
    again = queue_again(stored, stored.frozen_trial(trial.number))
    retry = stored.frozen_trial(again)
    assert retry.state == TrialState.WAITING
    assert retry.params == stored.frozen_trial(trial.number).params
    assert retry.system_attrs == {"grid_id": 3}


def test_an_interrupted_configuration_runs_again_first(
    tmp_path: Path, quick_heartbeat: None
) -> None:
    """Ctrl-C stops trial 0; the next run's first trial is trial 0's configuration (a study's
    starting configuration is not lost), and the study still ends at its target."""
    stored = new_study(f"sqlite:///{tmp_path / 's.db'}")
    tried: list[float] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        tried.append(trial.suggest_float("x", 0.0, 1.0))
        if len(tried) == 1:
            raise KeyboardInterrupt
        return tried[-1], 1.0

    with pytest.raises(KeyboardInterrupt) as stopped:
        work_until_target(stored, objective, target=2)
    assert queued_again(stopped.value) == 1
    work_until_target(stored, objective, target=2)
    trials = stored.study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert tried[1] == tried[0] != tried[2]


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)
def test_sigterm_while_a_result_is_stored_keeps_it(
    tmp_path: Path, quick_heartbeat: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = new_study(f"sqlite:///{tmp_path / 's.db'}")
    store_state = stored.storage.set_trial_state_values

    def signalled(*args: object, **kwargs: object) -> bool:
        signal.raise_signal(signal.SIGTERM)  # while the result is being written
        return store_state(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stored.storage, "set_trial_state_values", signalled)
    with sigterm_as_interrupt(), pytest.raises(Terminated):
        work_until_target(stored, two_objectives, target=3)
    trials = stored.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE], "stored, then the worker stops"


def wait_until_running(url: str, name: str, worker: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker ended before its trial started"
        try:
            study = optuna.load_study(study_name=name, storage=url)
            if study.get_trials(states=(TrialState.RUNNING,)):
                time.sleep(1.0)  # let it get into training
                return
        except KeyError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"no trial started within {timeout} s")


def test_an_at_sign_where_it_belongs_is_neither_refused_nor_masked() -> None:
    # An escaped @ in a database name, and one in a SQLite file name, are only characters.
    assert parse_url("postgresql://u:pw@db/runs%40lab").database == "runs@lab"
    assert "***" not in mask_password("sqlite:////data/run:1@x.db")


def test_passwords_in_query_options_are_masked() -> None:
    url = "postgresql://u:hunter2@db:5432/x?sslmode=require&password=swordfish"
    # The same URL with a port that is not a number: only the fallback masks it.
    malformed = url.replace(":5432", ":port")
    for shown in (safe_url(parse_url(url)), mask_password(url), mask_password(malformed)):
        assert "hunter2" not in shown and "swordfish" not in shown
        assert "sslmode=require" in shown and "password=***" in shown


def test_shown_urls_keep_their_options_escaped() -> None:
    # The URL shown in a hint must work when pasted back.
    url = "postgresql://u:pw@db/x?application_name=a%26b&options=a%2Bb"
    shown = safe_url(parse_url(url))
    assert shown.endswith("?application_name=a%26b&options=a%2Bb")
    assert parse_url(shown).query == parse_url(url).query


def test_scrub_masks_a_short_password_only_where_it_stands_alone() -> None:
    url = parse_url("postgresql://u:e@db/x")
    message = scrub('connection failed for "u" with password e\nsecond line', url)
    assert message == 'connection failed for "u" with password ***'
