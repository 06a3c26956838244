"""A worker: runs trials of a study until its total `n_trials` target is reached.

The target counts across all workers sharing the study (each worker re-counts before starting a
trial), so with W workers the study overshoots by at most W - 1 trials.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hpo.data import TensorDataset
from hpo.objective import Objective, TrialDiverged
from hpo.samplers import make_sampler
from hpo.space import TrialConfig, grid_search_space
from hpo.spec import Spec
from hpo.study import finished_count


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
        self.progress = Progress(
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

    def trial_start(self, trial: optuna.Trial, config: TrialConfig) -> None:
        self.trial_started = time.perf_counter()
        self.current = f"#{trial.number} {describe(config)}"
        self.progress.update(self.task, description=f"{self.current} training")

    def epoch(self, epoch: int, epochs: int, loss: float) -> None:
        self.progress.update(
            self.task, description=f"{self.current} epoch {epoch}/{epochs} loss {loss:.3f}"
        )

    def trial_end(self, study: optuna.Study, trial: FrozenTrial, done: int) -> None:
        seconds = time.perf_counter() - self.trial_started
        name = f"trial {trial.number:>3}"
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


def run_worker(
    study: optuna.Study,
    spec: Spec,
    data: TensorDataset,
    device: torch.device,
    console: Console,
) -> WorkerSummary:
    """Run trials until the study has `spec.study.n_trials` finished trials."""
    target = spec.study.n_trials
    if spec.study.sampler == "grid":
        target = min(target, math.prod(len(v) for v in grid_search_space(spec).values()))
    study.sampler = make_sampler(spec, seed_offset=len(study.get_trials(deepcopy=False)))
    started = time.perf_counter()
    done = finished_count(study)
    reporter = ProgressReporter(console, target, done)
    objective = Objective(
        spec, data, device, on_trial_start=reporter.trial_start, on_epoch=reporter.epoch
    )
    runs = 0

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal done
        done = finished_count(study)
        reporter.trial_end(study, trial, done)

    with reporter.progress, sigterm_as_interrupt():
        while done < target:
            study.optimize(objective, n_trials=1, catch=(TrialDiverged,), callbacks=[after_trial])
            runs += 1
    return WorkerSummary(runs, done, target, time.perf_counter() - started)
