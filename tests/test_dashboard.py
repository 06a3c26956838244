"""`hpo dashboard`: the real optuna-dashboard process, looked at with headless Chromium."""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import onnx
import optuna
import pytest

from hpo.core.spec import dump_toml, read_toml
from hpo.core.trial_attrs import stored_config
from hpo.present.figures import DASHBOARD_FIGURES
from hpo.store import artifacts
from hpo.store.studies import spec_note, write_spec_note
from tests import synthetic
from tests.conftest import ROOT, FinishedStudy, invoke
from tests.pg import default_sigint

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_dashboard(url: str, port: int) -> Iterator[str]:
    """Start `hpo dashboard` as a subprocess; yields its first stdout line once it serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo", "dashboard", "--storage", url, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # request logs; a failure shows as no server below
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"dashboard exited with {process.returncode}: {banner}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not answer within 90 s"
                time.sleep(0.5)
        yield banner
    finally:
        process.terminate()
        process.wait(timeout=30)


def visible_text(url: str, profile: Path) -> str:
    """The page's text after its JavaScript ran (scripts, styles and tags removed)."""
    assert CHROMIUM is not None
    dom = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


@pytest.mark.slow
def test_dashboard_shows_a_finished_study_in_chromium(
    finished_study: FinishedStudy, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        pytest.skip(
            "chromium not installed (Debian: apt-get install chromium); .ci/run installs it"
        )
    port = free_port()
    with running_dashboard(finished_study.url, port) as banner:
        assert f"http://127.0.0.1:{port}/dashboard/" in banner  # bound to localhost by default
        base = f"http://127.0.0.1:{port}/dashboard/studies/1"
        page = visible_text(base, tmp_path / "profile")
        assert finished_study.name in page
        # The metric names label the Pareto-front axes instead of "Objective 0/1".
        assert "Objective X: accuracy" in page and "Objective Y: latency_ms" in page
        note = visible_text(f"{base}/note", tmp_path / "profile")
        assert "Study spec" in note and f'name = "{finished_study.name}"' in note
        trials = visible_text(f"{base}/trials", tmp_path / "profile")
        assert artifacts.ONNX_NAME in trials and artifacts.CHECKPOINT_NAME in trials

        # The stored folded model downloads through the dashboard and is a valid ONNX graph.
        storage = optuna.storages.RDBStorage(finished_study.url)
        trial = optuna.load_study(study_name=finished_study.name, storage=storage).trials[0]
        artifact_id = artifacts.find_artifact(trial, storage, artifacts.ONNX_NAME)
        link = f"http://127.0.0.1:{port}/artifacts/1/{trial._trial_id}/{artifact_id}"
        with urllib.request.urlopen(link, timeout=30) as response:
            model = onnx.load_model_from_string(response.read())
        onnx.checker.check_model(model)
        assert [i.name for i in model.graph.input] == ["image"]


@pytest.mark.slow
def test_dashboard_is_readable_live_and_keeps_notes(
    finished_study: FinishedStudy, tmp_path: Path
) -> None:
    """Searched params only, the study figures, a running trial's epoch, an edited note kept."""
    if CHROMIUM is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    from optuna_dashboard import get_note, save_note

    db = tmp_path / "copy.db"
    db.write_bytes(finished_study.db.read_bytes())
    url = f"sqlite:///{db}"
    study = optuna.load_study(study_name=finished_study.name, storage=url)
    # Fixed values are not trial params: only the four searched dimensions are.
    assert set(study.trials[0].params) == {"norm", "optimizer", "lr", "scheduler"}
    assert (
        stored_config(study.trials[0].user_attrs, study.trials[0].system_attrs)["batch_size"] == 128
    )
    # A trial in the middle of its training, as a worker leaves it after each epoch.
    running = study.ask()
    running.set_user_attr("epoch", 2)
    running.set_user_attr("val_accuracy_curve", [0.213, 0.342])
    save_note(study, get_note(study).replace("[study]", "[study]\n# my edit: lr > 0.1 diverges"))
    profile = tmp_path / "profile"
    base = "http://127.0.0.1:{port}/dashboard/studies/1"
    port = free_port()
    with running_dashboard(url, port):
        page = visible_text(base.format(port=port), profile)
        # The study figures hpo saved (optuna-dashboard's custom plots) render on the study page.
        for title in (
            "Pareto front of 2 complete trials",
            "Hypervolume history",
            "Latency by norm type",
            "Validation accuracy by optimizer",
            "Validation accuracy by scheduler",
            "Learning curves",
        ):
            assert title in page, title
        analytics = visible_text(base.format(port=port) + "/analytics", profile)
        assert "lr" in analytics and "batch_size" not in analytics and "beta1" not in analytics
        trial = visible_text(base.format(port=port) + f"/trials?numbers={running.number}", profile)
        assert "Running" in trial and "epoch 2" in trial and "[0.213, 0.342]" in trial
    port = free_port()
    with running_dashboard(url, port):  # a restart runs the note writer again
        note = visible_text(base.format(port=port) + "/note", profile)
    assert "# my edit: lr > 0.1 diverges" in note and "Study spec" in note


def test_dashboard_refuses_a_busy_port(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    synthetic.make_studies(f"sqlite:///{db}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("dashboard", "--storage", f"sqlite:///{db}", "--port", str(port))
    assert result.returncode == 2
    assert (
        result.stderr == f"hpo: error: --port {port}: already in use on 127.0.0.1; choose another\n"
    )


def test_a_port_just_given_back_is_free_again() -> None:
    """A dashboard stopped after serving leaves its port's connections in TIME_WAIT: starting
    it again at once must not be refused as a busy port (the server itself could bind)."""
    from hpo.present.dashboard import check_port_free

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server's side closes first: its end waits in TIME_WAIT
            client.recv(1)
    check_port_free("127.0.0.1", port)


def test_dashboard_needs_an_existing_database(tmp_path: Path) -> None:
    result = invoke("dashboard", "--storage", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.returncode == 2 and "no SQLite database" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_dashboard_refuses_a_missing_artifacts_folder(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    synthetic.make_studies(f"sqlite:///{db}")
    typo = tmp_path / "artefacts"
    result = invoke("dashboard", "--storage", f"sqlite:///{db}", "--artifacts", str(typo))
    assert result.returncode == 2
    assert result.stderr.startswith(f"hpo: error: --artifacts {typo}: no such folder;")
    assert not typo.exists()


@pytest.mark.parametrize("spec", sorted((ROOT / "studies").glob("*.toml")), ids=lambda p: p.name)
def test_spec_note_is_the_spec_as_toml(spec: Path) -> None:
    raw = read_toml(spec)
    assert tomllib.loads(dump_toml(raw)) == raw
    note = spec_note(raw)
    body = note.split("```toml\n", 1)[1].rsplit("```", 1)[0]
    assert tomllib.loads(body) == raw


def test_spec_note_is_written_once(tmp_path: Path) -> None:
    from optuna_dashboard import get_note

    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic.make_studies(url)  # created through hpo.study, which writes the note
    study = optuna.load_study(study_name="synthetic", storage=url)
    assert get_note(study) == spec_note(synthetic.SPEC)
    assert write_spec_note(study) is False  # unchanged: no new note version


def test_spec_note_never_overwrites_edits(tmp_path: Path) -> None:
    from optuna_dashboard import get_note, save_note

    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic.make_studies(url)
    study = optuna.load_study(study_name="synthetic", storage=url)
    edited = get_note(study).replace("[study]", "[study]\n# lr above 0.1 diverges") + "\nmy notes\n"
    save_note(study, edited)
    assert write_spec_note(study) is False
    assert get_note(study) == edited, "an edited spec section is left alone"

    save_note(study, "only my own words")
    assert write_spec_note(study) is True, "a note without the spec section gets it back"
    note = get_note(study)
    assert note.startswith("only my own words\n\n") and note.endswith(spec_note(synthetic.SPEC))


def test_study_figures_are_replaced_not_added(tmp_path: Path) -> None:
    import json as jsonlib

    from hpo.present import figures
    from hpo.store.connect import load_study, open_storage

    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic.make_studies(url)
    storage = open_storage(url)
    stored = load_study(storage, "synthetic")
    assert figures.publish(stored) == len(figures.DASHBOARD_FIGURES)

    def saved() -> dict[str, str]:
        attrs = storage.get_study_system_attrs(stored.study_id)
        return {k: v for k, v in attrs.items() if k.startswith("dashboard:plot_data:")}

    first = saved()
    assert {k.split(":")[2] for k in first} == set(figures.DASHBOARD_FIGURES)
    figures.publish(stored)  # as after the next trial: same ids, same number of records
    assert saved().keys() == first.keys()
    pareto = "".join(v for k, v in sorted(first.items()) if ":hpo-pareto-front:" in k)
    traces = jsonlib.loads(pareto)["data"]
    front = next(t for t in traces if t["name"].startswith("Pareto front"))
    assert len(front["x"]) == 3 + 1, "three front trials, then out to the reference point"


def test_figures_are_redrawn_at_most_every_interval_and_when_the_worker_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpo.present import figures

    now = [0.0]
    drawn: list[float] = []
    cost = [0.5]  # seconds one redraw takes

    def publish(stored: object) -> int:
        drawn.append(now[0])
        now[0] += cost[0]
        return 9

    monkeypatch.setattr(figures, "publish", publish)
    refresh = figures.FigureRefresh(print, min_interval_s=10.0, share=0.05, clock=lambda: now[0])
    study = object()
    refresh.flush()
    assert drawn == [], "nothing ended yet: nothing to draw"
    for _ in range(5):  # trials of 3 s: a redraw once 10 s have passed
        now[0] += 3.0
        refresh(study)
    assert drawn == [12.0], "the fifth trial ended 3 s after the redraw"
    refresh.flush()  # the worker ends: the trial after the redraw is drawn
    assert drawn == [12.0, 15.5]
    refresh.flush()
    assert drawn == [12.0, 15.5], "nothing new since: no redraw"

    # Redraws that take long are spaced to 5 % of the time: 2 s each, 40 s after the last.
    cost[0] = 2.0
    drawn.clear()
    for _ in range(10):  # trials of 15 s
        now[0] += 15.0
        refresh(study)
    assert drawn == [31.0, 78.0, 125.0, 172.0]


def test_a_failing_redraw_is_told_once_and_trials_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo.present import figures

    def publish(stored: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(figures, "publish", publish)
    told: list[str] = []
    refresh = figures.FigureRefresh(told.append, min_interval_s=0.0)
    for _ in range(3):
        refresh(object())
    refresh.flush()
    assert told == ["dashboard figures not updated: RuntimeError: disk full"]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_dashboard_stops_on_a_signal_while_it_answers(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """A signal that arrives during a request stops the server with the documented exit code;
    it is not caught by the server's error handler of that request."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic.make_studies(url)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo", "dashboard", "--storage", url, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGABRT dumps every thread's stack: a server that does not stop says where it is.
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        preexec_fn=default_sigint,
    )
    stop = threading.Event()

    def poll() -> None:  # clients that keep the server inside a request
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5):
                    pass
            except OSError:
                time.sleep(0.05)

    clients = [threading.Thread(target=poll, daemon=True) for _ in range(4)]
    try:
        assert process.stdout is not None
        process.stdout.readline()  # the banner: it serves next
        for client in clients:
            client.start()
        time.sleep(2)
        process.send_signal(signum)
        try:
            # Generous: on a loaded machine the first import of the dashboard can take seconds.
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            _, stderr = process.communicate(timeout=30)
            pytest.fail(f"still running 30 s after the signal; its threads:\n{stderr[-6000:]}")
    finally:
        stop.set()
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("hpo: interrupted")


@dataclass(frozen=True)
class StoppedStudy:
    """The synthetic finished study with stopped trials, and its stored models."""

    db: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"


@pytest.fixture(scope="session")
def stopped_study(tmp_path_factory: pytest.TempPathFactory) -> StoppedStudy:
    """10 trials written through Optuna (3 complete, 6 stopped, 1 failed); no training."""
    db = tmp_path_factory.mktemp("stopped") / "stopped.db"
    synthetic.make_stopped_study(f"sqlite:///{db}", db.with_name(db.name + ".artifacts"))
    return StoppedStudy(db)


# Every plotly figure on the page: its title, x tick labels, legend entries and links.
_FIGURES_JS = """[...document.querySelectorAll('.js-plotly-plot')].map(p => ({
  title: (p.querySelector('.gtitle') || {}).textContent || '',
  ticks: [...p.querySelectorAll('.xtick text')].map(t => t.textContent),
  legend: [...p.querySelectorAll('.legendtext')].map(t => t.textContent),
  links: [...p.querySelectorAll('.annotation a')].map(
    a => a.getAttribute('href') || a.getAttributeNS('http://www.w3.org/1999/xlink', 'href')),
}))"""


def _figure(figures: list[dict], title: str) -> dict:
    (found,) = [f for f in figures if f["title"].startswith(title)]
    return found


@pytest.mark.slow
def test_dashboard_answers_the_deploy_question(stopped_study: StoppedStudy, tmp_path: Path) -> None:
    """On a finished study with stopped trials: the latency-budget figure with model links,
    stop marks on the learning curves, a stopped trial's reason in view without scrolling,
    every choice tried in the per-choice figures, and trial-table rows one line high."""
    if CHROMIUM is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    from tests.browser import headless_chromium

    rows = synthetic.STOPPED_ROWS
    complete = [n for n, r in enumerate(rows) if r.state == optuna.trial.TrialState.COMPLETE]
    trained = [r for r in rows if r.curve]
    port = free_port()
    base = f"http://127.0.0.1:{port}/dashboard/studies/1"
    with (
        running_dashboard(stopped_study.url, port),
        headless_chromium(CHROMIUM, tmp_path / "profile") as browser,
    ):
        browser.open(base, 1280, 800)
        count = len(DASHBOARD_FIGURES)
        browser.wait_for(f"document.querySelectorAll('.js-plotly-plot .gtitle').length >= {count}")
        figures = browser.evaluate(_FIGURES_JS)

        budget = _figure(figures, "Best accuracy within a latency budget")
        assert (
            "unfinished: 9 of 10 trials, 1 more over the latency budget (not trained)"
            in budget["title"]
        )
        # Every trial of this front has a stored model: one download link each, served here.
        assert len(budget["links"]) == len(complete)
        for link in budget["links"]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{link}", timeout=30) as got:
                assert got.read() == b"onnx"

        curves = _figure(figures, "Learning curves")
        ended_trained = [r for r in trained if r.state != optuna.trial.TrialState.COMPLETE]
        assert f"stopped here ({len(ended_trained)})" in curves["legend"]

        for key in ("norm", "optimizer", "scheduler"):
            ticks = " ".join(_figure(figures, f"Validation accuracy by {key}")["ticks"])
            for value in {getattr(r, key) for r in trained}:
                assert f"{value} (" in ticks, (key, value)
        probed = " ".join(_figure(figures, "Latency by norm type")["ticks"])
        assert all(f"{r.norm} (" in probed for r in rows)

        stopped = next(n for n, r in enumerate(rows) if r.state == optuna.trial.TrialState.PRUNED)
        browser.open(f"{base}/trials?numbers={stopped}", 1280, 800)
        box = browser.wait_for(
            "(() => { const e = [...document.querySelectorAll('strong')]"
            ".find(e => e.textContent.startsWith('Stopped after'));"
            " return e && e.parentElement.getBoundingClientRect().toJSON(); })()"
        )
        assert box["top"] >= 0 and box["bottom"] <= 800, "the reason needs no scrolling"
        note = browser.evaluate("document.body.innerText")
        assert rows[stopped].reason in note

        browser.open(f"{base}/smartSelection", 1280, 800)
        heights = browser.wait_for(
            f"(() => {{ const r = [...document.querySelectorAll('tbody tr')];"
            f" return r.length >= {len(rows)}"
            " && r.map(t => t.getBoundingClientRect().height); })()"
        )
        assert max(heights) <= 80, heights


def test_dashboard_lists_a_plain_optuna_study_beside_hpo_studies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    from hpo.present import dashboard

    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic.make_studies(url)
    optuna.create_study(study_name="plain", storage=url).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2
    )
    monkeypatch.setattr(dashboard, "serve_until_interrupted", lambda *args: None)
    plans: list[dashboard.DashboardPlan] = []
    dashboard.serve(url, "127.0.0.1", 0, None, plans.append)
    assert "plain" in plans[0].studies and len(plans[0].studies) > 1
