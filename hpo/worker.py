"""A worker: runs trials of a study until its total `n_trials` target is reached.

The target counts across all workers sharing the study. Before each trial a worker re-counts the
finished trials and the ones other workers are running, and starts one only while their sum is
below the target; two workers that count at the same instant may both start one, so with W
workers the study overshoots by at most W - 1 trials. When the rest of the target is in flight
elsewhere, the worker waits: those trials finish, or their worker died, the heartbeat marks the
trial FAIL and queues one retry with the same params (WAITING), and a waiting worker runs it.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

import optuna
import torch
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as ProgressBar

from hpo.data import TensorDataset
from hpo.objective import Objective, TrialDiverged
from hpo.samplers import make_sampler
from hpo.space import TrialConfig, grid_search_space
from hpo.spec import Spec
from hpo.storage import rdb_of, resilience_of
from hpo.study import Progress, study_progress


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so Optuna marks the running trial FAIL."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while the worker runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class WorkerSummary:
    """What one worker did."""

    trials_run: int
    finished: int
    target: int
    seconds: float


def describe(config: TrialConfig) -> str:
    """Short one-line description of a configuration for the progress display."""
    return f"{config.model}/{config.norm} {config.optimizer} lr={config.lr:.3g} {config.scheduler}"


class ProgressReporter:
    """Progress bar over the study's target plus one line per finished trial."""

    def __init__(self, console: Console, target: int, done: int) -> None:
        self.console = console
        self.progress = ProgressBar(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("remaining"),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=console,
        )
        self.task = self.progress.add_task("", total=target, completed=done)
        self.trial_started = time.perf_counter()
        self.current = ""
        self.last_wait: Progress | None = None

    def trial_start(self, trial: optuna.Trial, config: TrialConfig) -> None:
        self.trial_started = time.perf_counter()
        # Where RetryHeartbeatStaleTrialCallback notes which dead worker's trial this redoes.
        retry_of = trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        again = f" (retry of trial {retry_of})" if retry_of is not None else ""
        self.current = f"#{trial.number}{again} {describe(config)}"
        self.progress.update(self.task, description=f"{self.current} training")

    def epoch(self, epoch: int, epochs: int, loss: float) -> None:
        self.progress.update(
            self.task, description=f"{self.current} epoch {epoch}/{epochs} loss {loss:.3f}"
        )

    def trial_end(self, study: optuna.Study, trial: FrozenTrial, done: int) -> None:
        seconds = time.perf_counter() - self.trial_started
        name = f"trial {trial.number:>3}"
        if "failed_trial" in trial.system_attrs:
            name += f" (retry of trial {trial.system_attrs['failed_trial']})"
        params = describe(TrialConfig.from_params(trial.params))
        if trial.state == TrialState.COMPLETE and trial.values:
            accuracy, latency_ms = trial.values
            self.console.print(
                f"{name}  {params}  accuracy {accuracy:6.2%}  latency {latency_ms:.3f} ms  "
                f"({seconds:.0f} s)"
            )
        else:
            reason = trial.user_attrs.get("fail_reason", "failed")
            self.console.print(f"{name}  {params}  [red]{trial.state.name}[/]: {reason}")
        self.progress.update(self.task, completed=done, description="")

    def waiting(self, state: Progress) -> None:
        if state != self.last_wait:
            self.last_wait = state
            self.progress.update(
                self.task,
                completed=state.finished,
                description=f"waiting for {state.running} trial(s) of other workers",
            )

    def lost(self, error: UpdateFinishedTrialError) -> None:
        self.console.print(
            f"[yellow]a trial of this worker was already finished by another worker "
            f"(its heartbeat went silent); its retry redoes it[/] ({error})"
        )


def worker_id() -> str:
    """host:pid of this worker process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark trials whose worker stopped beating FAIL (each is queued for one retry)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def poll_seconds(study: optuna.Study) -> float:
    """How often a waiting worker looks again: about a heartbeat, between 0.5 and 5 s."""
    storage = rdb_of(study)
    interval = resilience_of(storage).heartbeat_interval if storage is not None else 1.0
    return min(5.0, max(0.5, float(interval)))


def work_until_target(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float | Sequence[float]],
    target: int,
    *,
    catch: tuple[type[Exception], ...] = (),
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    on_wait: Callable[[Progress], None] | None = None,
    on_lost: Callable[[UpdateFinishedTrialError], None] | None = None,
) -> int:
    """Run trials one at a time until the study has `target` finished and none running.

    Returns how many trials this worker started.
    """
    runs = 0
    poll = poll_seconds(study)
    while True:
        fail_stale_trials(study)
        state = study_progress(study)
        if state.finished >= target and state.running == 0:
            return runs
        if state.in_flight_or_done() < target:
            try:
                # Optuna's ask() takes a WAITING retry first, so a dead worker's trial is redone.
                study.optimize(objective, n_trials=1, catch=catch, callbacks=list(callbacks))
            except UpdateFinishedTrialError as exc:
                # Our heartbeat went silent for longer than the grace period (a long database
                # outage), so another worker failed our trial and queued its retry.
                if on_lost is not None:
                    on_lost(exc)
            runs += 1
            continue
        # The rest of the target is in flight elsewhere: it finishes, or the heartbeat fails it.
        if on_wait is not None:
            on_wait(state)
        time.sleep(poll)


def run_worker(
    study: optuna.Study,
    spec: Spec,
    data: TensorDataset,
    device: torch.device,
    console: Console,
    seed_salt: int = 0,
) -> WorkerSummary:
    """Run trials until the study has `spec.study.n_trials` finished trials.

    `seed_salt` keeps concurrent workers from drawing the same configurations; 0 keeps a
    single-worker study reproducible.
    """
    target = spec.study.n_trials
    if spec.study.sampler == "grid":
        target = min(target, math.prod(len(v) for v in grid_search_space(spec).values()))
    offset = len(study.get_trials(deepcopy=False)) + seed_salt
    study.sampler = make_sampler(spec, seed_offset=offset)
    started = time.perf_counter()
    reporter = ProgressReporter(console, target, study_progress(study).finished)
    me = worker_id()

    def trial_start(trial: optuna.Trial, config: TrialConfig) -> None:
        # Which process runs the trial: shown in the dashboard, and how to find a stuck worker.
        trial.set_user_attr("worker", me)
        reporter.trial_start(trial, config)

    objective = Objective(spec, data, device, on_trial_start=trial_start, on_epoch=reporter.epoch)

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        reporter.trial_end(study, trial, study_progress(study).finished)

    with reporter.progress, sigterm_as_interrupt():
        runs = work_until_target(
            study,
            objective,
            target,
            catch=(TrialDiverged,),
            callbacks=[after_trial],
            on_wait=reporter.waiting,
            on_lost=reporter.lost,
        )
    done = study_progress(study).finished
    return WorkerSummary(runs, done, target, time.perf_counter() - started)
