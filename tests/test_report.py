"""`hpo report`: hypervolume arithmetic, the best trial per group, and the files it writes."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.image import imread

from hpo.core.results import TrialResult, hypervolume, hypervolume_history, reference_point
from hpo.present import figures
from tests import synthetic
from tests.conftest import FinishedStudy, invoke

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def result(number: int, accuracy: float, latency_ms: float) -> TrialResult:
    return TrialResult(number, accuracy, latency_ms, {}, None, None, None, None)


SYNTHETIC_RESULTS = [
    result(n, *row.values) for n, row in enumerate(synthetic.ROWS) if row.values is not None
]


def test_hypervolume_by_hand() -> None:
    # Front by latency: (0.5 ms, 55 %), (1.0, 65 %), (2.5, 70 %); reference 3.3 ms.
    assert reference_point(SYNTHETIC_RESULTS) == (0.0, pytest.approx(3.3))
    expected = 0.5 * 0.55 + 1.5 * 0.65 + 0.8 * 0.70
    assert hypervolume(SYNTHETIC_RESULTS, (0.0, 3.3)) == pytest.approx(expected)


def test_hypervolume_history_by_hand() -> None:
    history = hypervolume_history(SYNTHETIC_RESULTS, (0.0, 3.3))
    assert [n for n, _ in history] == [0, 1, 2, 4, 5]  # trial 3 failed
    assert [v for _, v in history] == pytest.approx([1.08, 1.16, 1.535, 1.81, 1.81])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        # No subnormals: other tests flush denormals (torch.set_flush_denormal) process-wide.
        st.tuples(
            st.floats(0.0, 1.0, allow_subnormal=False), st.floats(0.01, 10.0, allow_subnormal=False)
        ),
        min_size=1,
        max_size=12,
        unique=True,
    )
)
def test_hypervolume_agrees_with_optuna(points: list[tuple[float, float]]) -> None:
    from optuna._hypervolume import compute_hypervolume  # an independent implementation

    results = [result(n, a, lat) for n, (a, lat) in enumerate(points)]
    reference = reference_point(results)
    inside = [(-a, lat) for a, lat in points if a > 0]  # as losses: -accuracy, latency
    ours = hypervolume(results, reference)
    if not inside:
        assert ours == 0.0
        return
    theirs = compute_hypervolume(np.array(inside), np.array([0.0, reference[1]]))
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def synthetic_report(tmp_path: Path) -> tuple[dict, Path]:
    db = tmp_path / "s.db"
    synthetic.make_studies(f"sqlite:///{db}")
    out = tmp_path / "report"
    cli = invoke(
        "report", "--storage", f"sqlite:///{db}", "--study-name", "synthetic", "--out", str(out),
        "--format", "json",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    return json.loads(cli.stdout), out


def test_report_of_a_synthetic_study(tmp_path: Path) -> None:
    summary, out = synthetic_report(tmp_path)
    assert summary["n_complete"] == 5 and summary["n_front"] == 3
    assert summary["hypervolume"] == pytest.approx(1.81)
    assert summary["reference_point"]["latency_ms"] == pytest.approx(3.3)
    for name in ("index.html", "pareto.png", "hypervolume.png", "report.json"):
        assert (out / name).is_file(), name
    data = json.loads((out / "report.json").read_text())
    best = {(g["key"], g["value"]): g["trial"] for g in data["best_per_group"]}
    # Most accurate per value: batch -> trial 0 (60 %) over trial 5 (50 %); the failed trial
    # 3 (layer) is not a candidate, so layer -> trial 4.
    assert best == {
        ("norm", "batch"): 0,
        ("norm", "group"): 1,
        ("norm", "layer"): 4,
        ("norm", "none"): 2,
        ("optimizer", "adam"): 0,
        ("optimizer", "nesterov"): 1,
        ("optimizer", "sgd"): 2,
    }
    page = (out / "index.html").read_text()
    assert "src='pareto.png'" in page and "src='hypervolume.png'" in page
    assert "norm = layer" in page and "optimizer = sgd" in page
    # Interactive figures: the dashboard's less its captions, accuracy by scheduler (not
    # searched here) and accuracy vs MACs (none recorded), each said so; plotly.js next to them.
    shown = len(figures.DASHBOARD_FIGURES) - len(figures.DASHBOARD_ONLY) - 1
    assert page.count('class="plotly-graph-div"') == shown
    assert "scheduler was not searched" in page and "no accuracy-vs-compute figure" in page
    assert "<script src='plotly.min.js'>" in page and (out / "plotly.min.js").stat().st_size > 1e6
    for title in ("Pareto front of 5", "Hypervolume history", "Latency by norm", "by optimizer"):
        assert title in page, title
    hover = "trial 0<br>accuracy 60.00%".replace("<", "\\u003c").replace(">", "\\u003e")
    assert hover in page, "hovering a point names the trial (plotly escapes < and > in JSON)"
    complete = page.split("All complete trials (5)")[1]
    assert all(f"<td>{n}</td>" in complete for n in (0, 1, 2, 4, 5))


@pytest.mark.slow
def test_report_of_a_finished_quickstart_study(
    finished_study: FinishedStudy, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    cli = invoke(
        "report", "--storage", finished_study.url, "--study-name", finished_study.name,
        "--out", str(out),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert str(out / "index.html") in cli.stdout
    for name, (width, height) in {"pareto.png": (900, 600), "hypervolume.png": (900, 480)}.items():
        content = (out / name).read_bytes()
        assert content.startswith(PNG_SIGNATURE)
        pixels = imread(out / name)
        assert pixels.shape[:2] == (height, width)
        assert pixels[..., :3].std() > 0.05, f"{name} is blank"
    page = (out / "index.html").read_text()
    assert "Study quickstart" in page and "scheduler = " in page
    data = json.loads((out / "report.json").read_text())
    assert data["n_complete"] == finished_study.n_trials
    assert [h["trial"] for h in data["hypervolume_history"]] == [0, 1]
    assert data["hypervolume"] > 0


def test_report_needs_complete_trials(tmp_path: Path) -> None:
    import optuna

    db = tmp_path / "empty.db"
    optuna.create_study(
        storage=f"sqlite:///{db}", study_name="empty", directions=["maximize", "minimize"]
    )
    out = tmp_path / "r"
    cli = invoke(
        "report", "--storage", f"sqlite:///{db}", "--study-name", "empty", "--out", str(out)
    )
    assert cli.returncode == 2
    assert "no COMPLETE trials" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_report_answers_the_deploy_question(tmp_path: Path) -> None:
    """The budget table with model links and export commands, every choice tried in the best
    per group, whole stop reasons left-aligned, one latency precision; `hpo best` ends with
    the export command of its first row."""
    db = tmp_path / "stopped.db"
    url = f"sqlite:///{db}"
    synthetic.make_stopped_study(url, tmp_path / "stopped.db.artifacts")
    out = tmp_path / "report"
    cli = invoke(
        "report", "--storage", url, "--study-name", synthetic.STOPPED_STUDY, "--out", str(out)
    )
    assert cli.returncode == 0, cli.stderr
    page = (out / "index.html").read_text()
    budget = page.split("Best model within a latency budget")[1].split("</table>")[0]
    complete = [n for n, r in enumerate(synthetic.STOPPED_ROWS) if r.state.name == "COMPLETE"]
    for number in complete:
        assert f"--trial {number} --out model-{number}" in budget
    assert budget.count(">ONNX</a>") == len(complete)
    assert "unfinished: 9 of 10 trials, 1 more over the latency budget (not trained)" in page
    groups = page.split("Best trial per norm type")[1].split("</table>")[0]
    for row in synthetic.STOPPED_ROWS:
        if row.curve:
            assert f"norm = {row.norm}" in groups and f"optimizer = {row.optimizer}" in groups
    ended = page.split("Trials that ended early")[1].split("</table>")[0]
    for row in synthetic.STOPPED_ROWS:
        if row.reason:
            assert f"<td class='text'>{html.escape(row.reason)}</td>" in ended
    assert "0.6628" in page and "0.663<" not in page, "one latency precision"

    best = invoke("best", "--storage", url, "--study-name", synthetic.STOPPED_STUDY)
    assert best.returncode == 0, best.stderr
    *_, command, storage = best.stdout.rstrip().splitlines()
    assert command.endswith("--trial 0 --out model-0 \\") and storage.strip() == f"--storage {url}"


@pytest.mark.parametrize(
    ("model", "option", "note"),
    [
        ("nets/tiny.py:build", "--models DIR", "DIR: the folder that holds nets/tiny.py"),
        ("mypkg.nets:build", "--models mypkg.nets", ""),
        # --models refuses files outside its folders: no option can help, none is shown.
        ("../nets/tiny.py:build", "", ""),
        ("/abs/tiny.py:build", "", ""),
        ("torchvision:resnet18", "", ""),
        ("resnet", "", ""),
    ],
)
def test_the_export_command_carries_the_models_option_a_factory_needs(
    model: str, option: str, note: str, tmp_path: Path
) -> None:
    import optuna

    from hpo.present.study_view import export_command, model_sources, models_folder_note
    from hpo.store.connect import StoredStudy, open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    study.set_user_attr("spec", {"search": {"model": model}})
    study.add_trial(optuna.trial.create_trial(values=[0.5, 1.0]))
    stored = StoredStudy.of(study, storage)
    command = export_command(stored, 0)
    assert command.startswith(f"hpo export --study-name {study.study_name} --trial 0 --out ")
    assert (f" {option} --storage " in command) if option else ("--models" not in command)
    assert models_folder_note(stored).startswith(note) and bool(note) == bool(
        models_folder_note(stored)
    )
    assert model_sources(stored, [0])[0].command_note == models_folder_note(stored)


def test_latencies_read_alike_in_the_best_table_the_figures_and_the_report() -> None:
    """Two front latencies 0.3 µs apart: 4 significant digits tell them apart everywhere, where
    the `best` table's 3 decimals once showed both as 0.046."""
    from rich.console import Console

    from hpo.core.results import ms_text, why_empty
    from hpo.present.output import trials_table

    trials = [result(0, 0.62, 0.046224), result(1, 0.64, 0.046499)]
    console = Console(width=120, record=True)
    console.print(trials_table(trials, "front"))
    text = console.export_text()
    assert "0.04622" in text and "0.0465" in text
    assert [ms_text(t.latency_ms) for t in trials] == ["0.04622", "0.0465"]
    assert why_empty(trials, 0.01).endswith("the fastest is trial 0 at 0.04622 ms")


