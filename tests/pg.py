"""PostgreSQL for tests: a throwaway database on the shared server, or a private cluster.

Tests use the shared server at 127.0.0.1:5432 (override with HPO_TEST_PG) through their own
database, dropped afterwards. A test that restarts PostgreSQL gets a private cluster (initdb +
pg_ctl in a temp folder, on a free port) so it never disturbs anyone else's server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import ROOT

SERVER = os.environ.get("HPO_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def server_problem(server: str = SERVER) -> str | None:
    """Why the PostgreSQL server cannot be used, or None when it can."""
    try:
        with psycopg.connect(f"{server}/postgres", connect_timeout=5):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {server}: {str(exc).strip().splitlines()[0]}"


def create_database(server: str) -> str:
    """Create a database with a fresh random name on `server`; its name."""
    name = f"hpo_test_{secrets.token_hex(6)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(server: str, name: str) -> None:
    """Drop a test database, closing whatever connections a killed worker left open."""
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh database on the shared server (with a password, to check masking)."""
    problem = server_problem()
    if problem:
        pytest.skip(problem)
    name = create_database(SERVER)
    # Trust auth ignores the password; it is there so tests can check it is never printed.
    scheme, rest = SERVER.split("://", 1)
    user, host = rest.split("@", 1) if "@" in rest else ("postgres", rest)
    try:
        yield f"{scheme}://{user}:hunter2@{host}/{name}"
    finally:
        drop_database(SERVER, name)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Cluster:
    """A private PostgreSQL server in a temp folder, run as the `postgres` OS user."""

    bin: Path
    folder: Path
    port: int
    runas: list[str]

    @property
    def server(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _pg_ctl(self, *args: str) -> None:
        command = [
            *self.runas,
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.folder / "data"),
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            "60",
            *args,
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.folder}"
        self._pg_ctl("-o", options, "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def reload(self) -> None:
        """Make the server read its configuration (e.g. pg_hba.conf) again."""
        self._pg_ctl("reload")
        time.sleep(0.5)  # pg_ctl reload only signals the server


def _pg_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


@pytest.fixture
def private_postgres() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster on a free port, stopped and deleted afterwards."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip("initdb/pg_ctl not found (install the postgresql server package)")
    if os.geteuid() == 0:
        # The server refuses to run as root.
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
        runas = ["runuser", "-u", "postgres", "--"]
        owner = "postgres"
    else:
        runas, owner = [], None
    folder = Path(tempfile.mkdtemp(prefix="hpo-pg-"))
    if owner:
        shutil.chown(folder, owner)
    cluster = Cluster(pg_bin, folder, free_port(), runas)
    try:
        subprocess.run(
            [*runas, str(pg_bin / "initdb"), "-D", str(folder / "data"), "-A", "trust"]
            + ["-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        cluster.start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"cannot start a private PostgreSQL: {exc} {detail.decode()[-300:]}")
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def start_cli(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the real `hpo` entry point in the background, stdout+stderr into `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hpo", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            # Ctrl-C reaches a worker as it does in a terminal, even when the suite itself was
            # started in the background, where SIGINT is ignored and children inherit that.
            preexec_fn=default_sigint,
        )


def default_sigint() -> None:
    """In a child before it starts: Ctrl-C as in a terminal (a background shell ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def reaped(processes: list[subprocess.Popen]) -> Iterator[None]:
    """Kill whichever of `processes` still runs when the block ends (a stopped one too), so a
    failing test leaves no worker behind."""
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()


def wait_all(processes: list[subprocess.Popen], timeout: float) -> list[int]:
    """Exit codes of all processes; any still running after `timeout` s is killed (code None)."""
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            codes.append(None)
    return codes
