"""What the study figures and the report show, read once: complete trials, the trials that
ended early (with why, how far they trained and their probed latency), the study's progress and
where each front trial's model can be had.

Complete trials come from the fast SQL queries; the trials that ended early are read through
Optuna (their params, curve and reason), which costs little next to training them.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.core import results
from hpo.core.errors import SpecError
from hpo.core.model_ref import ModelRef, is_model_ref, parse_model_ref
from hpo.core.results import TrialResult
from hpo.core.trial_attrs import (
    FAIL_REASON_ATTR,
    LATENCY_MS_ATTR,
    SPEC_ATTR,
    STOP_REASON_ATTR,
    VAL_CURVE_ATTR,
    flat,
)
from hpo.core.trial_config import stored_params
from hpo.store import artifacts, outcomes, queries
from hpo.store.connect import StoredStudy
from hpo.store.progress import target_counts
from hpo.store.url import safe_url

ENDED_STATES = (TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class EndedTrial:
    """A trial that stopped (PRUNED) or failed (FAIL): why, and how far it got."""

    number: int
    state: str
    reason: str
    params: dict[str, Any]
    latency_ms: float | None
    curve: list[float]

    @property
    def trained(self) -> bool:
        """True when it finished at least one epoch (so it has an accuracy to show)."""
        return bool(self.curve)

    @property
    def last_accuracy(self) -> float | None:
        return self.curve[-1] if self.curve else None

    def as_result(self) -> TrialResult:
        """The trial at its last accuracy, as the per-choice figures draw it."""
        return TrialResult(
            number=self.number,
            accuracy=self.curve[-1],
            latency_ms=self.latency_ms if self.latency_ms is not None else float("nan"),
            params=self.params,
            test_accuracy=None,
            latency_ratio=None,
            n_folded=None,
            latency_backend=None,
        )


def ended_trial(trial: FrozenTrial) -> EndedTrial:
    """A PRUNED or FAIL trial as people read it."""
    attrs = flat(trial.user_attrs, trial.system_attrs)
    reason_key = STOP_REASON_ATTR if trial.state == TrialState.PRUNED else FAIL_REASON_ATTR
    latency = attrs.get(LATENCY_MS_ATTR)
    curve = attrs.get(VAL_CURVE_ATTR)
    return EndedTrial(
        number=trial.number,
        state=trial.state.name,
        reason=str(attrs.get(reason_key) or "no reason recorded"),
        params=stored_params(trial.params, trial.user_attrs, trial.system_attrs),
        latency_ms=float(latency) if isinstance(latency, int | float) else None,
        curve=[float(v) for v in curve] if isinstance(curve, list) else [],
    )


@dataclass(frozen=True)
class Progress:
    """How far the study is: trials finished against its target, and when the front last moved."""

    finished: int  # trials that count toward the target, as the workers count them
    target: int | None  # n_trials, or the grid's size when smaller
    running: int
    last_trial: int | None  # the highest trial number that finished
    last_front_gain: int | None  # the trial after which the hypervolume last grew
    over_budget: int = 0  # trials not trained: their architecture is over the latency budget
    grid_done: bool = False  # every point of a grid is trained or over the budget

    @property
    def done(self) -> bool:
        reached = self.target is not None and self.finished >= self.target
        return (reached or self.grid_done) and not self.running

    def line(self) -> str:
        """One line: "finished: 10 of 10 trials; the front last moved at trial 3"."""
        of = f" of {self.target}" if self.target is not None else ""
        # Not done and nothing running: `hpo run` (or a worker) goes on from here.
        head = "finished" if self.done else "running" if self.running else "unfinished"
        text = f"{head}: {self.finished}{of} trials"
        if self.over_budget:
            text += f", {self.over_budget} more over the latency budget (not trained)"
        if self.running:
            text += f", {self.running} running"
        if self.last_front_gain is None:
            return text + "; no complete trial yet"
        return text + f"; the front last moved at trial {self.last_front_gain}"


def last_front_gain(history: Sequence[tuple[int, float]]) -> int | None:
    """The trial after which the hypervolume last grew (the first trial if it never did)."""
    gain, before = None, None
    for number, volume in history:
        if before is None or volume > before:
            gain = number
        before = volume
    return gain


@dataclass(frozen=True)
class ModelSource:
    """Where a front trial's model is: a download link (dashboard) and the export command."""

    number: int
    export_command: str
    # What a placeholder in the command stands for (`models_folder_note`), or ''.
    command_note: str = ""
    onnx_url: str | None = None  # relative to the dashboard's root
    onnx_path: str | None = None  # the artifact file on this machine, for the report


@dataclass(frozen=True)
class StudyView:
    """Everything the figures and the report draw from."""

    name: str
    finished: list[TrialResult]
    ended: list[EndedTrial]
    progress: Progress
    curves: dict[int, list[float]]
    sources: dict[int, ModelSource] = field(default_factory=dict)
    # The trials within the study's latency budget (all without one), and their Pareto front,
    # as `hpo best` has it: the front and its hypervolume are drawn from these.
    feasible: list[TrialResult] = field(default_factory=list)
    front: list[TrialResult] = field(default_factory=list)

    @property
    def stopped(self) -> list[EndedTrial]:
        """Trials that ended early after training at least one epoch."""
        return [e for e in self.ended if e.trained]

    def probed_latencies(self) -> list[tuple[str, float, bool]]:
        """(norm, latency ms, complete?) of every trial whose latency was measured."""
        rows = [(str(r.params.get("norm")), r.latency_ms, True) for r in self.finished]
        rows += [
            (str(e.params.get("norm")), e.latency_ms, False)
            for e in self.ended
            if e.latency_ms is not None
        ]
        return rows


