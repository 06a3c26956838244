"""Trial state changes that read and write under one SQLite write lock.

Optuna changes a trial's state by reading it (`SELECT ... FOR UPDATE`) and then writing it, and
the read decides: a WAITING trial is taken only if it is still WAITING, a trial is failed only
if it is still RUNNING. PostgreSQL locks the row at the read. SQLite ignores FOR UPDATE, and
Python's sqlite3 begins the transaction only at the first write, so two workers could both read
a WAITING retry and both take it (each then trains the same configuration), or both fail one
silent trial (and queue two retries). `BEGIN IMMEDIATE` takes SQLite's write lock before the
read: the second worker waits for the first (the busy timeout) and then reads what it wrote.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from sqlalchemy import Connection, Engine, event


class WriteLockFirst:
    """Transactions of `engine` begun inside `held()` take the write lock before they read.

    Only SQLite needs it (other databases honour FOR UPDATE); elsewhere `held()` does nothing.
    """

    def __init__(self, engine: Engine) -> None:
        self._local = threading.local()
        if engine.dialect.name == "sqlite":
            event.listen(engine, "begin", self._begin)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Make the transactions this thread begins meanwhile write-locked from their start."""
        outer = getattr(self._local, "held", False)
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = outer

    def _begin(self, connection: Connection) -> None:
        if getattr(self._local, "held", False):
            # sqlite3 (legacy transaction control) emits no BEGIN of its own while one is open,
            # and commits or rolls back this one when SQLAlchemy ends the transaction.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
