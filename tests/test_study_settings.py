"""A study's comparability settings are fixed when it is created; other settings may change."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.core.comparable import FIXED_AT_CREATION
from tests.conftest import invoke, run_cli
from tests.test_workers import tiny_spec


@pytest.fixture
def created(tmp_path: Path, tiny_npz: Path) -> tuple[str, str, Path]:
    """A study `c` made by `hpo create`: its spec file, URL and dataset."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    spec = tiny_spec(tmp_path, "c", 3)
    result = invoke("create", spec, "--storage", storage, "--data", str(tiny_npz))
    assert result.returncode == 0, result.stderr
    return spec, storage, tiny_npz


def stored_spec(storage: str) -> dict:
    return optuna.load_study(study_name="c", storage=storage).user_attrs["spec"]


@pytest.mark.parametrize(
    ("command", "override"),
    [
        ("create", "train.epochs=7"),
        ("create", "data.train_size=40"),
        ("run", "data.split_seed=9"),
        ("run", "latency.backend='eager'"),
        ("create", "train.device='cpu'"),
    ],
)
def test_changing_a_comparability_setting_is_refused(
    created: tuple[str, str, Path], command: str, override: str
) -> None:
    spec, storage, data = created
    before = stored_spec(storage)
    result = invoke(command, spec, "--storage", storage, "--data", str(data), "--set", override)
    key = override.split("=")[0]
    assert key in FIXED_AT_CREATION
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"was created with {key} = " in result.stderr and "--study-name" in result.stderr
    assert stored_spec(storage) == before, "the stored spec is left as it was"


def test_a_new_sampler_or_a_higher_target_is_allowed_and_said(
    created: tuple[str, str, Path],
) -> None:
    spec, storage, data = created
    result = run_cli(  # a process of its own: the note is a log record, printed on stderr
        *("create", spec, "--storage", storage, "--data", str(data)),
        *("--set", "study.sampler='tpe'", "--n-trials", "5"),
    )
    assert result.returncode == 0, result.stderr
    assert "study.sampler changes from 'random' to 'tpe'" in result.stderr
    assert "n_trials" not in result.stderr  # a raised target is what the command is for
    stored = stored_spec(storage)
    assert stored["study"]["sampler"] == "tpe" and stored["study"]["n_trials"] == 5


def test_a_study_whose_create_was_stopped_says_create_finishes_it(
    tmp_path: Path, tiny_npz: Path
) -> None:
    """The study row exists but the spec was never written (`create` killed in between)."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=storage, study_name="c", directions=["maximize", "minimize"])
    result = invoke("worker", "--storage", storage, "--study-name", "c")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "run `hpo create SPEC --study-name c` again" in result.stderr
    spec = tiny_spec(tmp_path, "c", 3)
    again = invoke("create", spec, "--storage", storage, "--data", str(tiny_npz))
    assert again.returncode == 0, again.stderr
    assert stored_spec(storage)["study"]["name"] == "c"
