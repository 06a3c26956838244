"""`hpo dashboard`: optuna-dashboard on a study database, with specs as notes and model artifacts.

The metric names (accuracy, latency_ms) are set when a study is created, so the dashboard puts
them on its axes; each study's spec is written as its note (TOML) here and at creation time.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import RDBStorage

from hpo.errors import HpoError
from hpo.spec import dump_toml
from hpo.study import METRIC_NAMES, SPEC_ATTR

LOCALHOST = "127.0.0.1"
_NOTE_TITLE = "Study spec"


def spec_note(raw: dict) -> str:
    """The note shown on a study's dashboard page: its spec as TOML."""
    return f"## {_NOTE_TITLE}\n\n```toml\n{dump_toml(raw)}```\n"


def write_spec_note(study: optuna.Study) -> bool:
    """Write the study's spec as its dashboard note unless it is already there; True if written."""
    from optuna_dashboard import get_note, save_note

    raw = study.user_attrs.get(SPEC_ATTR)
    if not isinstance(raw, dict):
        return False
    body = spec_note(raw)
    if get_note(study) == body:
        return False
    save_note(study, body)
    return True


def prepare_studies(storage: RDBStorage) -> list[str]:
    """Give every hpo study its spec note and metric names; returns the study names."""
    names = []
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        if SPEC_ATTR in study.user_attrs:
            if study.metric_names is None and len(study.directions) == len(METRIC_NAMES):
                study.set_metric_names(list(METRIC_NAMES))
            write_spec_note(study)
        names.append(summary.study_name)
    return sorted(names)


def check_port_free(host: str, port: int) -> None:
    """Fail with a clear message before starting when the address cannot be bound."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise HpoError(f"--port {port}: already in use on {host}; choose another") from None
        raise HpoError(f"--host {host}: cannot listen there ({exc.strerror})") from None


@dataclass(frozen=True)
class DashboardPlan:
    """What `serve` will start: address, studies, and where model artifacts come from."""

    url: str
    studies: list[str]
    artifacts: Path | None


def serve(
    storage_url: str,
    host: str,
    port: int,
    artifacts: str | None,
    on_ready: Callable[[DashboardPlan], None],
) -> None:
    """Prepare the studies and run optuna-dashboard until interrupted."""
    from optuna_dashboard import run_server

    from hpo.artifacts import artifact_dir, open_store
    from hpo.storage import open_storage

    storage = open_storage(storage_url, create=False)
    check_port_free(host, port)
    # Created even when empty, so models of trials that finish while the dashboard runs show up.
    store = open_store(storage_url, artifacts, create=True)
    folder = artifact_dir(storage_url, artifacts) if store is not None else None
    names = prepare_studies(storage)
    shown_host = f"[{host}]" if ":" in host else host
    on_ready(DashboardPlan(f"http://{shown_host}:{port}/dashboard/", names, folder))
    run_server(storage, host=host, port=port, artifact_store=store)
