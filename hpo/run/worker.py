"""A worker: runs trials of a study until its total `n_trials` target is reached.

The target counts across all workers sharing the study. Before each trial a worker re-counts the
finished trials and the ones other workers are running, and starts one only while their sum is
below the target; two workers that count at the same instant may both start one, so with W
workers the study overshoots by at most W - 1 trials. When the rest of the target is in flight
elsewhere, the worker waits: those trials finish, or their worker died (its heartbeat went
silent), another worker's background check marks the trial FAIL and queues one retry with the
same params (WAITING), and a waiting worker runs it.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from hpo.core.trial_attrs import WORKER_ATTR
from hpo.core.trial_config import TrialConfig
from hpo.run.budget import MAX_OVER_BUDGET_IN_A_ROW, BudgetWatch
from hpo.run.context import WorkerContext
from hpo.run.display import TrialDisplay
from hpo.run.failures import TrialFailed, failure_reason, note_failure
from hpo.run.objective import CompleteHook, Objective
from hpo.run.probing import StudyLatencies
from hpo.run.pulse import Pulse
from hpo.run.signals import (
    HeldInterrupts,
    StoppedBy,
    interrupted_trial,
    main_thread_stopper,
    mark_interrupted_trial,
    mark_queued_again,
    sigterm_as_interrupt,
)
from hpo.search.architecture import ArchitectureSpace
from hpo.search.samplers import GridToTarget, make_sampler
from hpo.store.claims import claimer
from hpo.store.connect import StoredStudy
from hpo.store.lost import LostTrial, finished_by_another, queue_again
from hpo.store.optuna_internals import trial_id
from hpo.store.outcomes import over_budget, settles_grid_point, study_target
from hpo.store.progress import TargetCounts, target_counts
from hpo.store.queries import rung_points
from hpo.store.resilience import resilience_of


@dataclass
class WorkerSummary:
    """What one worker did."""

    trials_run: int
    finished: int
    target: int
    seconds: float
    dropped: int = 0  # trials whose result was dropped: another worker had finished them

    @property
    def all_dropped(self) -> bool:
        """Whether every trial this worker ran was taken from it: it added nothing."""
        return self.trials_run > 0 and self.dropped == self.trials_run


def poll_seconds(stored: StoredStudy) -> float:
    """How often a waiting worker looks again: about a heartbeat, between 0.5 and 5 s."""
    return min(5.0, max(0.5, float(resilience_of(stored.storage).heartbeat_interval)))


# Called with a trial this worker ran that another worker finished meanwhile (as stored).
OnLost = Callable[[FrozenTrial], None]
ObjectiveFunction = Callable[[optuna.Trial], float | Sequence[float]]


def work_until_target(
    stored: StoredStudy,
    objective: ObjectiveFunction,
    target: int,
    *,
    catch: tuple[type[Exception], ...] = (),
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    on_wait: Callable[[TargetCounts], None] | None = None,
    on_lost: OnLost | None = None,
    on_lost_trials: Callable[[list[LostTrial]], None] | None = None,
) -> int:
    """Run trials one at a time until the study has `target` finished and none running.

    A background thread beats for the running trial and fails other workers' silent trials
    (`hpo.run.pulse`). Returns how many trials this worker started.
    """
    try:
        with (
            main_thread_stopper() as stop,
            Pulse(stored, on_lost_trials or (lambda lost: None), stop) as pulse,
        ):
            return _work(stored, objective, target, pulse, catch, callbacks, on_wait, on_lost)
    except StoppedBy as stopped:
        # The database stayed away past the retry budget while this thread was busy; the
        # error's cause says what was lost (hpo.store.resilience reads it).
        raise stopped.error from stopped.error.__cause__


def _work(
    stored: StoredStudy,
    objective: ObjectiveFunction,
    target: int,
    pulse: Pulse,
    catch: tuple[type[Exception], ...],
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]],
    on_wait: Callable[[TargetCounts], None] | None,
    on_lost: OnLost | None,
) -> int:
    runs = 0
    poll = poll_seconds(stored)
    while True:
        pulse.fail_silent_trials()
        counts = target_counts(stored)
        settled = counts.finished >= target or grid_exhausted(stored.study)
        if settled and counts.running == 0 and counts.waiting == 0:
            return runs
        # A WAITING trial is a dead worker's trial queued for its retry: it is owed even when
        # another worker filled the target meanwhile (it counted before the retry was queued).
        # A grid whose every point is done or in flight elsewhere has nothing new to give.
        wanted = counts.in_flight_or_done() < target and not grid_taken(stored.study)
        if wanted or counts.waiting:
            run_optuna_trial(stored, objective, pulse, catch, callbacks, on_lost)
            runs += 1
            continue
        # The rest of the target is in flight elsewhere: it finishes, or its worker goes
        # silent and a pulse fails it.
        if on_wait is not None:
            on_wait(counts)
        time.sleep(poll)


def grid_exhausted(study: optuna.Study) -> bool:
    """Whether the study's grid sampler has every point done: trained, or over the latency
    budget (those do not count toward the target, so a grid with some ends below it)."""
    sampler = study.sampler
    return isinstance(sampler, GridToTarget) and sampler.is_exhausted(study)


def grid_taken(study: optuna.Study) -> bool:
    """Whether the study's grid sampler has no point left that is neither done nor in flight
    (then a worker waits for the others' trials instead of repeating a point)."""
    sampler = study.sampler
    return isinstance(sampler, GridToTarget) and not sampler.untaken_points(study)


def run_optuna_trial(
    stored: StoredStudy,
    objective: ObjectiveFunction,
    pulse: Pulse,
    catch: tuple[type[Exception], ...],
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]],
    on_lost: OnLost | None,
) -> None:
    """Ask for a trial (a queued retry first), run it with its heartbeat, tell its result.

    When another worker finished the trial meanwhile (it took this worker for dead: paused,
    or cut off from the database past the grace period), the result is dropped and `on_lost`
    says so; the study goes on with the retry that worker queued. Exceptions outside `catch`
    are raised once the trial is told FAIL (Ctrl-C, an unexpected error).
    """
    study = stored.study
    values: float | Sequence[float] | None = None
    state: TrialState | None = None
    error: BaseException | None = None
    # An interrupt while the trial is created or told would leave it RUNNING: it is held there
    # and raised inside the objective's block (FAIL, interrupted) or once the state is stored.
    with HeldInterrupts() as held:
        with warnings.catch_warnings():
            # Optuna expects heartbeats inside Study.optimize; this loop writes them itself.
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = study.ask()
        with pulse.beating(trial_id(trial), trial.number):
            try:
                with held.delivered():
                    values = objective(trial)
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except (Exception, KeyboardInterrupt) as exc:
                state, error = TrialState.FAIL, exc
                if isinstance(exc, KeyboardInterrupt) and interrupted_trial(exc) is None:
                    # Held while the trial was created, before the objective could say why.
                    note_failure(trial, failure_reason(exc))
                    mark_interrupted_trial(exc, trial.number)
        told = tell(stored, trial, None if state else values, state)
        if told is not None and isinstance(error, KeyboardInterrupt):
            # Stopped, not finished: its configuration is queued to run again, first thing
            # in the next worker to ask (a study's starting configuration is not lost).
            mark_queued_again(error, queue_again(stored, told))
    if told is None:
        if on_lost is not None:
            on_lost(finished_by_another(stored, trial.number))
        # Writing to the finished trial is how the objective found out; nothing else failed.
        if isinstance(error, UpdateFinishedTrialError):
            error = None
    else:
        for callback in callbacks:
            callback(study, told)
    if error is not None and not isinstance(error, catch):
        raise error
    held.raise_pending()  # one that came while the result was told: the trial is stored


