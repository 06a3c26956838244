"""Riding out database outages: the heartbeat settings, which errors mean "unreachable", and
an RDBStorage whose calls are retried while the database is away (a restart, a failover).

Connection problems when the storage is opened are a StorageError at once (a wrong URL should fail
fast); only later outages are retried. Passwords never appear in messages.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from hpo.core.errors import StorageError, find_in_chain
from hpo.store.optuna_internals import PRIVATE_RETRIED_METHODS
from hpo.store.url import parse_url, safe_url, scrub

HEARTBEAT_INTERVAL_S = 20
GRACE_PERIOD_S = 60
RETRY_SECONDS = 120
# Environment variables that tune the heartbeat and the outage retries (tests use small values).
HEARTBEAT_ENV = "HPO_HEARTBEAT_INTERVAL"
GRACE_ENV = "HPO_GRACE_PERIOD"
RETRY_ENV = "HPO_DB_RETRY_SECONDS"

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
        interval = env_number(HEARTBEAT_ENV, HEARTBEAT_INTERVAL_S, integer=True)
        grace = env_number(GRACE_ENV, GRACE_PERIOD_S, integer=True)
        retry = env_number(RETRY_ENV, RETRY_SECONDS, integer=False, allow_zero=True)
        if grace <= interval:
            # A live worker beats every `interval` s; a shorter grace would fail its trials.
            raise StorageError(
                f"{GRACE_ENV}={grace} must be greater than {HEARTBEAT_ENV}={interval} "
                f"(seconds); e.g. three times it"
            )
        return cls(int(interval), int(grace), float(retry))


def env_number(name: str, default: float, *, integer: bool, allow_zero: bool = False) -> float:
    """A number of seconds from the environment variable `name` (`default` when unset)."""
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


def transient_cause(exc: BaseException) -> DBAPIError | None:
    """The error behind `exc` that means the database was unreachable or busy, if any."""
    cause = find_in_chain(exc, _means_unreachable)
    return cause if isinstance(cause, DBAPIError) else None


def _means_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) means the database was unreachable or busy for a while."""
    return transient_cause(exc) is not None


def outage_message(exc: BaseException, url: str) -> str:
    """One line for a database that stayed unreachable longer than the retries (no password)."""
    cause = transient_cause(exc) or exc
    detail = scrub(str(getattr(cause, "orig", None) or cause), parse_url(url))
    return f"lost the database {safe_url(url)} after retrying ({RETRY_ENV}): {detail}"


# Storage calls retried when the database goes away. Reads are safe to repeat; the writes are
# upserts or state changes Optuna already guards (a repeated COMPLETE raises
# UpdateFinishedTrialError, which the worker handles).
_PUBLIC_RETRIED_METHODS = (
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
    "get_best_trial",
    "record_heartbeat",
)


class ResilientRDBStorage(RDBStorage):
    """RDBStorage whose calls wait out a database outage (up to `retry_seconds`) and go on.

    `pool_pre_ping` throws away connections the restart killed; this class covers the seconds
    while the server is down, when every new connection is refused.
    """

    retry_seconds: float = 0.0
    where: str = "the database"
    _local = threading.local()

    def retrying(self, call: Callable[[], _T]) -> _T:
        """`call()`, retried while the database is unreachable, for up to `retry_seconds`."""
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
                            scrub(str(transient_cause(exc) or exc), make_url(self.url)),
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
        return self.retrying(lambda: original(self, *args, **kwargs))

    return method


for _name in _PUBLIC_RETRIED_METHODS + PRIVATE_RETRIED_METHODS:
    setattr(ResilientRDBStorage, _name, _retry_method(_name))


def resilience_of(storage: RDBStorage) -> Resilience:
    """The heartbeat interval, grace period and retry budget a storage runs with."""
    interval = storage.heartbeat_interval or HEARTBEAT_INTERVAL_S
    grace = storage.grace_period or 2 * interval
    return Resilience(interval, grace, getattr(storage, "retry_seconds", 0.0))
