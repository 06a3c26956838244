"""Trying again after losing a race with another process over a new database.

Workers started together on a new database collide on its first use (switching a SQLite file
to WAL, creating Optuna's tables). The loser gets an error at once, and a moment later the
winner is done: a short random wait, growing with each attempt, lets it through.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")

# Attempts before the error is given up to the caller.
TRIES = 10


def retry_lost_race(
    action: Callable[[], _T], lost_race: Callable[[Exception], bool], tries: int = TRIES
) -> _T:
    """`action()`, tried again (up to `tries` in all) while it raises an exception that
    `lost_race` says came from another process doing the same thing at the same moment;
    any other exception, or the last one, is raised."""
    for attempt in range(1, tries):
        try:
            return action()
        except Exception as exc:
            if not lost_race(exc):
                raise
        time.sleep(random.uniform(0.05, 0.25) * attempt)
    return action()
