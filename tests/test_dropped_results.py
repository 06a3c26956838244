"""A worker whose every result was dropped (other workers took it for dead) says so, exit 1."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.core.trial_attrs import FAIL_REASON_ATTR
from hpo.store.connect import open_storage
from hpo.store.optuna_internals import trial_id
from tests.conftest import invoke
from tests.test_workers import tiny_spec

REASON = "worker lost: no heartbeat for 9 s from elsewhere"


class FailedByAnotherWorker:
    """An objective whose trial another worker marks FAIL while it runs, writing the reason a
    moment after the state, as `hpo.store.lost` does; that worker then completes a trial."""

    def __init__(self, url: str) -> None:
        self.other = open_storage(url)
        self.calls = 0

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        self.calls += 1
        assert self.calls <= 5, "the worker should have stopped at the study's target"
        number = trial_id(trial)
        assert self.other.set_trial_state_values(number, TrialState.FAIL)
        study = optuna.load_study(study_name=trial.study.study_name, storage=self.other)
        study.add_trial(optuna.trial.create_trial(values=[0.5, 1.0]))

        def reason_later() -> None:
            with self.other.amending(number):
                self.other.set_trial_user_attr(number, FAIL_REASON_ATTR, REASON)

        later = threading.Timer(0.5, reason_later)
        later.start()
        later.join()  # the reason is written after the worker found its trial FAIL
        return 0.5, 1.0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_worker_whose_every_result_was_dropped_exits_1(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    created = invoke(
        "create", tiny_spec(tmp_path, "d", 2), "--storage", url, "--data", str(tiny_npz)
    )
    assert created.returncode == 0, created.stderr
    objective = FailedByAnotherWorker(url)
    monkeypatch.setattr("hpo.run.worker.Objective", lambda *args, **kwargs: objective)
    result = invoke("worker", "--storage", url, "--study-name", "d")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "worker ran 2 trial(s) and every result was dropped" in result.stderr
    dropped = [line for line in result.stdout.splitlines() if "dropped:" in line]
    assert len(dropped) == 2 and all(REASON in line for line in dropped), result.stdout
