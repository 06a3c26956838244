"""Storage URLs: parse and check them, mask their passwords, and pick each engine's options.

PostgreSQL: `pool_pre_ping` and a pool recycle time (Optuna turns pre-ping on only for MySQL), a
small pool and a connect timeout. SQLite: WAL journal and a busy timeout, so a few local workers do
not crash with "database is locked". Passwords never appear in messages.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from hpo.core.errors import StorageError
from hpo.store.races import retry_lost_race

DEFAULT_STORAGE = "sqlite:///hpo.db"
SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql")
SQLITE_BUSY_TIMEOUT_S = 60
# Schemes people often type for PostgreSQL that SQLAlchemy does not know.
_SCHEME_HINTS = {"postgres": "postgresql", "pgsql": "postgresql", "psql": "postgresql"}
# Secrets shorter than this are masked only where they stand apart from other letters.
_SHORT_SECRET = 4
# Query options of a URL that carry a secret (libpq takes `?password=...` as well as `user:pw@`).
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "pass", "sslpassword"})
_SECRET_QUERY = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_QUERY_KEYS, key=len, reverse=True)) + r")=[^&\s'\"]*"
)
# `user:secret@` anywhere in a text: what a URL typed with a slash too many or too few
# (postgresql:///u:pw@host/db, postgresql//u:pw@host/db) still shows of its password.
# The secret does not start with a slash: sqlite:///a@b.db is a file name.
_CREDENTIALS = re.compile(r"([^\s:/@'\"]*):(?!/)[^\s@'\"]+@")


def parse_url(url: str) -> URL:
    """Parse and check a storage URL; malformed or unsupported URLs are a StorageError."""
    if url != url.strip():
        # 'sqlite:///hpo.db ' would make a file whose name ends with a space.
        raise StorageError(
            f"malformed storage URL {mask_password(url)!r}: it starts or ends with white space"
        )
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StorageError(
            f"malformed storage URL {mask_password(url)!r}; expected e.g. sqlite:///hpo.db or "
            f"postgresql://user:password@host:5432/dbname"
        ) from None
    if parsed.get_backend_name() != "sqlite" and not parsed.host and "@" in (parsed.database or ""):
        # postgresql:///u:pw@host/db: with three slashes, all of it is the database name.
        raise StorageError(
            f"malformed storage URL {mask_password(url)!r}: the user and host are in the "
            "database name; expected two slashes, postgresql://user:password@host:5432/dbname"
        )
    if "@" in (parsed.host or ""):
        # `user:p@ss@host`: the URL parser takes the password up to the first @.
        raise StorageError(
            f"malformed storage URL {mask_password(url)!r}: an @ in the user name or password "
            f"must be written %40"
        )
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        hint = f" (did you mean {_SCHEME_HINTS[backend]}://?)" if backend in _SCHEME_HINTS else ""
        raise StorageError(
            f"unsupported storage {backend!r} in {safe_url(parsed)}{hint}; "
            f"allowed: {', '.join(SUPPORTED_BACKENDS)}"
        )
    if backend == "sqlite":
        if (parsed.database or "").startswith("~"):
            # sqlite:///~/hpo.db: SQLite itself would open a folder named "~".
            parsed = parsed.set(database=str(Path(parsed.database or "").expanduser()))
        _check_sqlite(parsed)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # SQLAlchemy 2.x maps plain postgresql:// to psycopg2; we ship psycopg 3.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _check_sqlite(url: URL) -> None:
    """A SQLite URL names a file and takes no options: hpo sets the busy timeout and journal."""
    path = sqlite_path(url)
    if path is None:
        raise StorageError(
            "in-memory SQLite keeps nothing once the command ends; name a file, e.g. "
            "sqlite:///hpo.db"
        )
    if problem := _path_problem(str(path)):
        shown = str(path).encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise StorageError(f"SQLite database '{shown}': {problem}")
    if url.query:
        raise StorageError(
            f"SQLite URL options are not supported ({', '.join(sorted(url.query))} in "
            f"{safe_url(url)}): hpo sets the busy timeout and journal mode itself; write "
            f"sqlite:///path/to/file.db"
        )


def _path_problem(path: str) -> str:
    """Why the file system cannot hold a file at `path`, or '': checked before SQLite opens
    it, which would raise deep inside, or create the file and then fail to name it."""
    if "\x00" in path:
        return "the path holds a NUL character, which no file name can"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "the path is not valid UTF-8 (a byte of another encoding); name the file in UTF-8"
    name = Path(path).name
    try:
        longest = os.pathconf(
            Path(path).parent if Path(path).parent.is_dir() else "/", "PC_NAME_MAX"
        )
    except (OSError, ValueError):
        longest = 255
    if len(name.encode("utf-8")) > longest:
        return f"the file name is {len(name.encode('utf-8'))} bytes long; at most {longest} fit"
    return ""


def safe_url(url: URL | str) -> str:
    """The URL with its password (in the user part or a query option) replaced by ***, for
    messages and logs."""
    if isinstance(url, str):
        return mask_password(url)
    bare = url.set(query={}).render_as_string(hide_password=True)
    if not url.query:
        return bare
    # Written by hand: SQLAlchemy would percent-encode the *** of a masked option.
    options = [
        f"{quote_plus(key)}={'***' if key.lower() in SECRET_QUERY_KEYS else quote_plus(value)}"
        for key, value in _query_options(url)
    ]
    return f"{bare}?{'&'.join(options)}"


def _query_options(url: URL) -> list[tuple[str, str]]:
    """The URL's query options as (key, value) pairs, a repeated key once per value."""
    return [
        (key, value)
        for key, values in url.query.items()
        for value in (values if isinstance(values, tuple) else (values,))
    ]


def mask_password(text: str) -> str:
    """Best-effort masking of a password in any URL-like string, even a malformed one."""
    try:
        parsed = make_url(text)
    except Exception:
        parsed = None
    # An @ in the host, or in a server's database name (postgresql:///u:pw@host/db), is a
    # password the parser did not find; in a SQLite file name it is only a character.
    if parsed is not None and "@" not in (parsed.host or "") + (
        "" if parsed.get_backend_name() == "sqlite" else parsed.database or ""
    ):
        return safe_url(parsed)
    # Malformed, or an unescaped @ in the password: everything before the last @ that follows
    # a colon may be secret.
    scheme, sep, rest = text.partition("://")
    credentials, at, host = rest.rpartition("@")
    if sep and at and ":" in credentials:
        text = f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return _CREDENTIALS.sub(r"\1:***@", _SECRET_QUERY.sub(r"\1=***", text))


def scrub(message: str, url: URL) -> str:
    """The first line of a driver message, with the URL's secrets (if any) replaced by ***.

    A secret of fewer than 4 characters is replaced only where it stands apart, not inside a
    word: a one-letter password must not turn "connection" into "conn***ction"."""
    secrets = [str(url.password)] if url.password else []
    secrets += [value for key, value in _query_options(url) if key.lower() in SECRET_QUERY_KEYS]
    message = _CREDENTIALS.sub(r"\1:***@", _SECRET_QUERY.sub(r"\1=***", message))
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        if len(secret) >= _SHORT_SECRET:
            message = message.replace(secret, "***")
        else:
            message = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", message)
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
    return Path(url.database)


def prepare_sqlite(url: URL, *, wal: bool = True) -> None:
    """Check the SQLite file's folder exists and (when `wal`) switch the file to WAL mode."""
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

    if not wal:
        return

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
