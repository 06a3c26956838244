"""Database errors that retrying cannot fix: a damaged file, a full disk, a read-only folder.

Each is one line naming the problem, exit 2, and never an outage that is waited out.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from hpo.core.errors import StorageError
from hpo.store.connect import open_storage
from hpo.store.resilience import RETRY_ENV
from tests import synthetic
from tests.conftest import ROOT, invoke

QUICKSTART = ROOT / "studies" / "quickstart.toml"


def damage_one_page(db: Path) -> None:
    """Overwrite the second page of a valid SQLite file (its header and schema stay intact)."""
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself
        page = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    with db.open("r+b") as file:
        file.seek(page)
        file.write(bytes(range(256)) * (page // 256))


@pytest.mark.parametrize(
    "command",
    [
        ["studies"],
        ["best", "--study-name", "synthetic"],
        ["create", str(QUICKSTART), "--study-name", "synthetic"],
    ],
)
def test_a_damaged_database_is_one_line(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "s.db"
    synthetic.make_studies(f"sqlite:///{db}")
    damage_one_page(db)
    result = invoke(*command, "--storage", f"sqlite:///{db}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "is damaged: database disk image is malformed" in result.stderr


def test_a_full_disk_is_named_and_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own "database or disk is full" (SQLITE_FULL), from a page limit at the size
    the file has: not an outage to wait out for the retry budget."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic.make_studies(url)
    monkeypatch.setenv(RETRY_ENV, "120")
    storage = open_storage(url)

    @event.listens_for(storage.engine, "connect")
    def no_room(connection: sqlite3.Connection, record: object) -> None:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")

    storage.engine.dispose()
    study_id = storage.get_study_id_from_name("synthetic")
    started = time.monotonic()
    with pytest.raises(StorageError, match="no space left for the database .*disk is full"):
        for number in range(1000):
            storage.set_study_user_attr(study_id, f"filler {number}", "x" * 10_000)
    assert time.monotonic() - started < 20
    storage.engine.dispose()


@pytest.fixture
def read_only_folder() -> Iterator[Path]:
    """A folder with a database in it that the CLI's user may read but not write."""
    folder = Path(tempfile.mkdtemp(prefix="hpo-read-only-"))
    synthetic.make_studies(f"sqlite:///{folder / 's.db'}")
    for leftover in folder.glob("s.db-*"):
        leftover.unlink()
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def run_unprivileged(*args: str) -> subprocess.CompletedProcess:
    """The CLI as a user without root's licence to write anywhere (as this user if not root)."""
    drop = []
    if os.geteuid() == 0:
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return subprocess.run(
        [*drop, sys.executable, "-m", "hpo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_read_only_folder_is_named_and_left_as_it_was(read_only_folder: Path) -> None:
    for name in ("s.db", "new.db"):
        result = run_unprivileged("studies", "--storage", f"sqlite:///{read_only_folder / name}")
        if name == "new.db":  # `studies` does not create a database; `create` would
            result = run_unprivileged(
                "create", str(QUICKSTART), "--storage", f"sqlite:///{read_only_folder / name}"
            )
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert f"folder {read_only_folder} is read-only" in result.stderr
    assert sorted(p.name for p in read_only_folder.iterdir()) == ["s.db"]
