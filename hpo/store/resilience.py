"""Riding out database outages: the heartbeat settings, which errors mean "unreachable", and
an RDBStorage whose calls are retried while the database is away (a restart, a failover).

Connection problems when the storage is opened are a StorageError at once (a wrong URL should fail
fast); only later outages are retried. Passwords never appear in messages.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from optuna.exceptions import StorageInternalError
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from hpo.core.errors import SettingError, StorageError, find_in_chain
from hpo.store.optuna_internals import PRIVATE_RETRIED_METHODS
from hpo.store.refusals import is_refusal, refusal_message
from hpo.store.url import parse_url, safe_url, scrub
from hpo.store.write_lock import WriteLockFirst

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
            raise SettingError(
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
    # float() also reads "nan" and "inf", which would make every deadline meaningless.
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "whole number of seconds" if integer else "number of seconds"
        least = ">= 0" if allow_zero else "> 0"
        raise SettingError(f"{name}={text!r}: expected a {kind} {least}")
    return value


def transient_cause(exc: BaseException) -> DBAPIError | None:
    """The error behind `exc` that means the database was unreachable or busy, if any.

    A full disk, a damaged file or a refusal is none of these, though drivers raise them as
    the same OperationalError: retrying would not help.
    """
    if is_refusal(exc):
        return None
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
    while the server is down, when every new connection is refused. The budget is per outage,
    not per call: it starts when any call (of any thread) first finds the database gone and
    ends when any call gets through, so a worker gives up about `retry_seconds` after the
    database went away however many calls it makes meanwhile.
    """

    def __init__(
        self,
        *args: Any,
        where: str = "the database",
        retry_seconds: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """`where`: the database as log lines name it (no password); the other arguments are
        RDBStorage's."""
        self.where = where
        # Per thread: whether a call is already retrying, and the trial it may amend.
        self._local = threading.local()
        self._outage_lock = threading.Lock()
        self._outage_started: float | None = None
        self._outage_ended = -math.inf
        # No retries while connecting: a wrong URL must fail at once, not after minutes.
        self.retry_seconds = 0.0
        super().__init__(*args, **kwargs)
        self.retry_seconds = retry_seconds
        self._write_lock_first = WriteLockFirst(self.engine)

    def retrying(self, call: Callable[[], _T]) -> _T:
        """`call()`, retried while the database is unreachable, until the outage is
        `retry_seconds` old. A refused login or a missing privilege is a StorageError that
        says so (retrying would not help)."""
        if getattr(self._local, "active", False):
            return call()  # an outer call already retries (methods call each other)
        self._local.active = True
        try:
            return self._retry(call)
        except (StorageInternalError, DBAPIError) as exc:
            refused = refusal_message(exc, make_url(self.url))
            if refused is None:
                raise
            raise StorageError(refused) from exc
        finally:
            self._local.active = False

    def _retry(self, call: Callable[[], _T]) -> _T:
        delay = 0.25
        while True:
            try:
                result = call()
            except (StorageInternalError, DBAPIError) as exc:
                if not is_transient(exc) or self.retry_seconds <= 0:
                    raise
                left = self._outage_seen(exc) + self.retry_seconds - time.monotonic()
                if left <= 0:
                    raise
                # The last try falls on the deadline itself, not a backoff step before it.
                time.sleep(min(delay, left))
                delay = min(delay * 2, 2.0)
                continue
            self._outage_over()
            return result

    def cut_off_within(self, seconds: float) -> bool:
        """Whether the database is unreachable now or was within the last `seconds`."""
        with self._outage_lock:
            if self._outage_started is not None:
                return True
            return time.monotonic() - self._outage_ended < seconds

    def _outage_seen(self, exc: BaseException) -> float:
        """When the current outage started (now, if this is its first failed call)."""
        with self._outage_lock:
            if self._outage_started is None:
                self._outage_started = time.monotonic()
                _log.warning(
                    "hpo: %s unreachable (%s); retrying for up to %.0f s",
                    self.where,
                    scrub(str(transient_cause(exc) or exc), make_url(self.url)),
                    self.retry_seconds,
                )
            return self._outage_started

    def _outage_over(self) -> None:
        with self._outage_lock:
            if self._outage_started is None:
                return
            self._outage_ended = time.monotonic()
            seconds = self._outage_ended - self._outage_started
            self._outage_started = None
        _log.warning("hpo: %s reachable again after %.1f s", self.where, seconds)

    @contextlib.contextmanager
    def amending(self, trial_id: int) -> Iterator[None]:
        """Let this thread write attributes of the finished trial `trial_id` for a moment.

        A worker that fails a silent trial records why (and the number of its retry) right
        after: the trial must be FAIL first, since that write decides which worker failed it.
        Optuna refuses writes to a finished trial through `check_trial_is_updatable`.
        """
        self._local.amending = trial_id
        try:
            yield
        finally:
            self._local.amending = None

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """RDBStorage's state change (retried through outages), with the state it depends on
        read under the write lock: of workers taking one WAITING trial, or failing one silent
        trial, only one gets it."""
        with self._write_lock_first.held():
            return self.retrying(
                lambda: super(ResilientRDBStorage, self).set_trial_state_values(
                    trial_id, state, values
                )
            )

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        if getattr(self._local, "amending", None) == trial_id:
            return
        super().check_trial_is_updatable(trial_id, trial_state)


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