def test_a_finished_study_without_a_complete_trial_is_not_told_to_run(tmp_path) -> None:
    """Every trial stopped early: running the study again would do nothing, so the report's
    refusal says how to run more instead."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from hpo.core.errors import HpoError
    from hpo.core.spec import validate
    from hpo.core.trial_attrs import SPEC_ATTR, STOP_REASON_ATTR, VAL_CURVE_ATTR
    from hpo.present.report import build_report
    from hpo.store.connect import StoredStudy, open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'r.db'}")
    study = optuna.create_study(
        study_name="r", storage=storage, directions=["maximize", "minimize"]
    )
    study.set_user_attr(SPEC_ATTR, validate({"study": {"name": "r", "n_trials": 2}}).raw)
    stored = StoredStudy.of(study, storage)
    stopped = {STOP_REASON_ATTR: "stopped at epoch 1", VAL_CURVE_ATTR: [0.1]}
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs=stopped))
    with pytest.raises(HpoError, match="has no COMPLETE trials yet; run it first"):
        build_report(stored)
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs=stopped))
    with pytest.raises(HpoError, match="is finished without a COMPLETE trial: its 2 trials"):
        build_report(stored)
    storage.engine.dispose()


def test_the_best_table_never_cuts_a_value_on_an_80_column_console() -> None:
    """The longest built-in names and the ratio column make the table wider than 80 columns:
    its lines run past the console (a terminal wraps them) with every value whole."""
    from rich.console import Console

    from hpo.core.results import TrialResult
    from hpo.present.output import Format, print_trials

    params = {"norm": "instance", "optimizer": "sgd_momentum", "lr": 0.0001235}
    params["scheduler"] = "cosine_warm_restarts"
    trials = [TrialResult(1234, 0.6234, 0.046224, params, None, 0.7712, None, None)]
    console = Console(width=80, record=True)
    print_trials(console, trials, Format.table, "front", rank_by="latency_ratio")
    text = console.export_text()
    assert "…" not in text
    for shown in ("instance", "sgd_momentum", "0.0001235", "cosine_warm_restarts", "0.771"):
        assert shown in text, text
