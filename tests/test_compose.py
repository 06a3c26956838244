"""docker-compose.yml: structure, healthcheck, start order, credentials, and real commands.

No Docker engine runs here, so the file is checked as data, with `docker-compose config` when
that client is installed, and the commands the services run are run against the local
PostgreSQL with the same environment variables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.main import get_command

from hpo.cli import app
from hpo.core.spec import load_spec
from hpo.store.artifacts import ONNX_NAME, find_artifact
from hpo.store.connect import open_storage
from tests.conftest import ROOT, invoke
from tests.pg import free_port, pg_url, start_cli, wait_all
from tests.test_workers import tiny_spec

__all__ = ["pg_url"]  # fixture used below

COMPOSE = ROOT / "docker-compose.yml"
REAL_RUN = ROOT / "tests" / "compose"  # the stack run for real (run.sh, from .ci/run)
ENV_EXAMPLE = ROOT / ".env.example"
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        if env.get(name):
            return env[name]
        if operator and operator.endswith("?"):
            raise AssertionError(f"${{{name}}} unset: {argument}")
        return argument if operator and operator.endswith("-") else ""

    return _VARIABLE.sub(substitute, value)


def command_of(service: str, env: dict[str, str]) -> list[str]:
    return [interpolate(part, env) for part in compose()["services"][service]["command"]]


def environment_of(service: str, env: dict[str, str]) -> dict[str, str]:
    raw = compose()["services"][service].get("environment", {})
    return {key: interpolate(str(value), env) for key, value in raw.items()}


def test_services_start_in_order_and_postgres_has_a_healthcheck() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {"postgres", "init", "worker", "dashboard"}

    postgres = services["postgres"]
    assert interpolate(postgres["image"], env_example()).startswith("postgres:")
    volume = next(v for v in postgres["volumes"] if v.endswith(":/var/lib/postgresql/data"))
    assert volume.split(":")[0] in spec["volumes"], "PostgreSQL data lives in a named volume"
    check = postgres["healthcheck"]
    assert "pg_isready" in " ".join(check["test"])
    assert check["retries"] >= 3 and check["interval"]

    healthy = {"condition": "service_healthy"}
    created = {"condition": "service_completed_successfully"}
    assert services["init"]["depends_on"] == {"postgres": healthy}
    assert services["init"]["restart"] == "no", "init is one-shot"
    assert services["worker"]["depends_on"] == {"postgres": healthy, "init": created}
    assert services["dashboard"]["depends_on"]["init"] == created


def test_workers_scale_and_dashboard_is_published_on_localhost_only() -> None:
    services = compose()["services"]
    worker = services["worker"]
    # `--scale worker=4` needs no fixed container name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    for service in ("postgres", "init", "worker"):
        assert "ports" not in services[service], f"{service} publishes nothing"
    ports = services["dashboard"]["ports"]
    assert ports and all(str(p).startswith("127.0.0.1:") for p in ports)


def test_credentials_come_from_dotenv() -> None:
    text = COMPOSE.read_text()
    example = env_example()
    assert example["POSTGRES_PASSWORD"] not in text, "no literal password in the compose file"
    assert "${POSTGRES_PASSWORD:?" in text, "a missing password stops compose with a message"
    used = set(re.findall(r"\$\{(\w+)", text))
    assert used <= set(example), f"variables missing from .env.example: {used - set(example)}"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and ".env.example" not in ignored
    for service in ("init", "worker", "dashboard"):
        storage = environment_of(service, example)["HPO_STORAGE"]
        assert storage.startswith("postgresql+psycopg://") and "@postgres:5432/" in storage


def test_every_service_command_is_a_real_command() -> None:
    env = env_example()
    cli = get_command(app)
    for service in ("init", "worker", "dashboard"):
        command = command_of(service, env)
        assert command[0] == "hpo", service
        name, args = command[1], command[2:]
        assert name in cli.commands, f"{service}: no `hpo {name}` command"
        # Parses like the real CLI would (unknown options or missing values raise).
        cli.commands[name].make_context(name, list(args))
    assert command_of("init", env)[1] == "create" and command_of("worker", env)[1] == "worker"
    assert command_of("dashboard", env)[1] == "dashboard"


def test_workers_and_dashboard_share_one_artifact_folder() -> None:
    spec = compose()
    example = env_example()
    mounts = {}
    for service in ("init", "worker", "dashboard"):
        folder = environment_of(service, example)["HPO_ARTIFACTS"]
        volumes = [interpolate(v, example) for v in spec["services"][service]["volumes"]]
        mounted = [v.rsplit(":", 1)[0] for v in volumes if v.split(":")[1] == folder]
        assert len(mounted) == 1 and not volumes[0].endswith(f"{folder}:ro"), service
        mounts[service] = (folder, mounted[0])
    assert len(set(mounts.values())) == 1, f"one folder for every service: {mounts}"
    source = mounts["worker"][1]
    assert source in spec["volumes"], "the default source is a named volume compose creates"


def test_dockerfile_installs_the_lock_with_uv() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --locked" in dockerfile and "pip install" not in dockerfile
    for folder in ("hpo", "models", "studies"):
        assert f"COPY {folder} " in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".env", ".venv", ".git"} <= set(ignored), "secrets and local envs stay out of images"


def test_the_real_run_scripts_parse_and_its_study_is_valid() -> None:
    for script in ("run.sh", "images.sh", "postgres-entrypoint.sh"):
        shell = "sh" if script.startswith("postgres") else "bash"
        result = subprocess.run([shell, "-n", str(REAL_RUN / script)], capture_output=True)
        assert result.returncode == 0, result.stderr
    spec = load_spec(REAL_RUN / "tiny.toml")
    assert spec.study.n_trials >= 4, "room to scale up and stop workers before the target"
    assert spec.train.epochs == 1


def test_compose_config_validates(tmp_path: Path) -> None:
    client = shutil.which("docker-compose")
    if client is None:
        pytest.skip("docker-compose client not installed (apt-get install docker-compose)")
    env = {**os.environ, **env_example()}
    result = subprocess.run(
        [client, "--project-directory", str(ROOT), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # Without a password, compose refuses to start.
    env.pop("POSTGRES_PASSWORD")
    env["HOME"] = str(tmp_path)  # no stray .env from elsewhere
    missing = subprocess.run(
        [client, "--project-directory", str(tmp_path), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr


@pytest.mark.xdist_group("processes")
@pytest.mark.slow
@pytest.mark.postgres
def test_service_commands_run_a_study_on_postgres(
    pg_url: str, tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = 5
    env = {
        **env_example(),
        "HPO_SPEC": tiny_spec(tmp_path, "compose", target),
        "HPO_STUDY": "compose",
        "HPO_DATA": str(tiny_npz),
    }
    # The services' environment, pointed at the local server instead of the `postgres` host.
    storage = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    monkeypatch.setenv("HPO_STORAGE", storage)
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("HPO_GRACE_PERIOD", "5")
    artifacts = tmp_path / "artifacts"  # the services' shared artifact volume
    monkeypatch.setenv("HPO_ARTIFACTS", str(artifacts))

    init = command_of("init", env)
    for _ in range(2):  # one-shot, and idempotent if it runs again
        created = invoke(*init[1:])
        assert created.returncode == 0, created.stderr
        assert "study compose ready" in created.stdout and "hunter2" not in created.stdout

    worker = command_of("worker", env)
    workers = [start_cli(*worker[1:], log=tmp_path / f"worker-{i}.log") for i in range(2)]
    codes = wait_all(workers, timeout=300)
    logs = "".join((tmp_path / f"worker-{i}.log").read_text() for i in range(2))
    assert codes == [0, 0], logs
    assert "hunter2" not in logs

    optuna_storage = open_storage(storage)
    trials = optuna.load_study(study_name="compose", storage=optuna_storage).get_trials()
    states = [t.state for t in trials]
    complete = states.count(TrialState.COMPLETE)
    # Two workers: the total is reached, overshot by at most one, nothing left RUNNING.
    assert target <= complete <= target + 1, states
    assert TrialState.RUNNING not in states

    stored = sorted(p.name for p in artifacts.iterdir())
    assert stored, "the workers stored the front trials' models in the shared folder"

    port = free_port()
    dashboard = command_of("dashboard", env)
    dashboard = [{"0.0.0.0": "127.0.0.1", "8080": str(port)}.get(a, a) for a in dashboard]
    hpo = Path(sys.executable).parent / "hpo"
    server = subprocess.Popen(
        [str(hpo), *dashboard[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        studies = wait_for_json(f"http://127.0.0.1:{port}/api/studies", server, timeout=60)
        # A model a worker stored downloads through the dashboard, byte for byte.
        study_id = studies["study_summaries"][0]["study_id"]
        trial, onnx_id = next(
            (t, found)
            for t in trials
            if (found := find_artifact(t, optuna_storage, ONNX_NAME)) is not None
        )
        link = f"http://127.0.0.1:{port}/artifacts/{study_id}/{trial._trial_id}/{onnx_id}"
        with urllib.request.urlopen(link, timeout=30) as response:
            assert response.read() == (artifacts / onnx_id).read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=30)
    names = [s["study_name"] for s in studies["study_summaries"]]
    assert names == ["compose"]


def wait_for_json(url: str, server: subprocess.Popen, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"dashboard exited: {server.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"dashboard did not answer {url} within {timeout} s")
