"""Latency probes in the study database, shared by every worker (and every study) using it.

Table `hpo_latency_probes` (see `hpo.store.hpo_tables`): one row per probe key (architecture,
head size, device fingerprint, runtime and protocol; see `hpo.measure.probe`). A worker that
needs a probe claims its row first (a placeholder), measures, and fills it in; a worker that
finds the placeholder waits for the result instead of measuring again. While it measures, the
worker refreshes its placeholder every heartbeat interval; a placeholder with no sign of life for
the grace period (the rule that judges trials, `hpo.store.resilience`) belongs to a worker that
died or froze while probing, and is taken over.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hpo.measure.latency_result import LatencyResult
from hpo.store.connect import database_now, read
from hpo.store.hpo_tables import probes
from hpo.store.resilience import ResilientRDBStorage, resilience_of

_POLL_S = 0.2


@dataclass(frozen=True)
class ProbeRecord:
    """A finished probe: everything its latency measurement recorded."""

    latency: LatencyResult
    cached: bool  # True when another call (or worker) had measured it already

    @property
    def latency_ms(self) -> float:
        return self.latency.median_ms


def known(storage: ResilientRDBStorage, context_key: str) -> list[tuple[dict[str, Any], float]]:
    """Every finished probe in this context (device, runtime, protocol, head size): the
    architecture and its latency in ms."""
    query = sa.select(probes.c.architecture_json, probes.c.latency_ms).where(
        (probes.c.context_key == context_key) & probes.c.latency_ms.is_not(None)
    )
    rows = read(storage, lambda connection: connection.execute(query).all())
    return [(json.loads(architecture), float(latency)) for architecture, latency in rows]


def get_or_measure(
    storage: ResilientRDBStorage,
    key: str,
    identity: dict[str, Any],
    context_key: str,
    measure: Callable[[], LatencyResult],
    worker: str,
) -> ProbeRecord:
    """The probe `key`: read it, wait for another worker's, or measure it (`measure()`)."""
    while True:
        row = _row(storage, key)
        if row is not None and row.latency_ms is not None:
            return ProbeRecord(LatencyResult.from_attrs(json.loads(row.attrs_json)), cached=True)
        # The database's clock, so workers whose clocks differ agree on a placeholder's age.
        now = read(storage, database_now)
        if row is None:
            if not _claim(storage, key, identity, context_key, worker, now):
                continue  # another worker claimed it first: read theirs
        elif (now - row.started).total_seconds() > resilience_of(storage).grace_period:
            if not _take_over(storage, key, row.started, worker, now):
                continue
        else:
            time.sleep(_POLL_S)  # someone is measuring it right now
            continue
        return _measure(storage, key, measure, worker)


def _row(storage: ResilientRDBStorage, key: str) -> Any:
    query = sa.select(probes.c.latency_ms, probes.c.attrs_json, probes.c.started).where(
        probes.c.probe_key == key
    )
    return read(storage, lambda connection: connection.execute(query).first())


def _claim(
    storage: ResilientRDBStorage,
    key: str,
    identity: dict[str, Any],
    context_key: str,
    worker: str,
    now: datetime.datetime,
) -> bool:
    row = {
        "probe_key": key,
        "identity_json": json.dumps(identity, sort_keys=True, default=str),
        "architecture_json": json.dumps(identity.get("architecture", {}), sort_keys=True),
        "context_key": context_key,
        "worker": worker[:255],
        "started": now,
    }
    try:
        storage.retrying(lambda: _execute(storage, probes.insert().values(**row)))
    except IntegrityError:
        return False
    return True


def _take_over(
    storage: ResilientRDBStorage,
    key: str,
    started: datetime.datetime,
    worker: str,
    now: datetime.datetime,
) -> bool:
    statement = (
        probes.update()
        .where((probes.c.probe_key == key) & (probes.c.started == started))
        .values(worker=worker[:255], started=now)
    )
    return storage.retrying(lambda: _execute(storage, statement)) == 1


def _measure(
    storage: ResilientRDBStorage, key: str, measure: Callable[[], LatencyResult], worker: str
) -> ProbeRecord:
    started = time.perf_counter()
    try:
        with _kept_alive(storage, key, worker):
            result = measure()
    except BaseException:
        # Let another worker (or a later trial) probe it again; only our own placeholder goes:
        # one another worker took over (ours looked stale) is theirs to fill.
        statement = probes.delete().where(
            (probes.c.probe_key == key)
            & probes.c.latency_ms.is_(None)
            & (probes.c.worker == worker[:255])
        )
        storage.retrying(lambda: _execute(storage, statement))
        raise
    statement = (
        probes.update()
        .where(probes.c.probe_key == key)
        .values(
            latency_ms=result.median_ms,
            attrs_json=json.dumps(result.as_attrs()),
            seconds=time.perf_counter() - started,
        )
    )
    storage.retrying(lambda: _execute(storage, statement))
    return ProbeRecord(result, cached=False)


@contextmanager
def _kept_alive(storage: ResilientRDBStorage, key: str, worker: str) -> Iterator[None]:
    """While the block runs, refresh our placeholder's `started` every heartbeat interval (by
    the database's clock), so waiting workers see a live probe however long it takes."""
    interval = resilience_of(storage).heartbeat_interval
    ours = (
        (probes.c.probe_key == key)
        & probes.c.latency_ms.is_(None)
        & (probes.c.worker == worker[:255])
    )
    done = threading.Event()

    def beat() -> None:
        while not done.wait(interval):
            try:
                with storage.engine.begin() as connection:
                    connection.execute(
                        probes.update().where(ours).values(started=database_now(connection))
                    )
            except Exception:  # noqa: BLE001 - a beat missed in an outage: the next one counts
                continue

    thread = threading.Thread(target=beat, name="probe-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _execute(storage: ResilientRDBStorage, statement: Any) -> int:
    with storage.engine.begin() as connection:
        return connection.execute(statement).rowcount
