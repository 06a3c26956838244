"""The real CLI as a subprocess: end to end on the sample, and one clear line for bad input."""

from __future__ import annotations

import json
import shlex
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest

from hpo.core.errors import SpecError
from hpo.core.trial_attrs import SPEC_ATTR
from tests.conftest import ROOT, FinishedStudy, finished_study_command, invoke

QUICKSTART = str(ROOT / "studies" / "quickstart.toml")


@pytest.mark.slow
def test_run_then_best_end_to_end(finished_study: FinishedStudy, sample_path: Path) -> None:
    # The shared finished study is `hpo run` of the quickstart with 2 trials, in a subprocess.
    db, storage = finished_study.db, finished_study.url
    assert "trial   0" in finished_study.output and "trial   1" in finished_study.output

    best = invoke("best", "--storage", storage, "--study-name", "quickstart", "--format", "json")
    assert best.returncode == 0, best.stderr
    trials = json.loads(best.stdout)
    assert trials, "the Pareto front of a finished study is never empty"
    for trial in trials:
        assert {"number", "accuracy", "latency_ms", "params"} <= set(trial)
        assert {"lr", "optimizer", "scheduler", "norm"} <= set(trial["params"])
        assert isinstance(trial["params"]["optimizer"], str)  # decoded, not an index
        assert 0 <= trial["accuracy"] <= 1 and trial["latency_ms"] > 0

    # Running the same command again does nothing on a finished study.
    again = invoke(*finished_study_command(sample_path, db))
    assert again.returncode == 0, again.stderr
    assert "study quickstart is finished: 2 of 2 trials;" in again.stdout
    with sqlite3.connect(db) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM trials").fetchone()
        attrs = dict(
            connection.execute(
                "SELECT key, value_json FROM trial_user_attributes WHERE trial_id = 1"
            ).fetchall()
        )
        hidden = dict(
            connection.execute(
                "SELECT key, value_json FROM trial_system_attributes WHERE trial_id = 1"
            ).fetchall()
        )
    assert count == 2
    assert {"test_accuracy", "speedup", "latency_backend", "cpu_model"} <= set(attrs)
    # Structures sit in system attributes, which the dashboard does not list.
    assert not {"config", "details", "fold_report"} & set(attrs)
    assert {"hpo:config", "hpo:detail:fold_report"} <= set(hidden)

    listing = invoke("studies", "--storage", storage, "--format", "json")
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)[0]["name"] == "quickstart"

    budget = invoke(
        "best",
        "--storage",
        storage,
        "--study-name",
        "quickstart",
        "--format",
        "csv",
        "--max-latency-ms",
        "1000",
    )
    assert budget.returncode == 0 and budget.stdout.startswith("number,accuracy,latency_ms")
    # The CSV carries every field of the JSON output (the params as columns of their own).
    as_json = invoke("best", "--storage", storage, "--study-name", "quickstart", "--format", "json")
    fields = [key for key in json.loads(as_json.stdout)[0] if key != "params"]
    assert budget.stdout.splitlines()[0].split(",")[: len(fields)] == fields


