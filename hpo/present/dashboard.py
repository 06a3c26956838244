"""`hpo dashboard`: optuna-dashboard on a study database, with specs as notes and model artifacts.

The metric names (accuracy, latency_ms) are set when a study is created, so the dashboard puts
them on its axes; each study's spec is its note (written by the store when the study is made).
This module only serves.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna

from hpo.core.errors import HpoError
from hpo.core.trial_attrs import SPEC_ATTR
from hpo.present import figures
from hpo.store.artifacts import artifact_dir, named_by, open_store
from hpo.store.connect import StoredStudy, open_storage
from hpo.store.studies import prepare_for_dashboard

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

LOCALHOST = "127.0.0.1"


def check_port_free(host: str, port: int) -> None:
    """Fail with a clear message before starting when the address cannot be bound."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            # As the server binds: a port whose last connections linger in TIME_WAIT (a
            # dashboard just stopped) is free to listen on.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    from optuna_dashboard import wsgi

    storage = open_storage(storage_url, create=False)
    check_port_free(host, port)
    # A folder a person named must exist (a mistyped one would be created empty and show no
    # model); the SQLite file's own folder is created even when empty, so models of trials
    # that finish while the dashboard runs show up.
    store = open_store(storage_url, artifacts, create=named_by(artifacts) is None)
    folder = artifact_dir(storage_url, artifacts) if store is not None else None
    names = prepare_for_dashboard(storage)
    for name in names:  # studies run before figures existed; plain Optuna ones are shown as is
        study = optuna.load_study(study_name=name, storage=storage)
        if SPEC_ATTR in study.user_attrs:
            figures.publish(StoredStudy.of(study, storage))
    shown_host = f"[{host}]" if ":" in host else host
    on_ready(DashboardPlan(f"http://{shown_host}:{port}/dashboard/", names, folder))
    serve_until_interrupted(wsgi(storage, artifact_store=store), host, port)


def serve_until_interrupted(app: WSGIApplication, host: str, port: int) -> None:
    """Serve `app` from a background thread until Ctrl-C or SIGTERM reaches the main thread.

    Requests are answered in the server's thread, so the signal's exception is raised in the
    main thread, which only waits, and never inside a request, where wsgiref would catch and
    print it and keep serving.
    """
    server_class = _IPv6Server if ":" in host else WSGIServer
    server = make_server(host, port, app, server_class, _RequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(timeout=0.5)
    finally:
        server.shutdown()
        server.server_close()


class _IPv6Server(WSGIServer):
    address_family = socket.AF_INET6


class _RequestHandler(WSGIRequestHandler):
    def address_string(self) -> str:
        return str(self.client_address[0])  # no reverse DNS lookup for each request
