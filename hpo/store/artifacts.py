"""Trained models as Optuna artifacts, so the dashboard can show them and `hpo export` reuse them.

A trial that lands on the Pareto front when it completes stores two files in a
FileSystemArtifactStore: `folded-model.onnx` (the BatchNorm-folded network, ready to download) and
`checkpoint.pt` (the trained weights and the input normalization, a plain tensor dict that
`torch.load(weights_only=True)` reads back). The store lives next to a SQLite database
(`hpo.db` -> `hpo.db.artifacts/`); for PostgreSQL give a shared folder with $HPO_ARTIFACTS or
`--artifacts`, otherwise no models are stored. This module moves bytes; the trial makes them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.core.dominance import dominance
from hpo.core.errors import HpoError
from hpo.core.trial_attrs import ARTIFACT_ERROR_ATTR, LATENCY_IQR_ATTR
from hpo.store.url import parse_url, sqlite_path

ARTIFACTS_ENV = "HPO_ARTIFACTS"
ONNX_NAME = "folded-model.onnx"
CHECKPOINT_NAME = "checkpoint.pt"


def artifact_dir(storage_url: str, explicit: str | Path | None = None) -> Path | None:
    """Where models live: `explicit`, else $HPO_ARTIFACTS, else `<sqlite db>.artifacts`."""
    chosen = explicit or os.environ.get(ARTIFACTS_ENV)
    if chosen:
        return Path(chosen).expanduser()
    database = sqlite_path(parse_url(storage_url))
    return database.with_name(database.name + ".artifacts") if database is not None else None


def named_by(explicit: str | Path | None = None) -> str | None:
    """How a person named the artifact folder (`--artifacts`, $HPO_ARTIFACTS), or None for the
    default next to a SQLite file."""
    if explicit:
        return "--artifacts"
    return ARTIFACTS_ENV if os.environ.get(ARTIFACTS_ENV) else None


def check_folder(storage_url: str, explicit: str | Path | None = None) -> None:
    """Refuse a model folder a worker could not store into (a file, or under one, or in a
    read-only folder) without creating anything: checked before a study exists."""
    folder = artifact_dir(storage_url, explicit)
    if folder is None:
        return
    where = f"{named_by(explicit) or 'artifact folder'} {folder}"
    # lexists: a dangling link is there too, and nothing can be made in its place.
    existing = next(p for p in [folder, *folder.absolute().parents] if os.path.lexists(p))
    if not existing.is_dir():
        what = "is" if existing == folder else f"is under {existing},"
        kind = "a link to nothing" if not existing.exists() else "a file"
        raise HpoError(f"{where}: {what} {kind}, not a folder; give a folder for the models")
    if not os.access(existing, os.W_OK):
        state = (
            "is read-only" if existing == folder else f"cannot be created, {existing} is read-only"
        )
        raise HpoError(f"{where}: {state}; models could not be stored")


def open_store(
    storage_url: str, explicit: str | Path | None = None, *, create: bool = False
) -> FileSystemArtifactStore | None:
    """The artifact store of a storage URL, or None when there is none (yet).

    With `create` (a worker that stores models) the folder is made; a path that is a file or
    cannot be made is an HpoError. Without it (commands that read models), a folder a person
    named must exist: a mistyped one would show no model, or have `export` retrain silently."""
    folder = artifact_dir(storage_url, explicit)
    if folder is None:
        return None
    where = f"{named_by(explicit) or 'artifact folder'} {folder}"
    if create:
        if folder.exists() and not folder.is_dir():
            raise HpoError(f"{where}: is a file, not a folder; give a folder for the models")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HpoError(f"{where}: cannot create the folder ({exc.strerror})") from None
    elif not folder.is_dir():
        if named_by(explicit):
            what = "is a file, not a folder" if folder.exists() else "no such folder"
            raise HpoError(
                f"{where}: {what}; give the folder the workers store models in (their "
                f"{ARTIFACTS_ENV}), or create it first"
            )
        return None
    return FileSystemArtifactStore(folder)


def is_on_front(
    accuracy: float, latency_ms: float, others: Sequence[FrozenTrial], spread: float = 0.0
) -> bool:
    """True when no other trial dominates (`accuracy`, `latency_ms`) whose latency IQR is
    `spread`: none is as accurate, no slower, and better on one (`hpo.core.dominance`)."""
    points = [(t.values[0], t.values[1], latency_spread(t)) for t in others if _two_values(t)]
    points.append((accuracy, latency_ms, spread))
    accuracies, latencies, spreads = zip(*points, strict=True)
    return not dominance(accuracies, latencies, spreads, [len(points) - 1]).any()


def latency_spread(trial: optuna.Trial | FrozenTrial) -> float:
    """The trial's recorded latency IQR in ms; 0 where none was recorded."""
    spread = trial.user_attrs.get(LATENCY_IQR_ATTR)
    return float(spread) if isinstance(spread, int | float) else 0.0


def _two_values(trial: FrozenTrial) -> bool:
    return trial.values is not None and len(trial.values) == 2


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
    store: FileSystemArtifactStore,
    trial: optuna.Trial,
    objectives: tuple[float, float],
    files: dict[str, Callable[[], bytes]],
) -> bool:
    """Store the trial's files (made only when needed) if the trial is on the front.

    Called just before the trial completes, so "on the front" means against the trials
    completed so far: a front trial's model is on disk even if later trials dominate it.
    """
    completed = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not is_on_front(*objectives, completed, latency_spread(trial)):
        return False
    problems = []
    for name, make in files.items():
        try:
            upload_bytes(store, trial, name, make())
        except (OSError, HpoError) as exc:
            # A full disk, or a network ONNX cannot export, must not turn a finished trial into
            # a failed one; say why it has no such file.
            problems.append(f"{name}: {exc}")
            if isinstance(exc, OSError):
                break  # the disk: no other file will fit either
    if problems:
        trial.set_user_attr(ARTIFACT_ERROR_ATTR, "; ".join(problems))
    return not problems


def find_artifact(trial: FrozenTrial, storage: BaseStorage, name: str) -> str | None:
    """The id of the trial's newest artifact called `name`, or None."""
    metas = [m for m in get_all_artifact_meta(trial, storage=storage) if m.filename == name]
    return metas[-1].artifact_id if metas else None


def read_artifact(store: FileSystemArtifactStore, artifact_id: str) -> bytes:
    """The content of a stored artifact."""
    with store.open_reader(artifact_id) as reader:
        return reader.read()
