"""Open a study database and the studies in it.

`open_storage` gives a ResilientRDBStorage with heartbeats (a trial whose worker died is marked
FAIL and retried once) and the engine options of its database; `StoredStudy` keeps a study
together with the storage it was opened on, which is passed down to whatever needs the database.
"""

from __future__ import annotations

import datetime
import sqlite3
import warnings
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from hpo.core.errors import SpecError, StorageError
from hpo.core.names import DIRECTIONS
from hpo.core.trial_attrs import SPEC_ATTR
from hpo.store.races import retry_lost_race
from hpo.store.refusals import refusal_message
from hpo.store.resilience import Resilience, ResilientRDBStorage
from hpo.store.url import engine_kwargs, parse_url, prepare_sqlite, safe_url, scrub, sqlite_path

_T = TypeVar("_T")

# Optuna's own tables: a database without them has never held a study.
_OPTUNA_TABLES = frozenset({"studies", "version_info"})


def open_storage(url: str, *, create: bool = True, read_only: bool = False) -> ResilientRDBStorage:
    """Connect to the database at `url` (creating Optuna's tables when `create`; without
    `create`, a database that has none is refused untouched). `read_only`: the caller only
    reads, so a SQLite file keeps its journal mode (hpo's own files are WAL already)."""
    parsed = parse_url(url)
    resilience = Resilience.from_env()
    database = sqlite_path(parsed)
    if database is not None:
        if not create and not database.is_file():
            raise StorageError(f"no SQLite database at {database}")
        if not create and _sqlite_lacks_optuna_tables(database):
            raise _no_studies(parsed)
        prepare_sqlite(parsed, wal=not read_only)
    try:
        if not create and database is None and _server_lacks_optuna_tables(parsed):
            raise _no_studies(parsed)
        storage = _first_use_safely(
            lambda: ResilientRDBStorage(
                parsed.render_as_string(hide_password=False),
                engine_kwargs=engine_kwargs(parsed),
                heartbeat_interval=resilience.heartbeat_interval,
                grace_period=resilience.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                where=safe_url(parsed),
                retry_seconds=resilience.retry_seconds,
            )
        )
    except StorageError:
        raise
    except ImportError as exc:
        raise StorageError(f"no database driver for {safe_url(parsed)}: {exc}") from None
    except Exception as exc:  # SQLAlchemy/driver errors differ per engine
        refused = refusal_message(exc, parsed)
        if refused is not None:
            raise StorageError(refused) from None
        where = f"file {database}" if database is not None else f"host {_host_of(parsed)}"
        raise StorageError(
            f"cannot connect to {safe_url(parsed)} ({where}): {scrub(str(exc), parsed)}"
        ) from None
    return storage


def _host_of(url: URL) -> str:
    """The server a URL names: its host, or libpq's `?host=` option (a host or a socket
    folder), or the local socket libpq falls back to."""
    option = url.query.get("host")
    given = option if isinstance(option, str) else (option[0] if option else None)
    return url.host or given or "localhost (the default socket)"


def _sqlite_lacks_optuna_tables(path: Path) -> bool:
    """Whether the SQLite file surely has no Optuna tables, read without writing to it (False
    when it cannot be read as a database: opening it then says why)."""
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error:
        return False
    return not _OPTUNA_TABLES.issubset(names)


