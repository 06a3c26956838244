"""Failed trials: one line each on the terminal, the reason in the trial, and a failure that
would repeat for every trial stops the run."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hpo.cli import quiet_libraries
from hpo.core.errors import DataError
from hpo.core.trial_attrs import flat
from hpo.measure import fusion
from hpo.run import objective
from hpo.store.optuna_internals import OPTIMIZE_LOGGER
from hpo.train.loop import Diverged
from tests.conftest import invoke
from tests.test_workers import tiny_spec


def test_an_unexpected_error_stops_the_run_with_one_line(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fold_check(*args: object, **kwargs: object) -> float:
        raise fusion.EquivalenceError("folded network differs by 0.5 (tolerance 0.0001)")

    # A bug that fails every trial alike (here: the fold check); injected, since none is known.
    monkeypatch.setattr(fusion, "check_equivalence", broken_fold_check)
    db = tmp_path / "crash.db"
    spec = tiny_spec(tmp_path, "crash", 3)
    result = invoke("run", spec, "--data", str(tiny_npz), "--storage", f"sqlite:///{db}")
    assert result.returncode == 1
    assert result.stderr == (
        "hpo: error: trial 0 failed: EquivalenceError: folded network differs by 0.5 "
        "(tolerance 0.0001) (the traceback is in its user attribute 'traceback')\n"
    )
    (trial,) = optuna.load_study(study_name="crash", storage=f"sqlite:///{db}").trials
    assert trial.state == TrialState.FAIL, "the run stopped after the first crashed trial"
    assert flat(trial.user_attrs, trial.system_attrs)["fail_reason"].startswith(
        "EquivalenceError: folded network"
    )
    assert "broken_fold_check" in trial.user_attrs["traceback"]


def test_optuna_failed_trial_records_are_dropped_and_others_kept() -> None:
    # hpo prints its own line per failed trial; Optuna's record would add the traceback.
    quiet_libraries()
    quiet_libraries()  # idempotent: one filter, however often the CLI is invoked in a process
    logger = logging.getLogger(OPTIMIZE_LOGGER)
    assert len(logger.filters) == 1

    def record(message: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, (), None)

    assert not logger.filter(record("Trial 3 failed with parameters: {} because of ..."))
    assert not logger.filter(record("Trial 3 failed with value None."))
    assert logger.filter(record("Heartbeat of trial 3 could not be written"))


# What each failure inside a trial records and does to the run. Injected where training would
# raise it: a real divergence is tested in test_train.py, and neither a full device nor broken
# data can be had on purpose here (the data checks refuse bad data before any trial).
FAILURES = {
    "diverged": (
        Diverged("loss is nan at epoch 1, step 2"),
        "diverged: loss is nan at epoch 1, step 2",
        "goes on",
    ),
    "out of memory": (
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail"),
        "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB",
        "goes on",
    ),
    "data error": (
        DataError("y_train: label 12 is outside 0..9"),
        "data error: y_train: label 12 is outside 0..9",
        "stops",
    ),
}


@pytest.mark.parametrize("case", FAILURES, ids=list(FAILURES))
def test_each_failure_has_a_reason_and_repeating_ones_stop_the_run(
    case: str, tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error, reason, effect = FAILURES[case]

    def failing_training(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(objective, "train_network", failing_training)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    result = invoke("run", tiny_spec(tmp_path, "f", 2), "--data", str(tiny_npz), "--storage", url)
    trials = optuna.load_study(study_name="f", storage=url).trials
    assert {t.state for t in trials} == {TrialState.FAIL}
    assert {flat(t.user_attrs, t.system_attrs)["fail_reason"] for t in trials} == {reason}
    if effect == "goes on":
        # The configuration's own failure: a result, counted; the study goes on to its target.
        assert result.returncode == 0, result.stderr
        assert len(trials) == 2 and "Traceback" not in result.stdout + result.stderr
        lines = [line for line in result.stdout.splitlines() if "FAIL" in line]
        assert len(lines) == 2 and all(line.endswith(f"FAIL: {reason}") for line in lines)
    else:
        # It would fail every trial alike: the run stops after the first with one line.
        assert result.returncode == 1 and len(trials) == 1
        assert result.stderr.startswith(f"hpo: error: trial 0 failed: {reason} (the traceback")
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "failing_training" in trials[0].user_attrs["traceback"]