def tell(
    stored: StoredStudy,
    trial: optuna.Trial,
    values: float | Sequence[float] | None,
    state: TrialState | None,
) -> FrozenTrial | None:
    """Tell the trial's result; None when another worker had finished the trial already."""
    try:
        return stored.study.tell(trial, values, state)
    except (ValueError, UpdateFinishedTrialError):
        # Optuna says "Cannot tell a FAIL trial" (ValueError) when the trial was finished
        # before, UpdateFinishedTrialError when during the tell; anything else is raised.
        if stored.frozen_trial(trial.number).state.is_finished():
            return None
        raise


# Between the seed offsets of workers that start at the same point: far apart, so that one
# never meets the offset a later start of the study takes (its trial count).
_OFFSET_STRIDE = 1_000_003


def own_seed_offset(claim: Callable[[str], bool], offset: int) -> int:
    """`offset` (the study's trial count plus the worker's salt: a resumed study draws afresh),
    or, when another worker started from it, the next one free. `hpo run`'s salt is 0 to keep
    a single-worker study reproducible, so two started together would draw alike."""
    for k in itertools.count():
        mine = offset + k * _OFFSET_STRIDE
        if claim(f"sampler seed offset {mine}"):
            return mine
    raise AssertionError("unreachable")  # pragma: no cover


