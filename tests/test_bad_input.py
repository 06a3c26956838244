"""Bad input at the command line: one line on stderr, exit 2, nothing created.

Bad datasets (every command that reads one), study names the databases cannot store (SQLite and
the real PostgreSQL), usage errors, HPO_* values; and what a command says about a finished study
or a target it keeps. All in-process and without training, so the whole file takes seconds.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from hpo.core.db_limits import MAX_NAME_LENGTH
from hpo.core.errors import DataError
from hpo.core.spec import DataSection
from hpo.run.runner import create_or_update_study
from hpo.train.data import check_dataset
from hpo.train.data_check import check_arrays
from tests.conftest import invoke
from tests.pg import pg_url

__all__ = ["pg_url"]  # fixture used below

N_TRAIN, N_TEST, CLASSES, VAL_SIZE = 40, 8, 4, 8
SPEC = """
[study]
name = "{name}"
n_trials = {n_trials}

[data]
val_size = 8

[train]
epochs = 1

[search]
model = "simple_cnn"
lr = {{ low = 0.01, high = 0.1, log = true }}
"""

Arrays = dict[str, np.ndarray]


def good_arrays() -> Arrays:
    """A valid dataset: 40 train and 8 test images, 4 classes, every class in y_train."""
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (N_TRAIN, 32, 32, 3), dtype=np.uint8),
        "y_train": np.arange(N_TRAIN, dtype=np.int64) % CLASSES,
        "x_test": rng.integers(0, 256, (N_TEST, 32, 32, 3), dtype=np.uint8),
        "y_test": np.arange(N_TEST, dtype=np.uint8) % CLASSES,
    }


def changed(**arrays: Callable[[Arrays], np.ndarray] | None) -> Callable[[Path], None]:
    """Writes the good dataset, some arrays replaced (made from the good ones) or left out."""

    def write(path: Path) -> None:
        data = good_arrays()
        for key, make in arrays.items():
            if make is None:
                del data[key]
            else:
                data[key] = make(good_arrays())
        np.savez(path, **data)

    return write


def with_label(key: str, index: int, label: float) -> Callable[[Arrays], np.ndarray]:
    def make(data: Arrays) -> np.ndarray:
        labels = data[key].astype(np.int64)
        labels[index] = label
        return labels

    return make


def write_bytes(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def single_array(path: Path) -> None:
    with path.open("wb") as handle:  # np.save on a handle keeps the .npz name
        np.save(handle, good_arrays()["x_train"])


def pickled_labels(path: Path) -> None:
    data = good_arrays()
    data["y_train"] = np.array([object()] * N_TRAIN, dtype=object)
    np.savez(path, **data)


def truncated(path: Path) -> None:
    changed()(path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


# Each case: how the file is made, and what its one stderr line must say.
BAD_DATA: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing array": (changed(y_test=None), "missing array(s) y_test; an .npz needs x_train"),
    "not a zip": (
        write_bytes(b"not an archive"),
        "not an .npz archive (a zip of .npy arrays); an .npz needs x_train",
    ),
    "text starting like a zip": (
        write_bytes(b"PKG-INFO\nName: x\n"),
        "not an .npz archive (a zip of .npy arrays)",
    ),
    "random bytes": (
        # numpy's own message would take them for a pickle and suggest allow_pickle.
        write_bytes(np.random.default_rng(0).bytes(5000)),
        "not an .npz archive (a zip of .npy arrays)",
    ),
    "truncated zip": (truncated, "cannot read"),
    "single .npy": (single_array, "a single array, not an .npz archive"),
    "object labels": (pickled_labels, "cannot read"),
    "float images": (
        changed(x_train=lambda d: d["x_train"] / np.float32(255)),
        "x_train is float32 (values 0..1); allowed: uint8 images of shape (N, 32, 32, 3)",
    ),
    "NaN images": (
        changed(x_test=lambda d: np.full((N_TEST, 32, 32, 3), np.nan, np.float32)),
        "x_test is float32 (24,576 NaN or infinite values)",
    ),
    "int64 images": (
        changed(x_train=lambda d: d["x_train"].astype(np.int64)),
        "x_train is int64; allowed: uint8",
    ),
    "channels first": (
        changed(x_train=lambda d: d["x_train"].transpose(0, 3, 1, 2)),
        "x_train has shape (40, 3, 32, 32); allowed: uint8 images of shape (N, 32, 32, 3) "
        "(channels first",
    ),
    "28x28 grey": (
        changed(x_train=lambda d: d["x_train"][:, :28, :28, 0]),
        "x_train has shape (40, 28, 28); allowed",
    ),
    "no test images": (
        changed(x_test=lambda d: d["x_test"][:0], y_test=lambda d: d["y_test"][:0]),
        "x_test holds no images; allowed: at least 1",
    ),
    "fewer labels": (
        changed(y_train=lambda d: d["y_train"][:-5]),
        "y_train has 35 labels for 40 images in x_train; allowed: one label per image",
    ),
    "one-hot labels": (
        changed(y_train=lambda d: np.eye(CLASSES, dtype=np.uint8)[d["y_train"]]),
        "y_train has shape (40, 4), one-hot",
    ),
    "float labels": (
        changed(y_train=lambda d: d["y_train"].astype(np.float64)),
        "y_train is float64; allowed: integer class indices",
    ),
    "3-d labels": (
        changed(y_test=lambda d: d["y_test"].reshape(-1, 1, 1)),
        "y_test has shape (8, 1, 1); allowed: integer class indices of shape (N,) or (N, 1)",
    ),
    "negative label": (
        changed(y_train=with_label("y_train", 3, -1)),
        "y_train has label -1 at index 3; allowed: class indices 0..K-1, never negative",
    ),
    "stray label 200": (
        changed(y_train=with_label("y_train", 5, 200)),
        "y_train labels go up to 200 (201 classes) but 196 of them have no image",
    ),
    "test label beyond train classes": (
        changed(y_test=with_label("y_test", 2, 4)),
        "y_test has label 4 at index 2; allowed: 0..3 (y_train's 4 classes)",
    ),
    "one class": (
        changed(y_train=lambda d: np.zeros(N_TRAIN, np.int64), y_test=lambda d: d["y_test"] * 0),
        "y_train holds only class 0; allowed: at least 2 classes",
    ),
    "too few for val_size": (
        changed(x_train=lambda d: d["x_train"][:VAL_SIZE], y_train=lambda d: d["y_train"][:8]),
        "[data] val_size: 8 leaves no training images (8 in x_train of",
    ),
}
# Checked only once the stored spec is known, which `export` reads after the trial.
NEEDS_SPEC = {"too few for val_size"}


def write_spec(folder: Path, name: str = "bad", n_trials: int = 1) -> str:
    path = folder / f"{len(list(folder.glob('*.toml')))}.toml"
    path.write_text(SPEC.format(name=name, n_trials=n_trials))
    return str(path)


def one_error_line(result, expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpo: error: "), result.stderr
    assert expected in lines[0], lines[0]


@pytest.fixture(scope="module")
def made_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A study made by `create` from good data: what `worker` and `export` look up."""
    folder = tmp_path_factory.mktemp("made")
    good = folder / "good.npz"
    np.savez(good, **good_arrays())
    url = f"sqlite:///{folder / 'made.db'}"
    create_or_update_study(Path(write_spec(folder, "made")), [f'data.dataset="{good}"'], url)
    # The last connection to close folds the write-ahead log into the file, which changes its
    # mtime: done here, so the tests' own reads later change nothing.
    with sqlite3.connect(folder / "made.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return url, folder / "made.db"


@pytest.mark.parametrize("case", BAD_DATA, ids=list(BAD_DATA))
def test_bad_data_is_refused_before_anything_is_created(
    case: str, tmp_path: Path, made_study: tuple[str, Path]
) -> None:
    make, expected = BAD_DATA[case]
    data = tmp_path / "bad.npz"
    make(data)
    spec = write_spec(tmp_path)
    for command in ("run", "create"):
        db = tmp_path / f"{command}.db"
        result = invoke(command, spec, "--data", str(data), "--storage", f"sqlite:///{db}")
        one_error_line(result, expected)
        assert not db.exists(), f"{command}: bad data must leave no database file"

    url, made_db = made_study
    before = made_db.stat().st_mtime_ns
    one_error_line(
        invoke("worker", "--storage", url, "--study-name", "made", "--data", str(data)), expected
    )
    if case not in NEEDS_SPEC:
        out = tmp_path / "export"
        args = ("--study-name", "made", "--trial", "0", "--out", str(out), "--data", str(data))
        one_error_line(invoke("export", "--storage", url, *args), expected)
        assert not out.exists()
    with sqlite3.connect(made_db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM trials").fetchone() == (0,)
    assert made_db.stat().st_mtime_ns == before, "a refused worker writes nothing"


def test_train_size_beyond_the_images_left(tmp_path: Path) -> None:
    data = tmp_path / "good.npz"
    changed()(data)
    db = tmp_path / "s.db"
    result = invoke(
        *("run", write_spec(tmp_path), "--data", str(data), "--storage", f"sqlite:///{db}"),
        *("--set", "data.train_size=33"),
    )
    one_error_line(result, "[data] train_size: 33 but only 32 images are left after val_size 8")
    assert not db.exists()


def test_torchvision_datasets_get_the_same_check() -> None:
    # The downloaded CIFAR arrays pass through check_arrays with their known class count.
    arrays = good_arrays()
    assert check_arrays(arrays, "torchvision:cifar10", 10) == 10
    arrays["y_test"] = arrays["y_test"].astype(np.int64)
    arrays["y_test"][0] = 10
    with pytest.raises(DataError, match=r"y_test has label 10 at index 0; allowed: 0\.\.9 \("):
        check_arrays(arrays, "torchvision:cifar10", 10)
    # `create` checks the split against CIFAR's 50,000 training images without downloading.
    with pytest.raises(DataError, match="val_size: 50000 leaves no training images"):
        check_dataset(DataSection(dataset="cifar100", val_size=50_000, root="/nonexistent"))
    check_dataset(DataSection(dataset="cifar10", val_size=5000, train_size=45_000, root="/x"))


def test_name_limit_is_optunas_column_size() -> None:
    from optuna.storages._rdb.models import MAX_INDEXED_STRING_LENGTH

    assert MAX_NAME_LENGTH == MAX_INDEXED_STRING_LENGTH


BAD_NAMES = {
    "10,000 characters": ("x" * 10_000, "is 10,000 characters long; allowed: at most 512"),
    "513 characters": ("y" * 513, "is 513 characters long"),
    "NUL": ("a\x00b", "holds the control character U+0000 at position 1"),
    "newline": ("a\nb", "holds the control character U+000A"),
}


def check_bad_names(url: str, folder: Path, tiny_npz: Path) -> None:
    """Every bad name, in the spec and as --study-name, on the database at `url`."""
    for name, expected in BAD_NAMES.values():
        spec = folder / "named.toml"
        # A JSON string literal is a TOML basic string: control characters stay escaped.
        spec.write_text(SPEC.format(name="ok", n_trials=1).replace('"ok"', json.dumps(name)))
        for command in ("run", "create"):
            result = invoke(command, str(spec), "--data", str(tiny_npz), "--storage", url)
            one_error_line(result, expected)
            assert "[study] name " in result.stderr
            flagged = invoke(
                command,
                write_spec(folder),
                "--study-name",
                name,
                "--data",
                str(tiny_npz),
                "--storage",
                url,
            )
            one_error_line(flagged, expected)
        lookup = invoke("best", "--storage", url, "--study-name", name)
        one_error_line(lookup, expected)
        assert "Invalid value for '--study-name'" in lookup.stderr


@pytest.mark.parametrize("name", ["\u200b", "\u00a0\u3000"])
def test_a_new_study_needs_a_visible_name(name: str, tmp_path: Path, tiny_npz: Path) -> None:
    """Refused for new studies only: one stored with such a name stays reachable by it."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    for command in ("run", "create"):
        flagged = invoke(
            *(command, write_spec(tmp_path), "--study-name", name),
            *("--data", str(tiny_npz), "--storage", url),
        )
        one_error_line(flagged, "has no visible character")
    assert not (tmp_path / "s.db").exists()
    assert (
        "no visible character" not in invoke("best", "--storage", url, "--study-name", name).stderr
    )


def test_bad_names_on_sqlite(tmp_path: Path, tiny_npz: Path) -> None:
    db = tmp_path / "s.db"
    check_bad_names(f"sqlite:///{db}", tmp_path, tiny_npz)
    assert not db.exists()


def test_bad_names_on_postgresql(pg_url: str, tmp_path: Path, tiny_npz: Path) -> None:
    check_bad_names(pg_url, tmp_path, tiny_npz)
    pg_url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)  # for Optuna itself
    assert optuna.get_all_study_summaries(pg_url) == []
    # The longest allowed name is stored as it is.
    longest = "z" * MAX_NAME_LENGTH
    result = invoke(
        "create",
        write_spec(tmp_path),
        "--study-name",
        longest,
        "--data",
        str(tiny_npz),
        "--storage",
        pg_url,
    )
    assert result.returncode == 0, result.stderr
    assert [s.study_name for s in optuna.get_all_study_summaries(pg_url)] == [longest]


USAGE_ERRORS = {
    "n-trials 0": (("run", "spec.toml", "--n-trials", "0"), "Invalid value for '--n-trials'"),
    "format xml": (
        ("best", "--study-name", "s", "--format", "xml"),
        "'xml' is not one of 'table', 'json', 'csv'; see ",
    ),
    "trial -1": (
        ("export", "--study-name", "s", "--trial", "-1", "--out", "o"),
        "Invalid value for '--trial'",
    ),
    "missing option": (("best",), "Missing option '--study-name'"),
    "missing argument": (("create",), "Missing argument 'SPEC'"),
    "unknown option": (("studies", "--nope"), "No such option: --nope"),
    "unknown command": (("bogus",), "No such command 'bogus'"),
    "not a number": (("best", "--study-name", "s", "--top", "x"), "Invalid value for '--top'"),
    "db views format": (("db", "views", "--format", "csv"), "Invalid value for '--format'"),
    "port": (("dashboard", "--port", "70000"), "Invalid value for '--port'"),
    "empty out": (
        ("report", "--study-name", "s", "--out", ""),
        "Invalid value for '--out': empty; give the folder to write into",
    ),
    "empty host": (("dashboard", "--host", ""), "--host '': expected an address, e.g. 127.0.0.1"),
    "empty spec": (("create", ""), "Invalid value for 'SPEC': empty; give a path"),
    "empty data": (
        ("worker", "--study-name", "s", "--data", ""),
        "Invalid value for '--data': empty; give a path",
    ),
    "negative budget": (
        ("best", "--study-name", "s", "--max-latency-ms", "-1"),
        "--max-latency-ms -1: expected a budget, a finite number > 0",
    ),
    "nan budget": (("best", "--study-name", "s", "--max-latency-ms", "nan"), "a finite number > 0"),
}


@pytest.mark.parametrize("case", USAGE_ERRORS, ids=list(USAGE_ERRORS))
def test_usage_errors_are_one_line(case: str) -> None:
    args, expected = USAGE_ERRORS[case]
    result = invoke(*args)
    one_error_line(result, expected)
    assert result.stdout == ""


def test_no_command_still_shows_the_help() -> None:
    result = invoke("db")
    assert "views" in result.stdout and "hpo: error" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HPO_DB_RETRY_SECONDS", "nan"),
        ("HPO_DB_RETRY_SECONDS", "inf"),
        ("HPO_DB_RETRY_SECONDS", "-5"),
        ("HPO_DB_RETRY_SECONDS", "ten"),
        ("HPO_HEARTBEAT_INTERVAL", "nan"),
        ("HPO_GRACE_PERIOD", "1.5"),
    ],
)
def test_bad_hpo_environment_values_are_refused(
    name: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    sqlite3.connect(db).close()
    monkeypatch.setenv(name, value)
    one_error_line(invoke("studies", "--storage", f"sqlite:///{db}"), f"{name}={value!r}: expected")
    # With the URL from HPO_STORAGE too, the line names the variable at fault, not that one.
    monkeypatch.setenv("HPO_STORAGE", f"sqlite:///{db}")
    result = invoke("studies")
    one_error_line(result, f"{name}={value!r}: expected")
    assert "HPO_STORAGE" not in result.stderr


def test_finished_study_and_kept_target(tmp_path: Path, tiny_npz: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = write_spec(tmp_path, "done", n_trials=1)
    data = ("--data", str(tiny_npz), "--storage", url)
    raised = invoke("create", spec, *data, "--n-trials", "2")
    assert raised.returncode == 0 and "target 2 trials" in raised.stdout, raised.stderr
    # The original command again keeps the raised target, and says so.
    again = invoke("create", spec, *data)
    assert again.returncode == 0 and "target 2 trials" in again.stdout, again.stderr
    assert (
        again.stderr
        == "hpo: study done keeps its target of 2 trials (given: 1); a target is only raised\n"
    )
    study = optuna.load_study(study_name="done", storage=url)
    assert study.user_attrs["spec"]["study"]["n_trials"] == 2
    for lr in (0.02, 0.05):
        study.add_trial(
            create_trial(
                params={"lr": lr},
                distributions={"lr": FloatDistribution(0.01, 0.1, log=True)},
                values=[0.5, 1.0],
            )
        )
    # Running a finished study says so in one line and trains nothing.
    result = invoke("run", spec, *data)
    assert result.returncode == 0, result.stderr
    finished = [line for line in result.stdout.splitlines() if "is finished" in line]
    assert finished == [
        "study done is finished: 2 of 2 trials; raise its n_trials (hpo create SPEC --n-trials N) "
        "to run more"
    ], result.stdout
    assert len(study.get_trials()) == 2


def run_hpo_in_script(
    setup: str, args: list[str], folder: Path
) -> subprocess.CompletedProcess[str]:
    """`setup` (Python that imports some `main`), then `main()` as `hpo ARGS`, in a new
    interpreter."""
    script = f"{setup}import sys\nsys.argv = {['hpo', *args]!r}\nmain()\n"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=60
    )


def test_ctrl_c_while_the_command_line_is_imported_is_one_line(tmp_path: Path) -> None:
    # Ctrl-C arrives while the libraries of the command line are still being imported.
    script = (
        "import builtins, sys\n"
        "real_import = builtins.__import__\n"
        "def interrupted(name, *args, **kwargs):\n"
        "    if name == 'typer':\n"
        "        raise KeyboardInterrupt\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = interrupted\n"
        "from hpo.entry import main\n"
    )
    result = run_hpo_in_script(script, ["--help"], tmp_path)
    assert result.returncode == 130, result.stderr
    assert result.stderr == "hpo: interrupted\n"


def test_sigterm_outside_a_trial_is_one_line(tmp_path: Path) -> None:
    # SIGTERM while no worker runs (here: inside a light command, which the worker's own handler
    # does not cover) ends the command like Ctrl-C: one line and exit 143, not a silent kill.
    script = (
        "import os, signal, sys, time\n"
        "import hpo.core.reference as reference\n"
        "def stopped():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "reference.spec_reference = stopped\n"
        "from hpo.cli import main\n"
    )
    result = run_hpo_in_script(script, ["spec-reference"], tmp_path)
    assert result.returncode == 143, result.stderr
    assert result.stderr == "hpo: interrupted\n", "no trial ran, so none is named"


BENCHMARK_ERRORS = {
    "unknown sampler": (
        ("search.py", "--no-nb201", "--joint", "--joint-samplers", "gp,foo"),
        "search.py: --joint-samplers 'gp,foo': unknown 'foo'; expected comma-separated names of",
    ),
    "missing sample": (
        ("quickstart.py", "--data", "no-such.npz"),
        "quickstart.py: the CIFAR-10 sample is not at no-such.npz (--data PATH)",
    ),
}


@pytest.mark.parametrize("case", BENCHMARK_ERRORS, ids=list(BENCHMARK_ERRORS))
def test_benchmark_options_are_checked_before_any_run(case: str, tmp_path: Path) -> None:
    """A benchmark refuses a bad option with one line and exit 2, before it runs anything."""
    (script, *args), expected = BENCHMARK_ERRORS[case]
    path = Path(__file__).resolve().parents[1] / "benchmarks" / script
    result = subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(expected), result.stderr
    assert result.stdout == "" and not list(tmp_path.iterdir())


def test_a_bad_artifact_folder_is_refused_before_a_study_exists(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_folder = tmp_path / "models"
    not_a_folder.write_text("a file where the models would go")
    monkeypatch.setenv("HPO_ARTIFACTS", str(not_a_folder))
    db = tmp_path / "s.db"
    spec = write_spec(tmp_path, "s")
    result = invoke("run", spec, "--data", str(tiny_npz), "--storage", f"sqlite:///{db}")
    one_error_line(result, f"HPO_ARTIFACTS {not_a_folder}: is a file, not a folder")
    assert not db.exists()


def test_export_refuses_a_model_folder_that_does_not_exist(made_study: tuple[str, Path]) -> None:
    # A mistyped folder would otherwise have the trial retrained, silently, for minutes.
    url, db = made_study
    folder = db.parent
    typo = folder / "modles"
    result = invoke(
        "export", "--storage", url, "--study-name", "made", "--trial", "0",
        "--out", str(folder / "out"), "--artifacts", str(typo),
    )  # fmt: skip
    one_error_line(result, f"--artifacts {typo}: no such folder")
    assert not (folder / "out").exists()
    typo.write_text("not a folder\n")
    result = invoke(
        "export", "--storage", url, "--study-name", "made", "--trial", "0",
        "--out", str(folder / "out"), "--artifacts", str(typo),
    )  # fmt: skip
    one_error_line(result, f"--artifacts {typo}: is a file, not a folder")


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("", "[data] dataset: empty; use cifar10, cifar100 or a path to an .npz"),
        ("{tmp}", "[data] dataset: {tmp} is a folder, not an .npz file; use cifar10"),
        ("{tmp}/gone.npz", "[data] dataset: file not found: {tmp}/gone.npz; use cifar10"),
        ("/dev/zero", "[data] dataset: /dev/zero is not a regular file; use cifar10"),
        ("{tmp}/link.npz", "[data] dataset: a link to nothing (or a loop of links): {tmp}/link"),
    ],
    ids=["empty", "folder", "missing", "device", "dangling link"],
)
def test_a_dataset_that_is_no_file_is_named_for_what_it_is(
    dataset: str, expected: str, tmp_path: Path
) -> None:
    (tmp_path / "link.npz").symlink_to(tmp_path / "gone.npz")
    with pytest.raises(DataError) as raised:
        check_dataset(DataSection(dataset=dataset.format(tmp=tmp_path)))
    assert str(raised.value).startswith(expected.format(tmp=tmp_path))


def test_a_bad_storage_url_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HPO_STORAGE", " ")
    one_error_line(invoke("studies"), "HPO_STORAGE: malformed storage URL ' '")
    one_error_line(invoke("studies", "--storage", " "), "error: malformed storage URL ' '")
