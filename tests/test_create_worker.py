"""`hpo create` and `hpo worker` without training: idempotence, the stored spec, bad input."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.core.errors import SpecError
from hpo.core.spec import load_spec, validate
from hpo.run.runner import create_or_update_study, worker_spec
from hpo.store.connect import open_storage
from hpo.store.studies import create_or_load_study
from tests.conftest import invoke
from tests.pg import pg_url
from tests.test_workers import tiny_spec

__all__ = ["pg_url"]  # fixture used below


def test_create_is_idempotent_and_refuses_another_search_space(
    tmp_path: Path, tiny_npz: Path
) -> None:
    db = tmp_path / "s.db"
    storage = f"sqlite:///{db}"
    spec = tiny_spec(tmp_path, "c", 3)
    result = invoke("create", spec, "--storage", storage, "--data", str(tiny_npz))
    assert result.returncode == 0, result.stderr
    assert "study c ready" in result.stdout and "target 3 trials" in result.stdout
    data = f'data.dataset="{tiny_npz}"'
    assert create_or_update_study(Path(spec), [data], storage).target == 3, "again: same study"
    assert create_or_update_study(Path(spec), [data, "study.n_trials=7"], storage).target == 7
    other = invoke(
        *("create", spec, "--storage", storage, "--data", str(tiny_npz)),
        *("--set", "search.optimizer='adam'"),
    )
    assert other.returncode == 2 and "different [search]" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    studies = optuna.get_all_study_summaries(f"sqlite:///{db}")
    assert [s.study_name for s in studies] == ["c"]
    assert studies[0].n_trials == 0, "create trains nothing"
    stored = optuna.load_study(study_name="c", storage=storage).user_attrs["spec"]
    assert stored["study"]["n_trials"] == 7, "workers read the raised total"


def test_a_study_stored_with_a_key_that_never_applies_can_drop_it(
    tmp_path: Path, tiny_npz: Path
) -> None:
    """A study stored before such keys were refused (momentum with only adam): its spec with
    the key is refused now, and without it is the same search, not another one."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    data = f'data.dataset="{tiny_npz}"'
    spec = tiny_spec(tmp_path, "c", 3)
    adam = [data, "search.optimizer='adam'"]
    raw = load_spec(Path(spec), adam).raw
    raw["search"]["momentum"] = [0.5, 0.9]
    create_or_load_study(validate(raw), open_storage(storage))  # as it was stored before
    with_key = [*adam, "search.momentum=[0.5, 0.9]"]
    with pytest.raises(SpecError, match="momentum: never applies"):
        create_or_update_study(Path(spec), with_key, storage)
    assert create_or_update_study(Path(spec), [*adam, "study.n_trials=5"], storage).target == 5
    stored = optuna.load_study(study_name="c", storage=storage).user_attrs["spec"]
    assert "momentum" not in stored["search"]


STARTERS = 3


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_processes_starting_one_new_study_at_once_queue_its_first_trial_once(
    database: str, tmp_path: Path, tiny_npz: Path, request: pytest.FixtureRequest
) -> None:
    """`hpo run` (or `create`) on several machines at once: one of them sets the study up."""
    overrides = [f'data.dataset="{tiny_npz}"', "study.start_from_first=true"]
    spec = load_spec(Path(tiny_spec(tmp_path, "c", 3)), overrides)
    assert spec.study.start_from_first
    url = (
        request.getfixturevalue("pg_url")
        if database == "postgresql"
        else f"sqlite:///{tmp_path / 's.db'}"
    )
    storages = [open_storage(url) for _ in range(STARTERS)]
    barrier = threading.Barrier(STARTERS)
    errors: list[Exception] = []

    def start(storage: object) -> None:
        barrier.wait()
        try:
            create_or_load_study(spec, storage)  # type: ignore[arg-type]
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(storage,)) for storage in storages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    study = optuna.load_study(study_name="c", storage=url)
    assert [t.state for t in study.get_trials()] == [TrialState.WAITING]
    assert study.user_attrs["spec"] == spec.raw
    for storage in storages:
        storage.engine.dispose()


def test_create_checks_the_dataset_before_creating(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    spec = tiny_spec(tmp_path, "c", 3)
    result = invoke(
        "create", spec, "--storage", f"sqlite:///{db}", "--data", str(tmp_path / "none.npz")
    )
    assert result.returncode == 2 and "file not found" in result.stderr
    assert not db.exists(), "bad input leaves nothing behind"


def test_worker_on_an_unknown_study_names_the_known_ones(tmp_path: Path, tiny_npz: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    create_or_update_study(
        Path(tiny_spec(tmp_path, "known", 2)), [f'data.dataset="{tiny_npz}"'], storage
    )
    result = invoke("worker", "--storage", storage, "--study-name", "nope")
    assert result.returncode == 2
    assert "no study named 'nope'" in result.stderr and "known" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_worker_data_override_stays_local(tmp_path: Path, tiny_npz: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    spec_path = Path(tiny_spec(tmp_path, "w", 2))
    # A relative path, valid where `create` ran (the repo root) but maybe not elsewhere.
    create_or_update_study(spec_path, ['data.dataset="cifar10"'], storage)
    study = optuna.load_study(study_name="w", storage=open_storage(storage))
    assert worker_spec(study, None).data.dataset == "cifar10"
    spec = worker_spec(study, tiny_npz)
    assert spec.data.dataset == str(tiny_npz) and spec.data.train_size == 64
    stored = optuna.load_study(study_name="w", storage=open_storage(storage)).user_attrs["spec"]
    assert stored["data"]["dataset"] == "cifar10", "the override is not written back"