# Called with the study after each trial this worker ran (e.g. to redraw dashboard figures).
AfterTrial = Callable[[StoredStudy], None]


def run_worker(
    context: WorkerContext,
    console: Console,
    seed_salt: int = 0,
    on_complete: CompleteHook | None = None,
    after_trial: AfterTrial | None = None,
) -> WorkerSummary:
    """Run trials until the study has `spec.study.n_trials` finished trials.

    `seed_salt` keeps concurrent workers from drawing the same configurations; 0 keeps a
    single-worker study reproducible.
    """
    stored, spec, me = context.stored, context.spec, context.worker
    target = study_target(spec)
    study = stored.study
    latencies = StudyLatencies.for_worker(context)
    claim = claimer(stored)
    offset = own_seed_offset(claim, len(study.get_trials(deepcopy=False)) + seed_salt)
    study.sampler = make_sampler(
        spec, seed_offset=offset, probe=latencies, claim=claim, settled=settles_grid_point
    )
    started = time.perf_counter()
    display = TrialDisplay(console, stored, target, target_counts(stored).finished)
    budget = spec.study.max_latency_ms
    watch = (
        BudgetWatch(
            ArchitectureSpace.from_spec(spec),
            budget,
            latencies.known,
            # A grid visits each point once, in its own order, and then ends.
            give_up_after=None if spec.study.sampler == "grid" else MAX_OVER_BUDGET_IN_A_ROW,
        )
        if budget is not None
        else None
    )

    def trial_start(trial: optuna.Trial, config: TrialConfig) -> None:
        # Which process runs the trial: shown in the dashboard, and how to find a stuck worker.
        trial.set_user_attr(WORKER_ATTR, me)
        display.trial_start(trial, config)

    objective = Objective(
        spec,
        context.data,
        context.device,
        on_trial_start=trial_start,
        on_epoch=display.epoch,
        on_complete=on_complete,
        probe_architecture=latencies.probe,
        rung_points=lambda epoch, number: rung_points(stored, epoch, number),
    )

    def trial_ended(study: optuna.Study, trial: FrozenTrial) -> None:
        display.trial_end(trial, target_counts(stored).finished)
        if watch is not None:
            watch.after(trial)
        if after_trial is not None:
            after_trial(stored)

    dropped: list[int] = []

    def lost(trial: FrozenTrial) -> None:
        dropped.append(trial.number)
        display.lost(trial)

    with display.bar, sigterm_as_interrupt():
        runs = work_until_target(
            stored,
            objective,
            target,
            catch=(TrialFailed,),
            callbacks=[trial_ended],
            on_wait=display.waiting,
            on_lost=lost,
            on_lost_trials=display.lost_elsewhere,
        )
    done = target_counts(stored).finished
    if done < target and grid_exhausted(study):
        over = sum(over_budget(t) for t in study.get_trials(deepcopy=False))
        console.print(
            f"every point of the grid is done: {over} over the latency budget, not trained"
        )
    return WorkerSummary(runs, done, target, time.perf_counter() - started, len(dropped))
