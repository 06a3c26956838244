"""What a worker shows in the terminal: a progress bar over the study's target and one line per
finished trial (progress and notes go to the console given, stderr or stdout)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as ProgressBar
from rich.text import Text

from hpo.core.results import ms_text
from hpo.core.trial_attrs import FAIL_REASON_ATTR, STOP_REASON_ATTR, flat
from hpo.core.trial_config import TrialConfig
from hpo.store.connect import StoredStudy, retry_of
from hpo.store.lost import LostTrial
from hpo.store.progress import TargetCounts

# Always shown, in this form: model/norm optimizer lr=... scheduler.
_HEADLINE = ("model", "norm", "optimizer", "lr", "scheduler")


def describe(config: TrialConfig, searched: Mapping[str, Any] | None = None) -> str:
    """One line for a configuration: the headline params, then any other `searched` params
    (what the sampler chose for this trial, e.g. pool=avg loss=kl)."""
    # A model factory without norm_layer keeps its own norm layers: no norm to name.
    model = config.model if config.norm is None else f"{config.model}/{config.norm}"
    line = f"{model} {config.optimizer} lr={config.lr:.3g} {config.scheduler}"
    extra = [
        f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in (searched or {}).items()
        if name not in _HEADLINE
    ]
    return " ".join([line, *extra])


class _StudyProgress(ProgressBar):
    """The study's bar, with the running trial on a line of its own below it: a trial's params
    can be longer than the terminal is wide, and beside the bar they would squeeze it away.
    That line is cut at the terminal's width, so the live status goes first."""

    status = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.status:
            yield Text(self.status, no_wrap=True, overflow="ellipsis")


class TrialDisplay:
    """Progress bar over the study's target plus one line per finished trial."""

    def __init__(self, console: Console, stored: StoredStudy, target: int, done: int) -> None:
        self.console = console
        self.stored = stored
        self.bar = _StudyProgress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("remaining"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.bar.add_task("", total=target, completed=done)
        self.trial_started = time.perf_counter()
        self.current = ""
        self.params = ""
        self.last_wait: TargetCounts | None = None

    def trial_start(self, trial: optuna.Trial, config: TrialConfig) -> None:
        self.trial_started = time.perf_counter()
        retried = retry_of(self.stored.frozen_trial(trial.number))
        again = f" (retry of trial {retried})" if retried is not None else ""
        self.current = f"#{trial.number}{again}"
        self.params = describe(config, trial.params)
        self._show(f"{self.current} training")

    def epoch(self, epoch: int, epochs: int, loss: float, accuracy: float) -> None:
        self._show(f"{self.current} epoch {epoch}/{epochs} loss {loss:.3f} val {accuracy:.1%}")

    def _show(self, status: str) -> None:
        """The line below the bar: a status, then the running trial's params if one runs (cut
        where the line ends)."""
        self.bar.status = f"{status} · {self.params}" if status and self.params else status
        self.bar.refresh()

    def trial_end(self, trial: FrozenTrial, done: int) -> None:
        seconds = time.perf_counter() - self.trial_started
        name = f"trial {trial.number:>3}"
        retried = retry_of(trial)
        if retried is not None:
            name += f" (retry of trial {retried})"
        params = describe(
            TrialConfig.from_trial(trial.params, trial.user_attrs, trial.system_attrs), trial.params
        )
        if trial.state == TrialState.COMPLETE and trial.values:
            accuracy, latency_ms = trial.values
            self.console.print(
                f"{name}  {params}  accuracy {accuracy:6.2%}  latency {ms_text(latency_ms)} ms  "
                f"({seconds:.0f} s)"
            )
        elif trial.state == TrialState.PRUNED:
            reason = flat(trial.user_attrs, trial.system_attrs).get(STOP_REASON_ATTR, "stopped")
            self.console.print(f"{name}  {params}  [yellow]PRUNED[/]: {reason}")
        else:
            reason = flat(trial.user_attrs, trial.system_attrs).get(FAIL_REASON_ATTR, "failed")
            self.console.print(f"{name}  {params}  [red]{trial.state.name}[/]: {reason}")
        self.bar.update(self.task, completed=done)
        self.params = ""
        self._show("")

    def waiting(self, counts: TargetCounts) -> None:
        if counts != self.last_wait:
            self.last_wait = counts
            self.bar.update(self.task, completed=counts.finished)
            self._show(f"waiting for {counts.running} trial(s) of other workers")

    def lost(self, trial: FrozenTrial) -> None:
        """One line for a trial of this worker that another worker finished meanwhile."""
        attrs = flat(trial.user_attrs, trial.system_attrs)
        reason = attrs.get(FAIL_REASON_ATTR) or "no reason recorded"
        self.console.print(
            f"[yellow]trial {trial.number:>3}  dropped:[/] another worker marked it "
            f"{trial.state.name} while this worker ran it ({reason})",
            highlight=False,
        )
        self.params = ""
        self._show("")

    def lost_elsewhere(self, lost: list[LostTrial]) -> None:
        """One line per trial of another worker that this worker failed for its silence."""
        for trial in lost:
            self.console.print(
                f"trial {trial.number:>3}  [red]FAIL[/]: {trial.reason}", highlight=False
            )
