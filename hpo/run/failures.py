"""Why a trial failed: the failures that end only the trial (its configuration diverges or does
not fit), the unexpected ones that stop the run, and the one-line reason people read for each."""

from __future__ import annotations

import contextlib

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError

from hpo.core.errors import DataError
from hpo.core.trial_attrs import FAIL_REASON_ATTR, TRACEBACK_ATTR
from hpo.store.outcomes import DIVERGED, NO_NETWORK, OUT_OF_MEMORY
from hpo.store.trial_records import record
from hpo.train.loop import Diverged
from models.user import UnusableNetwork


class TrialFailed(Exception):
    """A trial failed because of its own configuration (it diverged, did not fit in memory, or
    a user's factory cannot build it): the study goes on with other configurations;
    `fail_reason` says why."""


class TrialCrashed(Exception):
    """A trial raised an unexpected error. It would fail every trial alike (a data error, a
    bug), so the run stops after it; `fail_reason` and `traceback` say what happened."""

    def __init__(self, number: int, reason: str) -> None:
        super().__init__(
            f"trial {number} failed: {reason} (the traceback is in its user attribute "
            f"{TRACEBACK_ATTR!r})"
        )


def failure_reason(exc: BaseException) -> str:
    """One line saying why a trial failed with `exc`, for people."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, Diverged):
        return f"{DIVERGED}: {exc}"
    if is_out_of_memory(exc):
        return f"{OUT_OF_MEMORY}: {first_line(exc)}"
    if isinstance(exc, DataError):
        return f"data error: {first_line(exc)}"
    if isinstance(exc, UnusableNetwork):
        return f"{NO_NETWORK}: {first_line(exc)}"
    return f"{type(exc).__name__}: {first_line(exc)}"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` says the device (or the host) ran out of memory."""
    return isinstance(exc, torch.OutOfMemoryError | MemoryError)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an error's message, cut to `limit` characters."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else "(no message)"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def note_failure(trial: optuna.Trial, reason: str, details: str | None = None) -> None:
    """Record why the trial failed; nothing when another worker finished it meanwhile (the
    worker loop reports that, and the reason that worker recorded stays)."""
    with contextlib.suppress(UpdateFinishedTrialError):
        record(trial, {FAIL_REASON_ATTR: reason})
        if details is not None:
            trial.set_user_attr(TRACEBACK_ATTR, details)
