"""Storage URLs: parse and check them, mask their passwords, and pick each engine's options.

PostgreSQL: `pool_pre_ping` and a pool recycle time (Optuna turns pre-ping on only for MySQL), a
small pool and a connect timeout. SQLite: WAL journal and a busy timeout, so a few local workers do
not crash with "database is locked". Passwords never appear in messages.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from hpo.core.errors import StorageError
from hpo.store.races import retry_lost_race

DEFAULT_STORAGE = "sqlite:///hpo.db"
SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql")
SQLITE_BUSY_TIMEOUT_S = 60
# Schemes people often type for PostgreSQL that SQLAlchemy does not know.
_SCHEME_HINTS = {"postgres": "postgresql", "pgsql": "postgresql", "psql": "postgresql"}


def parse_url(url: str) -> URL:
    """Parse and check a storage URL; malformed or unsupported URLs are a StorageError."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StorageError(
            f"malformed storage URL {mask_password(url)!r}; expected e.g. sqlite:///hpo.db or "
            f"postgresql://user:password@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        hint = f" (did you mean {_SCHEME_HINTS[backend]}://?)" if backend in _SCHEME_HINTS else ""
        raise StorageError(
            f"unsupported storage {backend!r} in {safe_url(parsed)}{hint}; "
            f"allowed: {', '.join(SUPPORTED_BACKENDS)}"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # SQLAlchemy 2.x maps plain postgresql:// to psycopg2; we ship psycopg 3.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: URL | str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    if isinstance(url, str):
        return mask_password(url)
    return url.render_as_string(hide_password=True)


def mask_password(text: str) -> str:
    """Best-effort masking of a password in any URL-like string, even a malformed one."""
    try:
        return make_url(text).render_as_string(hide_password=True)
    except Exception:
        scheme, sep, rest = text.partition("://")
        credentials, at, host = rest.rpartition("@")
        if not sep or not at or ":" not in credentials:
            return text
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def scrub(message: str, url: URL) -> str:
    """The first line of a driver message, with the URL's password (if any) replaced by ***."""
    if url.password:
        message = message.replace(str(url.password), "***")
    return message.strip().splitlines()[0] if message.strip() else "unknown error"


def engine_kwargs(url: URL) -> dict[str, Any]:
    """SQLAlchemy engine options for the URL's database."""
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    return {
        "pool_pre_ping": True,
        "pool_recycle": 300,
        "pool_size": 2,
        "max_overflow": 2,
        "connect_args": {"connect_timeout": 10},
    }


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL (None for in-memory or other databases)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


def prepare_sqlite(url: URL) -> None:
    """Check the SQLite file's folder exists and switch the file to WAL mode."""
    path = sqlite_path(url)
    if path is None:
        return
    if not path.parent.is_dir():
        raise StorageError(
            f"cannot create SQLite database {path}: folder {path.parent} does not exist"
        )
    # Checked before SQLite opens the file: it would say "unable to open database file", or
    # leave -wal and -shm files behind when it then refuses to write.
    if not os.access(path.parent, os.W_OK):
        raise StorageError(
            f"SQLite database {path}: folder {path.parent} is read-only; the database file and "
            f"its folder must be writable (SQLite keeps its -wal and -shm files next to it)"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError(
            f"SQLite database {path} is read-only; the database file and its folder must be "
            f"writable"
        )

    # WAL lets readers (dashboard, `hpo best`) work while a worker writes; the mode persists.
    # Switching the mode needs the file to itself, and SQLite answers "database is locked" at
    # once (without waiting out the busy timeout) when workers started together on a new file
    # switch it at the same moment: try again a few times.
    def switch() -> None:
        with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as connection:
            connection.execute("PRAGMA journal_mode=WAL")

    try:
        retry_lost_race(
            switch,
            lambda exc: isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc),
        )
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open SQLite database {path}: {exc}") from None
