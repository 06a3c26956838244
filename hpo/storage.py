"""Storage URL -> Optuna RDBStorage with the engine options each database needs.

PostgreSQL: `pool_pre_ping` and a pool recycle time (Optuna turns pre-ping on only for MySQL), a
small pool and a connect timeout. SQLite: WAL journal and a busy timeout, so a few local workers do
not crash with "database is locked". Both: a heartbeat, so a trial whose worker died is marked FAIL
and retried once. Passwords never appear in messages.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from hpo.errors import StorageError

DEFAULT_STORAGE = "sqlite:///hpo.db"
SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql")
HEARTBEAT_INTERVAL_S = 20
GRACE_PERIOD_S = 60
SQLITE_BUSY_TIMEOUT_S = 60


def parse_url(url: str) -> URL:
    """Parse and check a storage URL; malformed or unsupported URLs are a StorageError."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StorageError(
            f"malformed storage URL {mask_password(url)!r}; expected e.g. sqlite:///hpo.db or "
            f"postgresql://user:password@host:5432/dbname"
        ) from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise StorageError(
            f"unsupported storage {parsed.get_backend_name()!r} in {safe_url(parsed)}; "
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


def _scrub(message: str, url: URL) -> str:
    if url.password:
        message = message.replace(str(url.password), "***")
    return message.strip().splitlines()[0] if message.strip() else "unknown error"


def _engine_kwargs(url: URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    connect_args = {"connect_timeout": 10}
    return {
        "pool_pre_ping": True,
        "pool_recycle": 300,
        "pool_size": 2,
        "max_overflow": 2,
        "connect_args": connect_args,
    }


def _prepare_sqlite(url: URL) -> None:
    database = url.database or ""
    if database in ("", ":memory:"):
        return
    path = Path(database).expanduser()
    if not path.parent.is_dir():
        raise StorageError(
            f"cannot create SQLite database {path}: folder {path.parent} does not exist"
        )
    # WAL lets readers (dashboard, `hpo best`) work while a worker writes; the mode persists.
    try:
        with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open SQLite database {path}: {exc}") from None


def open_storage(url: str, *, create: bool = True) -> RDBStorage:
    """Connect to the database at `url` (creating Optuna's tables when `create`)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = Path(parsed.database or "").expanduser()
        if not create and not database.is_file():
            raise StorageError(f"no SQLite database at {database}")
        _prepare_sqlite(parsed)
    try:
        return RDBStorage(
            parsed.render_as_string(hide_password=False),
            engine_kwargs=_engine_kwargs(parsed),
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=GRACE_PERIOD_S,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
        )
    except ImportError as exc:
        raise StorageError(f"no database driver for {safe_url(parsed)}: {exc}") from None
    except Exception as exc:  # SQLAlchemy/driver errors differ per engine; all mean "unreachable"
        where = parsed.host or parsed.database or safe_url(parsed)
        raise StorageError(
            f"cannot connect to {safe_url(parsed)} (host {where}): {_scrub(str(exc), parsed)}"
        ) from None


def study_names(storage: RDBStorage) -> list[str]:
    """Names of every study in the storage."""
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
