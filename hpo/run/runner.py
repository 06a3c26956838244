"""`hpo run`, `hpo create`, `hpo worker`: spec -> data -> storage -> study -> worker.

`run` = `create` + one worker in this process. `create` stores the spec in the study, so
`worker` processes on any machine need only the database URL and the study name. Everything a
user can get wrong (spec, data, storage URL) is checked before the study is created, so a bad
command leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console

from hpo.core import results
from hpo.core.errors import HpoError
from hpo.core.spec import Spec, load_spec, with_values
from hpo.core.trial_attrs import ARTIFACT_ERROR_ATTR
from hpo.device import prepare_process, select_device
from hpo.measure.serialize import deliverable_onnx
from hpo.run.context import WorkerContext, worker_id
from hpo.run.objective import CompleteHook, TrialOutcome
from hpo.run.user_model import prepare_model
from hpo.run.worker import AfterTrial, WorkerSummary, run_worker
from hpo.search.pruning import idle_pruner_note
from hpo.search.samplers import check_sampler
from hpo.store import artifacts, queries
from hpo.store.connect import StoredStudy, load_study, open_storage
from hpo.store.outcomes import study_target
from hpo.store.progress import TargetCounts, target_counts
from hpo.store.studies import check_data, check_factory, create_or_load_study, stored_spec
from hpo.store.url import safe_url
from hpo.train.checkpoint import checkpoint_bytes
from hpo.train.data import RawDataset, TensorDataset, check_dataset, load_raw, local_npz, prepare
from hpo.train.data_check import check_split
from models.user import ModelSources


@dataclass
class RunSummary:
    """What `hpo run` did and the study's Pareto front afterwards."""

    worker: WorkerSummary
    front: list[results.TrialResult]


def model_saver(storage_url: str, data: TensorDataset) -> CompleteHook:
    """A hook that stores a completing trial's models as artifacts when it is on the front."""
    try:
        store = artifacts.open_store(storage_url, create=True)
        problem = None
    except HpoError as exc:
        store, problem = None, str(exc)

    def save(trial: optuna.Trial, outcome: TrialOutcome) -> None:
        if store is None or outcome.model is None or outcome.folded is None:
            if problem is not None:
                trial.set_user_attr(ARTIFACT_ERROR_ATTR, problem)
            return
        model, folded = outcome.model, outcome.folded
        artifacts.save_if_on_front(
            store,
            trial,
            (outcome.accuracy, outcome.latency_ms),
            {
                artifacts.ONNX_NAME: lambda: deliverable_onnx(
                    folded, data.mean, data.std, data.num_classes
                ),
                artifacts.CHECKPOINT_NAME: lambda: checkpoint_bytes(
                    model, data.mean, data.std, data.num_classes
                ),
            },
        )

    return save


def work_on(
    stored: StoredStudy,
    spec: Spec,
    raw: RawDataset,
    storage_url: str,
    console: Console,
    seed_salt: int = 0,
    after_trial: AfterTrial | None = None,
) -> RunSummary:
    """Run one worker on an existing study with already-loaded data."""
    target, counts = study_target(spec), target_counts(stored)
    if counts.finished >= target and not counts.running and not counts.waiting:
        # A grid smaller than n_trials is the limit: raising n_trials would run nothing.
        more = (
            "a grid trains each of its points once"
            if target < spec.study.n_trials
            else "raise its n_trials (hpo create SPEC --n-trials N) to run more"
        )
        console.print(
            f"study {stored.name} is finished: {counts.finished} of {target} trials; {more}"
        )
        done = WorkerSummary(0, counts.finished, target, 0.0)
        return RunSummary(done, queries.best(stored))
    device = select_device(spec.train.device)
    prepare_process(device)
    data = prepare(raw, spec.data, device)
    epochs = spec.train.epochs
    console.print(
        f"study [bold]{stored.name}[/]: {spec.study.n_trials} "
        f"trial{'s' if spec.study.n_trials != 1 else ''}, sampler "
        f"{spec.study.sampler}, {len(data.train)} train / {len(data.val)} val images "
        f"({data.num_classes} classes) from {data.source}, {epochs} "
        f"epoch{'s' if epochs != 1 else ''} on {device}"
    )
    context = WorkerContext(stored, spec, data, device, worker_id())
    summary = run_worker(
        context,
        console,
        seed_salt=seed_salt,
        on_complete=model_saver(storage_url, data),
        after_trial=after_trial,
    )
    return RunSummary(summary, queries.best(stored))


