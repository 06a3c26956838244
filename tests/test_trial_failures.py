"""Failed trials on the terminal: one line each, the reason in the trial, a crash stops the run."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.cli import quiet_libraries
from hpo.measure import fusion
from hpo.store.optuna_internals import OPTIMIZE_LOGGER
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
    assert trial.user_attrs["fail_reason"].startswith("EquivalenceError: folded network")
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