@pytest.mark.slow
def test_the_export_hint_of_best_runs_as_printed(
    finished_study: FinishedStudy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With --storage the hint repeats it (its password masked); with $HPO_STORAGE it leaves
    --storage out, so the command reads the same variable, password and all."""
    given = invoke("best", "--storage", finished_study.url, "--study-name", "quickstart")
    assert given.returncode == 0, given.stderr
    assert f"--storage {finished_study.url}" in given.stdout
    monkeypatch.setenv("HPO_STORAGE", finished_study.url)
    from_env = invoke("best", "--study-name", "quickstart")
    assert from_env.returncode == 0, from_env.stderr
    hint = from_env.stdout.split("model of trial", 1)[1].splitlines()[1].strip()
    assert hint.startswith("hpo export --study-name quickstart") and "--storage" not in hint
    # As printed, in a shell that has the variable: it writes the model.
    monkeypatch.chdir(tmp_path)
    exported = invoke(*shlex.split(hint)[1:])
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / shlex.split(hint)[-1] / "model.onnx").is_file()


def write_spec(tmp_path: Path, body: str) -> str:
    path = tmp_path / "spec.toml"
    path.write_text(body)
    return str(path)


BAD_SPECS = {
    "unknown optimizer": (
        '[study]\nname="x"\n[search]\noptimizer=["adam","lion"]\n',
        "unknown value 'lion'; allowed: sgd",
    ),
    "unknown scheduler": ('[study]\nname="x"\n[search]\nscheduler="warp"\n', "'warp'"),
    "unknown norm": ('[study]\nname="x"\n[search]\nnorm="batchnorm"\n', "allowed: batch, group"),
    "unknown model": ('[study]\nname="x"\n[search]\nmodel="alexnet"\n', "allowed: compact, dense"),
    "lr low >= high": ('[study]\nname="x"\n[search]\nlr={low=0.1,high=0.01}\n', "must be below"),
    "lr <= 0": ('[study]\nname="x"\n[search]\nlr={low=0.0,high=0.01}\n', "out of range"),
    "malformed toml": ('[study\nname="x"\n', "malformed TOML"),
    "unknown key": ('[study]\nname="x"\nnam="y"\n', "unknown key 'nam'"),
    "step off the range": (
        '[study]\nname="x"\n[search]\nbatch_size={low=8,high=64,step=10}\n',
        "[search] batch_size: step 10 does not divide high - low (56); make high 58 or 68",
    ),
    "step wider than the range": (
        '[study]\nname="x"\n[search]\nlabel_smoothing={low=0.0,high=0.3,step=0.5}\n',
        "[search] label_smoothing: step 0.5 is wider than the range [0.0, 0.3]",
    ),
    "first off the steps": (
        '[study]\nname="x"\n[search]\nlabel_smoothing={low=0.0,high=0.3,step=0.1,first=0.15}\n',
        "[search] label_smoothing: first (0.15) is not on the range's steps of 0.1 from 0.0; "
        "e.g. 0.1",
    ),
    "step nan": (
        '[study]\nname="x"\n[search]\ndropout={low=0.0,high=0.5,step=nan}\n',
        "[search] dropout: step must be a positive finite number",
    ),
    "half step of an integer": (
        '[study]\nname="x"\n[search]\nbatch_size={low=32,high=33,step=0.5}\n',
        "[search] batch_size: an integer range needs a whole step, got 0.5",
    ),
    "step on a log range by default": (
        '[study]\nname="x"\n[search]\nlr={low=0.01,high=0.09,step=0.04}\n',
        "[search] lr: step must be a positive finite number and needs log = false (lr is log by "
        "default)",
    ),
    "infinite budget": (
        '[study]\nname="x"\nmax_latency_ms=inf\n',
        '[study] max_latency_ms: input should be a finite number, or "none" (got inf)',
    ),
    "infinite time cap": (
        '[study]\nname="x"\n[latency]\nmax_seconds=inf\n',
        "[latency] max_seconds: input should be a finite number (got inf)",
    ),
    "n_trials beyond a trial number": (
        '[study]\nname="x"\nn_trials=100000000000000000000\n',
        "[study] n_trials: input should be less than or equal to 2147483647",
    ),
}


@pytest.mark.parametrize("case", BAD_SPECS, ids=list(BAD_SPECS))
def test_bad_spec_exits_2_with_one_line(case: str, tmp_path: Path, tiny_npz: Path) -> None:
    body, expected = BAD_SPECS[case]
    db = tmp_path / "s.db"
    result = invoke(
        "run", write_spec(tmp_path, body), "--data", str(tiny_npz), "--storage", f"sqlite:///{db}"
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not db.exists(), "bad input must not create a study"


@pytest.mark.parametrize(
    "command", [("run", QUICKSTART), ("create", QUICKSTART), ("worker", "--study-name", "x")]
)
def test_missing_data_exits_2_naming_the_option(command: tuple[str, ...], tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    missing = tmp_path / "none.npz"
    result = invoke(*command, "--data", str(missing), "--storage", f"sqlite:///{db}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"hpo: error: --data: file not found: {missing}; use ")
    assert not db.exists()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "malformed storage URL"),
        ("mongodb://u:hunter2@localhost/x", "unsupported storage 'mongodb'"),
        ("sqlite:////no/such/folder/x.db", "folder /no/such/folder does not exist"),
        ("postgresql://u:hunter2@127.0.0.1:1/db", "cannot connect"),
        ("postgresql://127.0.0.1:1/db?password=hunter2", "cannot connect"),
        ("postgresql://u:hunter2@x@127.0.0.1:1/db", "must be written %40"),
        ("sqlite://", "in-memory SQLite keeps nothing"),
    ],
)
def test_bad_storage_exits_2_without_password(url: str, expected: str, tiny_npz: Path) -> None:
    split = ("--set", "data.val_size=32", "--set", "data.train_size=64")  # fits tiny_npz
    result = invoke("run", QUICKSTART, "--data", str(tiny_npz), "--storage", url, *split)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_sqlite_options_are_refused_before_the_file_is_made(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    result = invoke("create", QUICKSTART, "--storage", f"sqlite:///{db}?timeout=abc")
    assert result.returncode == 2
    assert "SQLite URL options are not supported (timeout" in result.stderr
    assert not db.exists()


def test_best_on_unknown_study(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    optuna.create_study(
        study_name="other", storage=f"sqlite:///{db}", directions=["maximize", "minimize"]
    )
    result = invoke("best", "--storage", f"sqlite:///{db}", "--study-name", "nope")
    assert result.returncode == 2
    assert "no study named 'nope' in this storage; studies: other" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("best", "--study-name", "s"),
        ("studies",),
        ("report", "--study-name", "s", "--out", "{tmp}/report"),
        ("export", "--study-name", "s", "--trial", "0", "--out", "{tmp}/model"),
        ("worker", "--study-name", "s"),
        ("db", "views"),
    ],
    ids=lambda command: command[0] if command[0] != "db" else "db views",
)
def test_reading_a_database_without_studies_leaves_it_untouched(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    # Another application's SQLite file: Optuna would add its tables on opening it.
    db = tmp_path / "theirs.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE users (id INTEGER)")
    before = db.read_bytes()
    args = [arg.format(tmp=tmp_path) for arg in command]
    result = invoke(*args, "--storage", f"sqlite:///{db}")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"hpo: error: sqlite:///{db} holds no Optuna studies (none of Optuna's tables), so "
        "there is nothing to read; `hpo run` or `hpo create` makes a study there\n"
    )
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.db"]


def test_help_explains_commands() -> None:
    result = invoke("--help")
    assert result.returncode == 0
    for command in ("run", "best", "studies", "models", "dashboard", "report", "export", "db"):
        assert command in result.stdout


def test_help_paragraphs_wrap_to_the_terminal() -> None:
    """A docstring's second paragraph is rewrapped at 80 columns, not broken where the source
    broke its lines (which left one-word lines)."""
    shown = in_terminal(["worker", "--help"], 80)
    assert "beats every HPO_HEARTBEAT_INTERVAL s, default 20) is marked FAIL" in shown, shown


def in_terminal(args: list[str], columns: int) -> str:
    """What `hpo ARGS` shows in a pseudo-terminal `columns` wide (escape codes stripped)."""
    import fcntl
    import os
    import pty
    import re
    import struct
    import subprocess
    import sys
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo", *args], stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(leader)
    text = b"".join(chunks).decode()
    return re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n")


@pytest.mark.slow
def test_best_fits_an_80_column_terminal(finished_study: FinishedStudy) -> None:
    args = ["best", "--storage", finished_study.url, "--study-name", finished_study.name]
    shown = in_terminal(args, 80)
    lines = shown.splitlines()
    # The export hint's storage URL is one word of any length, never cut (it is copied whole).
    table = [line for line in lines if not line.lstrip().startswith("--storage ")]
    assert max(len(line) for line in table) <= 80 and "…" not in shown, shown
    header = next(line for line in lines if "accuracy" in line).split()
    assert header[:8] == [
        "trial",
        "accuracy",
        "latency",
        "ms",
        "norm",
        "optimizer",
        "lr",
        "scheduler",
    ]
    best = invoke(*args, "--format", "json")
    for trial in json.loads(best.stdout):
        row = next(line.split() for line in lines if line.split()[:1] == [str(trial["number"])])
        for name in ("norm", "optimizer", "scheduler"):
            assert trial["params"][name] in row, f"{name} shown whole: {row}"
        assert float(row[5]) == pytest.approx(trial["params"]["lr"], rel=1e-3), row
    assert "more params: --wide" in shown
    # --wide never cuts a column, even when the table is wider than the terminal.
    wide = in_terminal([*args, "--wide"], 100)
    assert "test acc" in wide and "batch_size" in wide and "…" not in wide, wide
    assert max(len(line) for line in wide.splitlines()) > 100


def test_best_with_nothing_to_show_says_why(tmp_path: Path) -> None:
    from tests import synthetic

    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic.make_studies(url)
    complete = [
        t for t in optuna.load_study(study_name="synthetic", storage=url).trials if t.values
    ]
    fastest = min(complete, key=lambda t: (t.values[1], t.number))
    for fmt, stdout in (("table", ""), ("json", "[]\n")):
        args = ("best", "--storage", url, "--study-name", "synthetic", "--max-latency-ms", "1e-6")
        result = invoke(*args, "--format", fmt)
        assert (result.returncode, result.stdout) == (1, stdout)
        assert result.stderr == (
            "hpo: no complete trial has latency_ms <= 1e-06 ms; "
            f"the fastest is trial {fastest.number} at {fastest.values[1]:.3g} ms\n"
        )
    failed = optuna.create_study(
        storage=url, study_name="all failed", directions=["maximize", "minimize"]
    )
    failed.set_user_attr(SPEC_ATTR, {"study": {"name": "all failed"}})  # as hpo creates it
    failed.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    result = invoke("best", "--storage", url, "--study-name", "all failed")
    assert result.returncode == 1
    assert result.stderr == "hpo: no complete trial yet (1 FAIL)\n"


def test_a_study_another_program_made_is_refused_and_an_empty_one_finished(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hpo.store.studies.CREATOR_WAIT_S", 0.1)  # no creator is coming
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    single = optuna.create_study(study_name="single", storage=url)
    single.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    two = optuna.create_study(study_name="two", storage=url, directions=["maximize", "minimize"])
    two.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=2)
    # What an `hpo create` stopped before storing its spec leaves behind.
    optuna.create_study(study_name="empty", storage=url, directions=["maximize", "minimize"])
    before = dump(db)
    split = ("--set", "data.val_size=32", "--set", "data.train_size=64")  # fits tiny_npz
    data = ("--data", str(tiny_npz), "--storage", url, *split)
    single_create = invoke("create", QUICKSTART, "--study-name", "single", *data)
    assert single_create.returncode == 2
    assert single_create.stderr == (
        "hpo: error: study 'single' optimizes 1 objective(s) (minimize), not hpo's two "
        "(accuracy: maximize, latency: minimize): another program made it; use another "
        "--study-name\n"
    )
    for command in ("run", "create"):
        taken = invoke(command, QUICKSTART, "--study-name", "two", *data)
        assert taken.returncode == 2
        assert taken.stderr == (
            "hpo: error: study 'two' was made by another program: it has 2 trials and no hpo "
            "spec; use another --study-name\n"
        )
    for command in (("best",), ("report", "--out", str(tmp_path / "r"))):
        read = invoke(*command, "--study-name", "single", "--storage", url)
        assert read.returncode == 2 and "another program made it" in read.stderr
        read = invoke(*command, "--study-name", "two", "--storage", url)
        assert read.returncode == 2, read.stdout
        assert "'two' was made by another program" in read.stderr
    assert not (tmp_path / "r").exists()
    assert dump(db) == before
    finished = invoke("create", QUICKSTART, "--study-name", "empty", *data)
    assert finished.returncode == 0, finished.stderr
    assert "study empty ready" in finished.stdout


def dump(db: Path) -> list[str]:
    """The database's content as SQL (its WAL switch, a header byte, is no change of content)."""
    with sqlite3.connect(db) as connection:
        return list(connection.iterdump())


def test_data_of_another_shape_is_refused_by_a_study_and_a_copy_is_not(
    tmp_path: Path, tiny_npz: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    split = ("--set", "data.val_size=32", "--set", "data.train_size=32")
    made = invoke("create", QUICKSTART, "--data", str(tiny_npz), "--storage", url, *split)
    assert made.returncode == 0, made.stderr
    before = dump(tmp_path / "s.db")
    arrays = dict(np.load(tiny_npz))
    five = tmp_path / "five.npz"  # five classes: another task, with a network of five outputs
    np.savez(five, **{k: (v % 5 if k.startswith("y") else v) for k, v in arrays.items()})
    fewer = tmp_path / "fewer.npz"  # another split is drawn from other training images
    np.savez(fewer, **{k: (v[:80] if k.endswith("train") else v) for k, v in arrays.items()})
    shapes = {five: "5 classes and 96", fewer: "10 classes and 80"}
    for other, shape in shapes.items():
        for command in (
            ("create", QUICKSTART, *split),
            ("run", QUICKSTART, *split),
            ("worker", "--study-name", "quickstart"),
        ):
            refused = invoke(*command, "--data", str(other), "--storage", url)
            assert refused.returncode == 2, refused.stderr
            assert refused.stderr == (
                f"hpo: error: {other}: {shape} training images, but study 'quickstart' was "
                "created with data of 10 classes and 96 training images: its trials would not "
                "be comparable; give it a copy of that data, or use --study-name for a new "
                "study\n"
            )
    assert dump(tmp_path / "s.db") == before
    copy = tmp_path / "elsewhere" / "tiny.npz"
    copy.parent.mkdir()
    copy.write_bytes(tiny_npz.read_bytes())
    again = invoke("create", QUICKSTART, "--data", str(copy), "--storage", url, *split)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("version", "fix"),
    [
        (
            "v3.0.0.a",
            "upgrade the tables with `uv run optuna storage upgrade --storage URL` (back the "
            "database up first)",
        ),
        ("v99.0.0", "they are newer than this Optuna: run hpo with an Optuna at least as new"),
    ],
    ids=["older tables", "newer tables"],
)
def test_tables_of_another_optuna_version_are_named_as_such(
    version: str, fix: str, tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{db}", directions=["maximize"] * 1)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (version,))
    result = invoke("best", "--study-name", "s", "--storage", f"sqlite:///{db}")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"hpo: error: the database sqlite:///{db}: the runtime optuna version "
    ), result.stderr
    assert "is no longer compatible with the table schema (set up by optuna" in result.stderr
    assert result.stderr.endswith(f"; {fix}\n") and "pip install" not in result.stderr


def test_a_refused_command_records_no_data_shape_and_a_slow_creators_spec_is_found(
    tmp_path: Path,
) -> None:
    from hpo.core.spec import validate
    from hpo.store.connect import open_storage
    from hpo.store.studies import DATA_ATTR, create_or_load_study
    from hpo.train.data import DataShape

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    raw = {"study": {"name": "s"}, "search": {"norm": ["batch", "group"]}}
    # A study made before shapes were recorded: the first command that passes records one.
    made = create_or_load_study(validate(raw), storage)
    other = {**raw, "search": {"norm": ["batch", "layer"]}}
    with pytest.raises(SpecError, match="different \\[search\\] table"):
        create_or_load_study(validate(other), storage, DataShape(100, 50_000), "cifar100")
    assert DATA_ATTR not in storage.get_study_system_attrs(made.study_id)
    create_or_load_study(validate(raw), storage, DataShape(10, 50_000), "cifar10")
    assert storage.get_study_system_attrs(made.study_id)[DATA_ATTR] == {
        "classes": 10,
        "train_images": 50_000,
    }


def test_a_study_whose_spec_comes_late_is_not_taken_for_another_programs() -> None:
    from hpo.core.trial_attrs import SPEC_ATTR
    from hpo.store.studies import _spec_of_unfinished_creation

    study = optuna.create_study(directions=["maximize", "minimize"])
    assert _spec_of_unfinished_creation(study) is None  # empty: a stopped create, finished now
    study.enqueue_trial({"x": 1.0})  # a creator queues its first trial...
    with pytest.raises(SpecError, match="was made by another program: it has 1 trials"):
        _spec_of_unfinished_creation(study)
    study.set_user_attr(SPEC_ATTR, {"study": {"name": "s"}})  # ...having stored its spec
    assert _spec_of_unfinished_creation(study) == {"study": {"name": "s"}}


def test_studies_counts_every_state(tmp_path: Path) -> None:
    import csv

    import optuna
    from optuna.trial import TrialState, create_trial

    storage = f"sqlite:///{tmp_path / 'states.db'}"
    study = optuna.create_study(
        study_name="states", storage=storage, directions=["maximize", "minimize"]
    )
    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED, TrialState.FAIL):
        values = [0.5, 1.0] if state == TrialState.COMPLETE else None
        study.add_trial(create_trial(state=state, values=values))
    study.enqueue_trial({})
    listed = invoke("studies", "--storage", storage, "--format", "csv")
    assert listed.returncode == 0, listed.stderr
    header, *_ = listed.stdout.splitlines()
    assert header == "name,n_trials,target,complete,fail,running,pruned,waiting"
    (row,) = csv.DictReader(listed.stdout.splitlines())
    assert row["name"] == "states" and row["n_trials"] == "5"
    counts = {k: row[k] for k in ("complete", "pruned", "fail", "running", "waiting")}
    assert counts == {"complete": "1", "pruned": "2", "fail": "1", "running": "0", "waiting": "1"}
    table = invoke("studies", "--storage", storage)
    assert "pruned" in table.stdout and "waiting" in table.stdout
