"""Storage URL -> Optuna RDBStorage with the engine options each database needs.

PostgreSQL: `pool_pre_ping` and a pool recycle time (Optuna turns pre-ping on only for MySQL), a
small pool and a connect timeout. SQLite: WAL journal and a busy timeout, so a few local workers do
not crash with "database is locked". Both: a heartbeat, so a trial whose worker died is marked FAIL
and retried once, and retries of calls that fail because the database went away for a while (a
restart, a failover), so workers ride it out. Passwords never appear in messages.

Connection problems when the storage is opened are a StorageError at once (a wrong URL should fail
fast); only later outages are retried.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy import select
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from hpo.errors import StorageError

DEFAULT_STORAGE = "sqlite:///hpo.db"
SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql")
HEARTBEAT_INTERVAL_S = 20
GRACE_PERIOD_S = 60
RETRY_SECONDS = 120
SQLITE_BUSY_TIMEOUT_S = 60
# Environment variables that tune the heartbeat and the outage retries (tests use small values).
HEARTBEAT_ENV = "HPO_HEARTBEAT_INTERVAL"
GRACE_ENV = "HPO_GRACE_PERIOD"
RETRY_ENV = "HPO_DB_RETRY_SECONDS"
# Schemes people often type for PostgreSQL that SQLAlchemy does not know.
_SCHEME_HINTS = {"postgres": "postgresql", "pgsql": "postgresql", "psql": "postgresql"}

_log = logging.getLogger("hpo.storage")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Resilience:
    """Heartbeat interval, grace period before a silent trial is failed, outage retry budget."""

    heartbeat_interval: int = HEARTBEAT_INTERVAL_S
    grace_period: int = GRACE_PERIOD_S
    retry_seconds: float = RETRY_SECONDS

    @classmethod
    def from_env(cls) -> Resilience:
        """Defaults, overridden by the HPO_HEARTBEAT_INTERVAL/GRACE_PERIOD/DB_RETRY_SECONDS env."""
        interval = _env_number(HEARTBEAT_ENV, HEARTBEAT_INTERVAL_S, integer=True)
        grace = _env_number(GRACE_ENV, GRACE_PERIOD_S, integer=True)
        retry = _env_number(RETRY_ENV, RETRY_SECONDS, integer=False, allow_zero=True)
        if grace <= interval:
            # A live worker beats every `interval` s; a shorter grace would fail its trials.
            raise StorageError(
                f"{GRACE_ENV}={grace} must be greater than {HEARTBEAT_ENV}={interval} "
                f"(seconds); e.g. three times it"
            )
        return cls(int(interval), int(grace), float(retry))


def _env_number(name: str, default: float, *, integer: bool, allow_zero: bool = False) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and not allow_zero):
        kind = "whole number of seconds" if integer else "number of seconds"
        least = ">= 0" if allow_zero else "> 0"
        raise StorageError(f"{name}={text!r}: expected a {kind} {least}")
    return value


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


def transient_cause(exc: BaseException) -> DBAPIError | None:
    """The error behind `exc` that means the database was unreachable or busy, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OperationalError | InterfaceError):
            return current
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return current
        current = current.__cause__ or current.__context__
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) means the database was unreachable or busy for a while."""
    return transient_cause(exc) is not None


def outage_message(exc: BaseException, url: str) -> str:
    """One line for a database that stayed unreachable longer than the retries (no password)."""
    cause = transient_cause(exc) or exc
    detail = _scrub(str(getattr(cause, "orig", None) or cause), parse_url(url))
    return f"lost the database {safe_url(url)} after retrying ({RETRY_ENV}): {detail}"


# Storage calls retried when the database goes away. Reads are safe to repeat; the writes are
# upserts or state changes Optuna already guards (a repeated COMPLETE raises
# UpdateFinishedTrialError, which the worker handles). `_get_trials` is what Optuna's cache calls.
_RETRIED_METHODS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "_get_trials",
    "get_best_trial",
    "record_heartbeat",
    "_get_stale_trial_ids",
)


class ResilientRDBStorage(RDBStorage):
    """RDBStorage whose calls wait out a database outage (up to `retry_seconds`) and go on.

    `pool_pre_ping` throws away connections the restart killed; this class covers the seconds
    while the server is down, when every new connection is refused.
    """

    retry_seconds: float = 0.0
    where: str = "the database"
    _local = threading.local()

    def _retrying(self, call: Callable[[], _T]) -> _T:
        if getattr(self._local, "active", False) or self.retry_seconds <= 0:
            return call()  # an outer call already retries (methods call each other)
        self._local.active = True
        deadline = time.monotonic() + self.retry_seconds
        delay, outage_started = 0.25, 0.0
        try:
            while True:
                try:
                    result = call()
                except (StorageInternalError, DBAPIError) as exc:
                    if not is_transient(exc) or time.monotonic() + delay > deadline:
                        raise
                    if not outage_started:
                        outage_started = time.monotonic()
                        _log.warning(
                            "hpo: %s unreachable (%s); retrying for up to %.0f s",
                            self.where,
                            _scrub(str(transient_cause(exc) or exc), make_url(self.url)),
                            self.retry_seconds,
                        )
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                if outage_started:
                    _log.warning(
                        "hpo: %s reachable again after %.1f s",
                        self.where,
                        time.monotonic() - outage_started,
                    )
                return result
        finally:
            self._local.active = False


def _retry_method(name: str) -> Callable[..., Any]:
    original = getattr(RDBStorage, name)

    @functools.wraps(original)
    def method(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(lambda: original(self, *args, **kwargs))

    return method


for _name in _RETRIED_METHODS:
    setattr(ResilientRDBStorage, _name, _retry_method(_name))


def open_storage(url: str, *, create: bool = True) -> RDBStorage:
    """Connect to the database at `url` (creating Optuna's tables when `create`)."""
    parsed = parse_url(url)
    resilience = Resilience.from_env()
    if parsed.get_backend_name() == "sqlite":
        database = Path(parsed.database or "").expanduser()
        if not create and not database.is_file():
            raise StorageError(f"no SQLite database at {database}")
        _prepare_sqlite(parsed)
    try:
        with warnings.catch_warnings():
            # Heartbeats and their retry callback are marked experimental; they are what we want.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = ResilientRDBStorage(
                parsed.render_as_string(hide_password=False),
                engine_kwargs=_engine_kwargs(parsed),
                heartbeat_interval=resilience.heartbeat_interval,
                grace_period=resilience.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except ImportError as exc:
        raise StorageError(f"no database driver for {safe_url(parsed)}: {exc}") from None
    except Exception as exc:  # SQLAlchemy/driver errors differ per engine; all mean "unreachable"
        where = parsed.host or parsed.database or safe_url(parsed)
        raise StorageError(
            f"cannot connect to {safe_url(parsed)} (host {where}): {_scrub(str(exc), parsed)}"
        ) from None
    # Retries start only now: at start a wrong URL must fail at once, not after minutes.
    storage.where = safe_url(parsed)
    storage.retry_seconds = resilience.retry_seconds
    return storage


def resilience_of(storage: RDBStorage) -> Resilience:
    """The heartbeat interval, grace period and retry budget a storage runs with."""
    interval = storage.heartbeat_interval or HEARTBEAT_INTERVAL_S
    grace = storage.grace_period or 2 * interval
    return Resilience(interval, grace, getattr(storage, "retry_seconds", 0.0))


def rdb_of(study: optuna.Study) -> RDBStorage | None:
    """The RDBStorage behind a study (Optuna wraps it in a cache), or None for other storages."""
    storage = study._storage  # private in Optuna; heartbeats and fast reads need the database
    storage = getattr(storage, "_backend", storage)
    return storage if isinstance(storage, RDBStorage) else None


def read(storage: RDBStorage, query: Callable[[Connection], _T]) -> _T:
    """Run a read-only `query` on one connection, waiting out outages like Optuna's calls."""

    def run() -> _T:
        with storage.engine.connect() as connection:
            return query(connection)

    if isinstance(storage, ResilientRDBStorage):
        return storage._retrying(run)
    return run()


def beating_trial_ids(storage: RDBStorage, study_id: int) -> set[int]:
    """IDs of the study's RUNNING trials that have a heartbeat record.

    Optuna fails only these when they go silent; a RUNNING trial without one (made by a client
    without heartbeat, or a worker killed before its first beat) would stay RUNNING forever.
    """
    from optuna.storages._rdb import models  # Optuna's table models: the schema it writes

    query = (
        select(models.TrialHeartbeatModel.trial_id)
        .join(models.TrialModel, models.TrialModel.trial_id == models.TrialHeartbeatModel.trial_id)
        .where(models.TrialModel.study_id == study_id)
        .where(models.TrialModel.state == TrialState.RUNNING)
    )

    return read(storage, lambda connection: set(connection.execute(query).scalars()))


def load_study(storage: RDBStorage, name: str) -> optuna.Study:
    """Load an existing study; an unknown name is an HpoError listing the known ones."""
    names = [s.study_name for s in storage.get_all_studies()]
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise StorageError(f"no study named {name!r} in this storage; studies: {known}")
    return optuna.load_study(study_name=name, storage=storage)


def study_names(storage: RDBStorage) -> list[str]:
    """Names of every study in the storage."""
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