def export_command(
    stored: StoredStudy, number: int, *, two_lines: bool = False, storage_from_env: bool = False
) -> str:
    """The `hpo export` command that writes the trial's model (password masked); `two_lines`
    puts the storage URL on a continuation line, for terminals. With `storage_from_env` (the
    URL came from $HPO_STORAGE) there is no --storage: the command reads the same variable,
    password and all, where a masked URL would not connect."""
    name = shlex.quote(stored.name)
    head = f"hpo export --study-name {name} --trial {number} --out model-{number}"
    if models := models_option(stored):
        head += f" {models}"
    if storage_from_env:
        return head
    storage = f"--storage {shlex.quote(safe_url(stored.storage.url))}"
    return f"{head} \\\n    {storage}" if two_lines else f"{head} {storage}"


def models_option(stored: StoredStudy) -> str:
    """The `--models` option a command that rebuilds the study's networks needs: the module of
    a module factory, `DIR` (the folder holding the file, see `models_folder_note`) for a file
    factory, '' for a built-in family or torchvision."""
    ref = _imported_factory(stored)
    if ref is None:
        return ""
    return f"--models {shlex.quote(ref.source) if ref.kind == 'module' else 'DIR'}"


def models_folder_note(stored: StoredStudy) -> str:
    """What `DIR` stands for in `models_option`, or '' where it is not used."""
    ref = _imported_factory(stored)
    if ref is None or ref.kind != "file":
        return ""
    return f"DIR: the folder that holds {ref.source}, at that path"


def _imported_factory(stored: StoredStudy) -> ModelRef | None:
    """The file or module factory the stored spec names, where a `--models` option can reach
    it; None for a built-in family, torchvision, or a file outside any folder below it (an
    absolute path, or one that climbs out: `--models` refuses those)."""
    ref = _factory_ref(stored)
    if ref is None or ref.kind == "torchvision":
        return None
    if ref.kind == "file":
        path = PurePosixPath(ref.source)
        if path.is_absolute() or ".." in path.parts:
            return None
    return ref


def _factory_ref(stored: StoredStudy) -> ModelRef | None:
    """The model factory the stored spec names, or None (a built-in family, or no spec). Read
    from the raw stored spec, not `stored_spec`: showing a command must not need a spec that
    still validates."""
    spec = stored.study.user_attrs.get(SPEC_ATTR)
    search = spec.get("search") if isinstance(spec, dict) else None
    model = search.get("model") if isinstance(search, dict) else None
    if not is_model_ref(model):
        return None
    try:
        return parse_model_ref(str(model))
    except SpecError:
        return None


def model_sources(
    stored: StoredStudy, numbers: Sequence[int], artifact_folder: str | None = None
) -> dict[int, ModelSource]:
    """For each trial number, its export command and, where stored, its ONNX download."""
    sources = {}
    note = models_folder_note(stored)
    for number in numbers:
        trial_id = stored.storage.get_trial_id_from_study_id_trial_number(stored.study_id, number)
        trial = stored.storage.get_trial(trial_id)
        artifact_id = artifacts.find_artifact(trial, stored.storage, artifacts.ONNX_NAME)
        url = path = None
        if artifact_id is not None:
            url = f"/artifacts/{stored.study_id}/{trial_id}/{artifact_id}"
            if artifact_folder is not None:
                path = f"{artifact_folder}/{artifact_id}"
        sources[number] = ModelSource(number, export_command(stored, number), note, url, path)
    return sources


def _target_progress(stored: StoredStudy, trials: list[FrozenTrial]) -> dict[str, Any]:
    """Trials toward the target as the workers count them (`hpo.store.outcomes`): what is
    interrupted, lost or over the budget is not one of the study's `n_trials`. `trials`: all
    of the study's, just read."""
    # A dead worker's RUNNING trial is not counted once its heartbeat is stale, as by workers.
    workers = target_counts(stored, trials)
    counts: dict[str, Any] = {
        "finished": workers.finished,
        "running": workers.running,
        "over_budget": sum(outcomes.over_budget(t) for t in trials),
    }
    counts["target"], spec = outcomes.stored_target(stored.study.user_attrs.get(SPEC_ATTR))
    if spec is not None and spec.study.sampler == "grid":
        counts["grid_done"] = outcomes.grid_points_settled(trials) >= outcomes.grid_size(spec)
    return counts


def study_view(stored: StoredStudy, artifact_folder: str | None = None) -> StudyView:
    """Read what the figures and the report show."""
    finished = queries.completed(stored)
    trials = stored.study.get_trials(deepcopy=False)
    ended = sorted(
        (ended_trial(t) for t in trials if t.state in ENDED_STATES), key=lambda e: e.number
    )
    feasible = results.feasible(finished, queries.study_budget(stored))
    history = (
        results.hypervolume_history(feasible, results.reference_point(finished)) if finished else []
    )
    numbers = [r.number for r in finished] + [e.number for e in ended]
    progress = Progress(
        **_target_progress(stored, trials),
        last_trial=max(numbers, default=None),
        last_front_gain=last_front_gain(history),
    )
    front = results.pareto_front(feasible)
    return StudyView(
        name=stored.name,
        finished=finished,
        ended=ended,
        progress=progress,
        curves=queries.attribute_values(stored, VAL_CURVE_ATTR),
        sources=model_sources(stored, [r.number for r in front], artifact_folder),
        feasible=feasible,
        front=front,
    )