def _server_lacks_optuna_tables(url: URL) -> bool:
    """Whether a database server's database has no Optuna tables (connection errors raise,
    for `open_storage` to word)."""
    engine = create_engine(url.render_as_string(hide_password=False), **engine_kwargs(url))
    try:
        return not _OPTUNA_TABLES.issubset(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _no_studies(url: URL) -> StorageError:
    return StorageError(
        f"{safe_url(url)} holds no Optuna studies (none of Optuna's tables), so there is "
        f"nothing to read; `hpo run` or `hpo create` makes a study there"
    )


def _first_use_safely(open_: Callable[[], _T]) -> _T:
    """`open_()`, tried again when it lost a race to create the schema of a new database.

    Optuna creates its tables (and a version row) on first use; several workers or `hpo
    create` started together on a new database collide there ("table already exists",
    PostgreSQL's duplicate pg_type entry, a duplicate version row). The loser's transaction
    is rolled back; a moment later the tables are there and opening succeeds.
    """

    def open_quietly() -> _T:
        with warnings.catch_warnings():
            # Heartbeats and their retry callback are marked experimental; they are what we want.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return open_()

    return retry_lost_race(open_quietly, _lost_schema_race)


def _lost_schema_race(exc: Exception) -> bool:
    """Whether `exc` says another process created the same schema object just now."""
    if not isinstance(exc, (IntegrityError, ProgrammingError, OperationalError)):
        return False
    if isinstance(exc, IntegrityError):
        return True  # only concurrent creation inserts conflicting rows while opening
    message = str(getattr(exc, "orig", None) or exc)
    # SQLite may also answer a schema write that collides with another's "database is locked".
    return "already exists" in message or "database is locked" in message


@dataclass(frozen=True)
class StoredStudy:
    """An Optuna study with the storage it was opened on and its id in that storage."""

    study: optuna.Study
    storage: ResilientRDBStorage
    study_id: int = field(compare=False)

    @classmethod
    def of(cls, study: optuna.Study, storage: ResilientRDBStorage) -> StoredStudy:
        """Wrap a study that was created or loaded on `storage`."""
        return cls(study, storage, storage.get_study_id_from_name(study.study_name))

    @property
    def name(self) -> str:
        return self.study.study_name

    def frozen_trial(self, number: int) -> FrozenTrial:
        """The trial numbered `number` as stored now."""
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        return self.storage.get_trial(trial_id)


def retry_of(trial: FrozenTrial) -> int | None:
    """The number of the dead worker's trial that `trial` redoes, or None."""
    with warnings.catch_warnings():
        # Marked experimental since Optuna 2.8; it is the public way to read this.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def study_names(storage: ResilientRDBStorage) -> list[str]:
    """Names of every study in the storage."""
    return [s.study_name for s in storage.get_all_studies()]


def load_study(storage: ResilientRDBStorage, name: str) -> StoredStudy:
    """Load an existing study; an unknown name is a StorageError listing the known ones."""
    names = study_names(storage)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise StorageError(f"no study named {name!r} in this storage; studies: {known}")
    study = optuna.load_study(study_name=name, storage=storage)
    check_objectives(study)
    return StoredStudy.of(study, storage)


def check_objectives(study: optuna.Study) -> None:
    """Refuse a study whose objectives are not hpo's (accuracy maximized, latency minimized):
    another program made it, and reading its values as accuracy and latency would be wrong."""
    directions = tuple(d.name.lower() for d in study.directions)
    if directions != DIRECTIONS:
        raise StorageError(
            f"study {study.study_name!r} optimizes {len(directions)} objective(s) "
            f"({', '.join(directions)}), not hpo's two (accuracy: maximize, latency: "
            f"minimize): another program made it; use another --study-name"
        )


def check_made_by_hpo(study: optuna.Study) -> None:
    """Refuse a study with trials but no hpo spec: another program made it, and its trials
    would be read (or counted) as hpo's. An empty one is an `hpo create` stopped before it
    stored the spec: the same `create` finishes it."""
    if SPEC_ATTR in study.user_attrs:
        return
    count = len(study.get_trials(deepcopy=False))
    if count:
        raise SpecError(
            f"study {study.study_name!r} was made by another program: it has {count} trials "
            "and no hpo spec; use another --study-name"
        )


def read(storage: ResilientRDBStorage, query: Callable[[Connection], _T]) -> _T:
    """Run a read-only `query` on one connection, waiting out outages like Optuna's calls."""

    def run() -> _T:
        with storage.engine.connect() as connection:
            return query(connection)

    return storage.retrying(run)


def database_now(connection: Connection) -> datetime.datetime:
    """The database's clock, the one that judges every worker: workers' own clocks may differ.

    Naive, as heartbeats and probe placeholders are compared (PostgreSQL hands back now()
    with a time zone; SQLite's is UTC).
    """
    return connection.execute(select(func.now())).scalar_one().replace(tzinfo=None)
