"""Trained models as Optuna artifacts, so the dashboard can show them and `hpo export` reuse them.

A trial that lands on the Pareto front when it completes stores two files in a
FileSystemArtifactStore: `folded-model.onnx` (the BatchNorm-folded network, ready to download) and
`checkpoint.pt` (the trained weights and the input normalization, a plain tensor dict that
`torch.load(weights_only=True)` reads back). The store lives next to a SQLite database
(`hpo.db` -> `hpo.db.artifacts/`); for PostgreSQL give a shared folder with $HPO_ARTIFACTS or
`--artifacts`, otherwise no models are stored.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from hpo.data import TensorDataset
from hpo.errors import HpoError
from hpo.storage import parse_url

ARTIFACTS_ENV = "HPO_ARTIFACTS"
ONNX_NAME = "folded-model.onnx"
CHECKPOINT_NAME = "checkpoint.pt"


def artifact_dir(storage_url: str, explicit: str | Path | None = None) -> Path | None:
    """Where models live: `explicit`, else $HPO_ARTIFACTS, else `<sqlite db>.artifacts`."""
    chosen = explicit or os.environ.get(ARTIFACTS_ENV)
    if chosen:
        return Path(chosen).expanduser()
    parsed = parse_url(storage_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        database = Path(parsed.database).expanduser()
        return database.with_name(database.name + ".artifacts")
    return None


def open_store(
    storage_url: str, explicit: str | Path | None = None, *, create: bool = False
) -> FileSystemArtifactStore | None:
    """The artifact store of a storage URL, or None when there is none (yet)."""
    folder = artifact_dir(storage_url, explicit)
    if folder is None:
        return None
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HpoError(f"cannot create the artifact folder {folder}: {exc}") from None
    elif not folder.is_dir():
        return None
    return FileSystemArtifactStore(folder)


def _storage_url(storage: BaseStorage) -> str | None:
    # Optuna wraps an RDBStorage in a private caching layer; the URL lives on the wrapped one.
    backend = getattr(storage, "_backend", storage)
    url = getattr(backend, "url", None)
    return url if isinstance(url, str) else None


@cache
def _store_for_url(url: str) -> FileSystemArtifactStore | None:
    return open_store(url, create=True)


def is_on_front(accuracy: float, latency_ms: float, others: Sequence[FrozenTrial]) -> bool:
    """True when no other trial is at least as good on both objectives and better on one."""
    for trial in others:
        if not trial.values or len(trial.values) != 2:
            continue
        other_accuracy, other_latency = trial.values
        no_worse = other_accuracy >= accuracy and other_latency <= latency_ms
        if no_worse and (other_accuracy > accuracy or other_latency < latency_ms):
            return False
    return True


def checkpoint_bytes(model: nn.Module, data: TensorDataset) -> bytes:
    """The trained weights and input normalization as a tensor-only dict (weights_only-safe)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {
        "state_dict": state,
        "mean": data.mean.cpu(),
        "std": data.std.cpu(),
        "num_classes": data.num_classes,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def upload_bytes(
    store: FileSystemArtifactStore,
    trial: optuna.Trial | FrozenTrial,
    name: str,
    content: bytes,
    storage: BaseStorage | None = None,
) -> str:
    """Upload `content` as artifact `name` of the trial; returns the artifact id."""
    with tempfile.TemporaryDirectory(prefix="hpo-artifact-") as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        return upload_artifact(
            artifact_store=store, file_path=str(path), study_or_trial=trial, storage=storage
        )


def save_if_on_front(
    trial: optuna.Trial,
    accuracy: float,
    latency_ms: float,
    model: nn.Module,
    folded: nn.Module,
    data: TensorDataset,
) -> bool:
    """Store the folded model and checkpoint when the trial is on the front; True if stored.

    Called just before the trial completes, so "on the front" means against the trials
    completed so far: a front trial's model is on disk even if later trials dominate it.
    """
    url = _storage_url(trial.storage)
    try:
        store = _store_for_url(url) if url else None
    except HpoError as exc:
        trial.set_user_attr("artifact_error", str(exc))
        return False
    if store is None:
        return False
    completed = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not is_on_front(accuracy, latency_ms, completed):
        return False
    from hpo.export import onnx_bytes

    try:
        upload_bytes(store, trial, ONNX_NAME, onnx_bytes(folded))
        upload_bytes(store, trial, CHECKPOINT_NAME, checkpoint_bytes(model, data))
    except OSError as exc:
        # A full disk must not turn a finished trial into a failed one; say why it has no model.
        trial.set_user_attr("artifact_error", str(exc))
        return False
    return True


def find_artifact(trial: FrozenTrial, storage: BaseStorage, name: str) -> str | None:
    """The id of the trial's newest artifact called `name`, or None."""
    metas = [m for m in get_all_artifact_meta(trial, storage=storage) if m.filename == name]
    return metas[-1].artifact_id if metas else None


def load_checkpoint(store: FileSystemArtifactStore, artifact_id: str) -> dict[str, Any]:
    """Read a stored checkpoint back (tensors only: torch.load with weights_only=True)."""
    with store.open_reader(artifact_id) as reader:
        content = reader.read()
    checkpoint = torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise HpoError(f"artifact {artifact_id} is not an hpo checkpoint")
    return checkpoint
