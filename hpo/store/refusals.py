"""Errors that retrying cannot fix: the database refused this user (wrong credentials, missing
privileges), its file is damaged, its disk is full, or it is read-only.

They are not outages (retrying cannot help) and not a wrong address, so they get their own
one-line message naming the problem (and the user, never the password).
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL

from hpo.core.errors import find_in_chain
from hpo.store.url import safe_url, scrub

# SQLSTATE classes: 28 invalid authorization (PostgreSQL reports a failed login with it when
# it gets that far), 42501 insufficient privilege.
_AUTH_SQLSTATE_CLASS = "28"
_PRIVILEGE_SQLSTATE = "42501"
# A refused login is reported by libpq before any SQLSTATE exists, so its message decides.
_AUTH_MESSAGE = re.compile(
    r"authentication failed|no pg_hba\.conf entry|no password supplied|"
    r"access denied for user|role \".*\" does not exist",
    re.IGNORECASE,
)
_PRIVILEGE_MESSAGE = re.compile(r"permission denied|must be owner|command denied", re.IGNORECASE)
# A damaged file: SQLite's SQLITE_CORRUPT and SQLITE_NOTADB; PostgreSQL's class XX (internal
# error: data_corrupted, index_corrupted).
_DAMAGE_MESSAGE = re.compile(
    r"database disk image is malformed|file is not a database|database corruption",
    re.IGNORECASE,
)
_DAMAGE_SQLSTATES = ("XX001", "XX002")
# No room left: SQLite's SQLITE_FULL; PostgreSQL's disk_full (53100) and its "could not extend".
_FULL_MESSAGE = re.compile(
    r"database or disk is full|no space left on device|could not extend file", re.IGNORECASE
)
_FULL_SQLSTATE = "53100"
# A read-only database: PostgreSQL's read_only_sql_transaction (a standby, or default read-only
# transactions); SQLite's SQLITE_READONLY.
_READ_ONLY_MESSAGE = re.compile(
    r"readonly database|read-only transaction|read-only file system", re.IGNORECASE
)
_READ_ONLY_SQLSTATE = "25006"


# Optuna's own refusal of tables set up by another Optuna version (its schema check).
_SCHEMA_MESSAGE = re.compile(
    r"(runtime optuna version \S+ is )?no longer compatible with the table schema "
    r"\(set up by [^)]*\)",
    re.IGNORECASE,
)


def refusal_message(exc: BaseException, url: URL) -> str | None:
    """One line for an error behind `exc` that retrying cannot fix, or None."""
    cause = find_in_chain(exc, _other_schema)
    if cause is not None:
        detail = _detail(cause, url)
        found = _SCHEMA_MESSAGE.search(detail)
        what = found.group(0) if found else detail
        fix = (
            "upgrade the tables with `uv run optuna storage upgrade --storage URL` (back the "
            "database up first)"
            if "storage upgrade" in detail
            else "they are newer than this Optuna: run hpo with an Optuna at least as new"
        )
        return f"the database {safe_url(url)}: the {what}; {fix}"
    cause = find_in_chain(exc, _damage)
    if cause is not None:
        return (
            f"the database {safe_url(url)} is damaged: {_detail(cause, url)}; restore it from a "
            f"backup, or give another --storage"
        )
    cause = find_in_chain(exc, _full)
    if cause is not None:
        return (
            f"no space left for the database {safe_url(url)}: {_detail(cause, url)}; free some "
            f"space and run again (finished trials are kept)"
        )
    cause = find_in_chain(exc, _read_only)
    if cause is not None:
        return (
            f"the database {safe_url(url)} is read-only: {_detail(cause, url)}; "
            f"{_writable_need(url)}"
        )
    user = f"user {url.username!r}" if url.username else "this user"
    cause = find_in_chain(exc, _authentication)
    if cause is not None:
        return (
            f"authentication failed for {user} at {safe_url(url)}: {_detail(cause, url)}; "
            f"check the user name and password in the storage URL"
        )
    cause = find_in_chain(exc, _permission)
    if cause is None:
        return None
    return (
        f"permission denied for {user} in {safe_url(url)}: {_detail(cause, url)}; "
        f"{_writable_need(url)}"
    )


def _writable_need(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return "the database file and its folder must be writable"
    return (
        "the user needs SELECT, INSERT, UPDATE and DELETE on the study tables (and CREATE "
        "on the schema to make them in a new database), on a server that accepts writes"
    )


def is_refusal(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is an error that retrying cannot fix."""
    unfixable = (_authentication, _permission, _damage, _full, _read_only)
    return find_in_chain(exc, lambda e: any(kind(e) for kind in unfixable)) is not None


def _detail(exc: BaseException, url: URL) -> str:
    return scrub(str(getattr(exc, "orig", None) or exc), url)


def _sqlstate(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    return str(getattr(orig, "sqlstate", "") or "")


def _authentication(exc: BaseException) -> bool:
    if _sqlstate(exc).startswith(_AUTH_SQLSTATE_CLASS):
        return True
    return _AUTH_MESSAGE.search(str(getattr(exc, "orig", None) or exc)) is not None


def _permission(exc: BaseException) -> bool:
    return _matches(exc, (_PRIVILEGE_SQLSTATE,), _PRIVILEGE_MESSAGE)


def _damage(exc: BaseException) -> bool:
    return _matches(exc, _DAMAGE_SQLSTATES, _DAMAGE_MESSAGE)


def _full(exc: BaseException) -> bool:
    return _matches(exc, (_FULL_SQLSTATE,), _FULL_MESSAGE)


def _read_only(exc: BaseException) -> bool:
    return _matches(exc, (_READ_ONLY_SQLSTATE,), _READ_ONLY_MESSAGE)


def _matches(exc: BaseException, sqlstates: tuple[str, ...], message: re.Pattern[str]) -> bool:
    if _sqlstate(exc) in sqlstates:
        return True
    return message.search(str(getattr(exc, "orig", None) or exc)) is not None


def _other_schema(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and _SCHEMA_MESSAGE.search(str(exc)) is not None
