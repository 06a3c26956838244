"""Where models are stored, and that exactly the trials on the front at completion store one."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hpo.core.errors import HpoError
from hpo.store import artifacts
from tests.conftest import FinishedStudy


def frozen(
    accuracy: float, latency_ms: float, iqr: float | None = None
) -> optuna.trial.FrozenTrial:
    attrs = {} if iqr is None else {"latency_iqr_ms": iqr}
    return create_trial(values=[accuracy, latency_ms], user_attrs=attrs)


def test_artifact_folder_sits_next_to_a_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(artifacts.ARTIFACTS_ENV, raising=False)
    db = tmp_path / "hpo.db"
    assert artifacts.artifact_dir(f"sqlite:///{db}") == tmp_path / "hpo.db.artifacts"
    assert artifacts.artifact_dir("postgresql://u:p@db:5432/hpo") is None
    assert artifacts.artifact_dir("postgresql://u:p@db/hpo", "/shared/m") == Path("/shared/m")
    monkeypatch.setenv(artifacts.ARTIFACTS_ENV, str(tmp_path / "env"))
    assert artifacts.artifact_dir("postgresql://u:p@db/hpo") == tmp_path / "env"
    # Not created unless asked; to a reader, a named folder that is not there is a typo.
    with pytest.raises(HpoError, match="HPO_ARTIFACTS .*/env: no such folder"):
        artifacts.open_store("postgresql://u:p@db/hpo")
    assert not (tmp_path / "env").exists()
    assert artifacts.open_store("postgresql://u:p@db/hpo", create=True) is not None
    assert (tmp_path / "env").is_dir()


@pytest.mark.parametrize(
    ("candidate", "others", "on_front"),
    [
        ((0.5, 1.0), [], True),
        ((0.5, 1.0), [(0.6, 0.9)], False),  # beaten on both
        ((0.5, 1.0), [(0.5, 1.0)], True),  # a tie dominates nothing
        ((0.5, 1.0), [(0.5, 0.9)], False),  # as accurate, faster
        ((0.5, 1.0), [(0.6, 1.1), (0.4, 0.9)], True),  # a trade-off
        ((0.5, 1.0, 0.0), [(0.6, 1.01, 0.02)], False),  # slower only within its spread
        ((0.5, 1.0, 0.02), [(0.6, 1.01)], False),  # within the candidate's own spread
        ((0.5, 1.0, 0.005), [(0.6, 1.01, 0.005)], True),  # measurably faster
        ((0.5, 1.0, 0.02), [(0.5, 0.99, 0.02)], True),  # equal within the noise: a tie
    ],
)
def test_is_on_front(
    candidate: tuple[float, ...], others: list[tuple[float, ...]], on_front: bool
) -> None:
    accuracy, latency_ms, *spread = candidate
    trials = [frozen(*o) for o in others]
    assert artifacts.is_on_front(accuracy, latency_ms, trials, *spread) is on_front


@pytest.mark.slow
def test_front_trials_store_their_model(finished_study: FinishedStudy) -> None:
    storage = optuna.storages.RDBStorage(finished_study.url)
    study = optuna.load_study(study_name=finished_study.name, storage=storage)
    complete = sorted(
        (t for t in study.trials if t.state == TrialState.COMPLETE),
        key=lambda t: t.datetime_complete,
    )
    assert complete
    for index, trial in enumerate(complete):
        stored = {
            name
            for name in (artifacts.ONNX_NAME, artifacts.CHECKPOINT_NAME)
            if artifacts.find_artifact(trial, storage, name) is not None
        }
        spread = artifacts.latency_spread(trial)
        expected_on_front = artifacts.is_on_front(*trial.values, complete[:index], spread)
        assert bool(stored) == expected_on_front, trial.number
        if expected_on_front:
            assert stored == {artifacts.ONNX_NAME, artifacts.CHECKPOINT_NAME}
    folder = finished_study.db.with_name(finished_study.db.name + ".artifacts")
    assert folder.is_dir() and any(folder.iterdir())
