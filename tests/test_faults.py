"""Faults around the database: the outage budget, concurrent first use, refusals.

These drive the storage layer in this process against real SQLite files and the PostgreSQL
server (or a private cluster where the server's settings must change).
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import optuna
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.exc import OperationalError

from hpo.core.errors import StorageError
from hpo.core.spec import validate
from hpo.store.connect import open_storage
from hpo.store.studies import create_or_load_study
from tests.conftest import invoke
from tests.pg import (
    SERVER,
    Cluster,
    create_database,
    drop_database,
    pg_url,
    private_postgres,
    server_problem,
)
from tests.synthetic import SPEC
from tests.test_workers import tiny_spec

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


# --- first use of a new database -------------------------------------------------------------

FIRST_USERS = 3


def create_at_once(url: str) -> list[str]:
    """What `hpo create` does to the database, from FIRST_USERS threads released together (each
    with its own engine and connections, as separate processes would have); their errors."""
    barrier = threading.Barrier(FIRST_USERS)
    errors: list[str] = []

    def first_use() -> None:
        barrier.wait()
        try:
            create_or_load_study(validate(SPEC), open_storage(url)).storage.engine.dispose()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=first_use) for _ in range(FIRST_USERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


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