def run_study(
    spec_path: Path,
    overrides: list[str],
    storage_url: str,
    console: Console,
    values: Mapping[str, Any] | None = None,
    after_trial: AfterTrial | None = None,
) -> RunSummary:
    """Create (or resume) the study described by the spec and run trials in this process."""
    spec = load_spec(spec_path, overrides, values)
    # Load and check the data before touching the database: bad data must not leave a study.
    raw = load_raw(spec.data)
    select_device(spec.train.device)
    # A model factory named by the spec is trusted: the spec was given on the command line.
    factory = prepare_model(
        spec, ModelSources(spec_dir=spec_path.resolve().parent), raw.num_classes
    )
    check_sampler(spec)  # e.g. grid over a continuous range: refuse before any study exists
    note_idle_pruner(spec)
    artifacts.check_folder(storage_url)  # a bad model folder, before any study too
    stored = create_or_load_study(spec, open_storage(storage_url), raw.shape, raw.source, factory)
    console.print(f"storage {safe_url(storage_url)}")
    spec = with_target_of(stored, spec, console.print)
    return work_on(stored, spec, raw, storage_url, console, after_trial=after_trial)


def note_idle_pruner(spec: Spec) -> None:
    """Say so on stderr when the spec's pruner can never act (its first rung is too late)."""
    study = spec.study
    note = idle_pruner_note(
        study.pruner, study.pruner_min_epochs, study.pruner_eta, spec.train.epochs
    )
    if note is not None:
        logging.getLogger("hpo.study").warning(note)


def with_target_of(stored: StoredStudy, spec: Spec, note: Callable[[str], None]) -> Spec:
    """`spec` with the study's stored n_trials, which a smaller given one does not lower."""
    target = stored_spec(stored.study).study.n_trials
    if target == spec.study.n_trials:
        return spec
    note(
        f"study {stored.name} keeps its target of {target} trials (given: "
        f"{spec.study.n_trials}); a target is only raised"
    )
    return with_values(spec, {"study.n_trials": target})


@dataclass
class CreateSummary:
    """The study `hpo create` made (or found) and where it stands."""

    name: str
    target: int  # the stored n_trials
    given: int  # the spec's n_trials: lower than `target` when a raised target was kept
    counts: TargetCounts


def create_or_update_study(
    spec_path: Path,
    overrides: list[str],
    storage_url: str,
    values: Mapping[str, Any] | None = None,
) -> CreateSummary:
    """Create the study described by the spec (or find it) and store the spec in it; no training.

    Idempotent: creating an existing study again updates its stored spec (e.g. a raised
    n_trials; a smaller one keeps the stored target) but refuses a different search space.
    """
    spec = load_spec(spec_path, overrides, values)
    # Workers load the data, maybe on other machines; check here what can be checked.
    shape = check_dataset(spec.data)
    factory = prepare_model(spec, ModelSources(spec_dir=spec_path.resolve().parent), shape.classes)
    check_sampler(spec)
    note_idle_pruner(spec)
    stored = create_or_load_study(
        spec, open_storage(storage_url), shape, spec.data.dataset, factory
    )
    target = stored_spec(stored.study).study.n_trials
    return CreateSummary(stored.name, target, spec.study.n_trials, target_counts(stored))


def worker_spec(study: optuna.Study, data: Path | None) -> Spec:
    """The spec stored in the study, with the dataset path replaced by `data` when given.

    A stored .npz path may be relative to wherever `hpo create` ran, so workers elsewhere can
    point at their own copy; the override stays local and is not written back.
    """
    spec = stored_spec(study)
    return spec if data is None else with_values(spec, {"data.dataset": str(data)})


def join_study(
    storage_url: str,
    study_name: str,
    data: Path | None,
    console: Console,
    seed_salt: int,
    after_trial: AfterTrial | None = None,
    models: ModelSources | None = None,
) -> RunSummary:
    """Join an existing study as one more worker, with the spec read from the database.

    A model factory the spec names is imported only from `models` (what this worker was given),
    never from where the database says."""
    local = local_npz(data)  # a bad --data fails before the database is opened
    artifacts.check_folder(storage_url)  # and so does a bad model folder
    stored = load_study(open_storage(storage_url, create=False), study_name)
    spec = worker_spec(stored.study, data)
    if local is None:
        raw = load_raw(spec.data)
    else:
        raw = local
        check_split(len(raw.y_train), spec.data, raw.source)
    check_data(stored, raw.shape, raw.source, record=False)
    factory = prepare_model(spec, models or ModelSources(), raw.num_classes)
    check_factory(stored, factory, record=False)
    check_data(stored, raw.shape, raw.source)  # recorded once every check has passed
    check_factory(stored, factory)
    console.print(f"storage {safe_url(storage_url)}")
    return work_on(
        stored, spec, raw, storage_url, console, seed_salt=seed_salt, after_trial=after_trial
    )
