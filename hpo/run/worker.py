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
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
import torch
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import FrozenTrial
from rich.console import Console

from hpo.core.spec import Spec
from hpo.core.trial_config import TrialConfig
from hpo.run.budget import BudgetWatch
from hpo.run.display import TrialDisplay
from hpo.run.objective import CompleteHook, Objective, TrialFailed
from hpo.run.probing import StudyProbe
from hpo.run.progress import TargetCounts, target_counts
from hpo.run.signals import sigterm_as_interrupt
from hpo.search.architecture import ArchitectureSpace
from hpo.search.samplers import make_sampler
from hpo.search.space import grid_search_space
from hpo.store.claims import claimer
from hpo.store.connect import StoredStudy
from hpo.store.queries import rung_points
from hpo.store.resilience import resilience_of
from hpo.train.data import TensorDataset


@dataclass
class WorkerSummary:
    """What one worker did."""

    trials_run: int
    finished: int
    target: int
    seconds: float


def worker_id() -> str:
    """host:pid of this worker process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark trials whose worker stopped beating FAIL (each is queued for one retry)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def poll_seconds(stored: StoredStudy) -> float:
    """How often a waiting worker looks again: about a heartbeat, between 0.5 and 5 s."""
    return min(5.0, max(0.5, float(resilience_of(stored.storage).heartbeat_interval)))


def work_until_target(
    stored: StoredStudy,
    objective: Callable[[optuna.Trial], float | Sequence[float]],
    target: int,
    *,
    catch: tuple[type[Exception], ...] = (),
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    on_wait: Callable[[TargetCounts], None] | None = None,
    on_lost: Callable[[UpdateFinishedTrialError], None] | None = None,
) -> int:
    """Run trials one at a time until the study has `target` finished and none running.

    Returns how many trials this worker started.
    """
    study = stored.study
    runs = 0
    poll = poll_seconds(stored)
    while True:
        fail_stale_trials(study)
        counts = target_counts(stored)
        if counts.finished >= target and counts.running == 0 and counts.waiting == 0:
            return runs
        # A WAITING trial is a dead worker's trial queued for its retry: it is owed even when
        # another worker filled the target meanwhile (it counted before the retry was queued).
        if counts.in_flight_or_done() < target or counts.waiting:
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
            on_wait(counts)
        time.sleep(poll)


def study_target(spec: Spec) -> int:
    """The study's `n_trials`, or the grid's size when the grid sampler has fewer points."""
    if spec.study.sampler == "grid":
        return min(spec.study.n_trials, math.prod(map(len, grid_search_space(spec).values())))
    return spec.study.n_trials


# Called with the study after each trial this worker ran (e.g. to redraw dashboard figures).
AfterTrial = Callable[[StoredStudy], None]


def run_worker(
    stored: StoredStudy,
    spec: Spec,
    data: TensorDataset,
    device: torch.device,
    console: Console,
    seed_salt: int = 0,
    on_complete: CompleteHook | None = None,
    after_trial: AfterTrial | None = None,
) -> WorkerSummary:
    """Run trials until the study has `spec.study.n_trials` finished trials.

    `seed_salt` keeps concurrent workers from drawing the same configurations; 0 keeps a
    single-worker study reproducible.
    """
    target = study_target(spec)
    study = stored.study
    me = worker_id()
    probe = StudyProbe(stored, spec, device, data.num_classes, me)
    offset = len(study.get_trials(deepcopy=False)) + seed_salt
    study.sampler = make_sampler(spec, seed_offset=offset, probe=probe, claim=claimer(stored))
    started = time.perf_counter()
    display = TrialDisplay(console, stored, target, target_counts(stored).finished)
    budget = spec.study.max_latency_ms
    watch = (
        BudgetWatch(ArchitectureSpace.from_spec(spec), budget, probe.known)
        if budget is not None
        else None
    )

    def trial_start(trial: optuna.Trial, config: TrialConfig) -> None:
        # Which process runs the trial: shown in the dashboard, and how to find a stuck worker.
        trial.set_user_attr("worker", me)
        display.trial_start(trial, config)

    objective = Objective(
        spec,
        data,
        device,
        on_trial_start=trial_start,
        on_epoch=display.epoch,
        on_complete=on_complete,
        probe=probe.probe,
        rung_points=lambda epoch, number: rung_points(stored, epoch, number),
    )

    def trial_ended(study: optuna.Study, trial: FrozenTrial) -> None:
        display.trial_end(trial, target_counts(stored).finished)
        if watch is not None:
            watch.after(trial)
        if after_trial is not None:
            after_trial(stored)

    with display.bar, sigterm_as_interrupt():
        runs = work_until_target(
            stored,
            objective,
            target,
            catch=(TrialFailed,),
            callbacks=[trial_ended],
            on_wait=display.waiting,
            on_lost=display.lost,
        )
    done = target_counts(stored).finished
    return WorkerSummary(runs, done, target, time.perf_counter() - started)
