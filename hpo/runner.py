"""`hpo run`, `hpo create`, `hpo worker`: spec -> data -> storage -> study -> worker.

`run` = `create` + one worker in this process. `create` stores the spec in the study, so
`worker` processes on any machine need only the database URL and the study name. Everything a
user can get wrong (spec, data, storage URL) is checked before the study is created, so a bad
command leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from rich.console import Console

from hpo import results
from hpo.data import RawDataset, check_dataset, load_raw, prepare
from hpo.errors import HpoError
from hpo.samplers import make_sampler
from hpo.spec import Spec, load_spec, validate
from hpo.storage import load_study, open_storage, safe_url
from hpo.study import Progress, create_or_load_study, stored_spec, study_progress
from hpo.train import resolve_device
from hpo.worker import WorkerSummary, run_worker


@dataclass
class RunSummary:
    """What `hpo run` did and the study's Pareto front afterwards."""

    worker: WorkerSummary
    front: list[results.TrialResult]


def check_device(spec: Spec) -> torch.device:
    """The training device; asking for CUDA without one is a clear error."""
    device = resolve_device(spec.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HpoError("[train] device: cuda requested but no CUDA device; allowed here: auto, cpu")
    return device


def work_on(
    study: optuna.Study, spec: Spec, raw: RawDataset, console: Console, seed_salt: int = 0
) -> RunSummary:
    """Run one worker on an existing study with already-loaded data."""
    device = check_device(spec)
    # torch imports torch._dynamo (and triton) lazily when the first optimizer is built; a Ctrl-C
    # or SIGTERM in the middle of that import aborted the process (SIGABRT at exit). Import it
    # now, before any trial runs, so an interrupted trial always ends as FAIL and exits cleanly.
    import torch._dynamo  # noqa: F401

    if device.type == "cpu":
        # Denormal floats slowed training and latency 3-100x at random on CPU; flush them.
        torch.set_flush_denormal(True)
    data = prepare(raw, spec.data, device)
    console.print(
        f"study [bold]{study.study_name}[/]: {spec.study.n_trials} trials, sampler "
        f"{spec.study.sampler}, {len(data.train)} train / {len(data.val)} val images from "
        f"{data.source}, {spec.train.epochs} epochs on {device}"
    )
    summary = run_worker(study, spec, data, device, console, seed_salt=seed_salt)
    return RunSummary(summary, results.pareto_front(results.completed(study)))


def run_study(
    spec_path: Path, overrides: list[str], storage_url: str, console: Console
) -> RunSummary:
    """Create (or resume) the study described by the spec and run trials in this process."""
    spec = load_spec(spec_path, overrides)
    # Load the data before touching the database: a missing file must not leave a study behind.
    raw = load_raw(spec.data)
    check_device(spec)
    make_sampler(spec)  # e.g. grid over a continuous range: refuse before any study exists
    storage = open_storage(storage_url)
    study = create_or_load_study(spec, storage)
    console.print(f"storage {safe_url(storage_url)}")
    return work_on(study, spec, raw, console)


@dataclass
class CreateSummary:
    """The study `hpo create` made (or found) and where it stands."""

    name: str
    target: int
    progress: Progress


def create_study(spec_path: Path, overrides: list[str], storage_url: str) -> CreateSummary:
    """Create the study described by the spec (or find it) and store the spec in it; no training.

    Idempotent: creating an existing study again updates its stored spec (e.g. a raised
    n_trials) but refuses a different search space.
    """
    spec = load_spec(spec_path, overrides)
    # Only check the dataset is there: workers load it, maybe on other machines.
    check_dataset(spec.data)
    make_sampler(spec)
    study = create_or_load_study(spec, open_storage(storage_url))
    return CreateSummary(study.study_name, spec.study.n_trials, study_progress(study))


def worker_spec(study: optuna.Study, data: Path | None) -> Spec:
    """The spec stored in the study, with the dataset path replaced by `data` when given.

    A stored .npz path may be relative to wherever `hpo create` ran, so workers elsewhere can
    point at their own copy; the override stays local and is not written back.
    """
    spec = stored_spec(study)
    if data is None:
        return spec
    raw = {section: dict(values) for section, values in spec.raw.items()}
    raw.setdefault("data", {})["dataset"] = str(data)
    return validate(raw)


def join_study(
    storage_url: str, study_name: str, data: Path | None, console: Console, seed_salt: int
) -> RunSummary:
    """Join an existing study as one more worker, with the spec read from the database."""
    study = load_study(open_storage(storage_url, create=False), study_name)
    spec = worker_spec(study, data)
    raw = load_raw(spec.data)
    console.print(f"storage {safe_url(storage_url)}")
    return work_on(study, spec, raw, console, seed_salt=seed_salt)
