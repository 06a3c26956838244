"""Errors that mean the database refused this user: wrong credentials, missing privileges.

They are not outages (retrying cannot help) and not a wrong address, so they get their own
one-line message naming the problem and the user, never the password.
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
_PRIVILEGE_MESSAGE = re.compile(
    r"permission denied|must be owner|readonly database|command denied", re.IGNORECASE
)


def refusal_message(exc: BaseException, url: URL) -> str | None:
    """One line for an authentication or permission error behind `exc`, or None."""
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
    if url.get_backend_name() == "sqlite":
        need = "the database file and its folder must be writable"
    else:
        need = (
            "the user needs SELECT, INSERT, UPDATE and DELETE on the study tables (and CREATE "
            "on the schema to make them in a new database)"
        )
    return f"permission denied for {user} in {safe_url(url)}: {_detail(cause, url)}; {need}"


def is_refusal(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is an authentication or permission error."""
    return find_in_chain(exc, lambda e: _authentication(e) or _permission(e)) is not None


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
    if _sqlstate(exc) == _PRIVILEGE_SQLSTATE:
        return True
    return _PRIVILEGE_MESSAGE.search(str(getattr(exc, "orig", None) or exc)) is not None
