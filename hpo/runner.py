"""`hpo run`: spec -> data -> storage -> study -> worker, failing early on bad input.

Everything a user can get wrong (spec, data, storage URL) is checked before the study is
created, so a bad command leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from rich.console import Console

from hpo import results
from hpo.data import RawDataset, load_raw, prepare
from hpo.errors import HpoError
from hpo.samplers import make_sampler
from hpo.spec import Spec, load_spec
from hpo.storage import open_storage, safe_url
from hpo.study import create_or_load_study
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


def work_on(study: optuna.Study, spec: Spec, raw: RawDataset, console: Console) -> RunSummary:
    """Run one worker on an existing study with already-loaded data."""
    device = check_device(spec)
    if device.type == "cpu":
        # Denormal floats slowed training and latency 3-100x at random on CPU; flush them.
        torch.set_flush_denormal(True)
    data = prepare(raw, spec.data, device)
    console.print(
        f"study [bold]{study.study_name}[/]: {spec.study.n_trials} trials, sampler "
        f"{spec.study.sampler}, {len(data.train)} train / {len(data.val)} val images from "
        f"{data.source}, {spec.train.epochs} epochs on {device}"
    )
    summary = run_worker(study, spec, data, device, console)
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
