"""Shared fixtures: the real CIFAR-10 sample, the CLI (in a subprocess or in this process), and
one finished quickstart study that every test which only reads a study shares."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# One math thread per process: the tests run in two processes on two cores and start worker
# processes of their own, and torch's default (a thread per core each) oversubscribes the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("HPO_SAMPLE", ROOT.parent / "shared" / "data" / "cifar10-sample.npz"))


UNGROUPED = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`, check that each test with an xdist_group mark carries the group
    in its id: that is how pytest-xdist keeps a group on one worker. With pytest 9.2 it did not
    (xdist 3.8 rewrites an attribute pytest no longer reads), and the "processes" tests, whose
    heartbeat timings must not compete, ran at once on both workers without a word."""
    if not getattr(config.option, "loadgroup", False):
        return  # not an xdist worker under loadgroup (xdist sets this on its workers)
    ungrouped = [
        item.nodeid
        for item in items
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid
    ]
    if ungrouped:
        config.stash[UNGROUPED] = (
            f"pytest-xdist did not keep this xdist_group test on one worker ({len(ungrouped)} "
            f"such tests): this pytest / pytest-xdist pair does not support --dist loadgroup"
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail the grouped tests, saying why, when their group was not kept on one worker."""
    reason = item.config.stash.get(UNGROUPED, None)
    if reason is not None and item.get_closest_marker("xdist_group") is not None:
        pytest.fail(reason)


@pytest.fixture(scope="session")
def sample_path() -> Path:
    """Path of the real CIFAR-10 sample; tests that need it skip when it is absent.

    In CI (CI=true) a missing sample fails them instead: a CI run must not pass without its
    end-to-end tests.
    """
    if not SAMPLE.is_file():
        reason = f"CIFAR-10 sample not found at {SAMPLE} (set HPO_SAMPLE to its path)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return SAMPLE


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    """A small random dataset in keras .npz layout (for tests about plumbing, not learning)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, 10, 96, dtype=np.uint8),
        x_test=rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8),
        y_test=rng.integers(0, 10, 32, dtype=np.uint8),
    )
    return path


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the real `hpo` console entry point as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass(frozen=True)
class CliResult:
    """What a CLI run gave, shaped like subprocess.CompletedProcess."""

    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str) -> CliResult:
    """Run the CLI in this process: the same commands, without a new interpreter (~3 s each).

    For commands that stop early (bad input) or only read; end-to-end runs that must exercise
    signals, exit codes of the process or several workers use `run_cli`.
    """
    from typer.testing import CliRunner

    from hpo.cli import app, quiet_libraries

    quiet_libraries()
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


@dataclass(frozen=True)
class FinishedStudy:
    """A quickstart study that ran to the end, with its database and stored models."""

    db: Path
    name: str
    n_trials: int
    output: str  # what `hpo run` printed on stdout

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"


def finished_study_command(sample_path: Path, db: Path) -> list[str]:
    """The `hpo run` arguments of the shared finished study."""
    return [
        *("run", str(ROOT / "studies" / "quickstart.toml")),
        *("--data", str(sample_path), "--storage", f"sqlite:///{db}", "--n-trials", "2"),
        *("--set", "train.epochs=1", "--set", "data.train_size=256", "--set", "data.val_size=256"),
        *("--set", 'search.model="simple_cnn"'),
        # The mission's four dimensions only: the quickstart's other searched keys pinned, so
        # what the shared study stores stays small and fixed.
        *("--set", 'search.activation="relu"', "--set", 'search.head="gap"'),
        *("--set", "search.width=1.0", "--set", "search.batch_size=128"),
        *("--set", "search.translate=4", "--set", "search.label_smoothing=0.2"),
        *("--set", "search.onecycle_warmup=0.3"),
        # Short latency timings: what these tests read is the study's shape, not its figures.
        *("--set", "latency.warmup=2", "--set", "latency.loops=5"),
        *("--set", "latency.max_rounds=1", "--set", "latency.max_seconds=0.5"),
    ]


FINISHED_DB = "quickstart.db"


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory: pytest.TempPathFactory, sample_path: Path) -> FinishedStudy:
    """Two tiny quickstart trials on the sample (~20 s), run once per suite and shared by every
    test that reads one. Each test process gets its own copy: a test there may write to it (the
    dashboard saves figures) while the other process's tests read theirs."""
    built = _finished_study_once(tmp_path_factory, sample_path)
    mine = tmp_path_factory.mktemp("finished")
    db = mine / FINISHED_DB
    shutil.copy2(built / FINISHED_DB, db)
    models = built / f"{FINISHED_DB}.artifacts"
    if models.is_dir():
        shutil.copytree(models, mine / models.name)
    output = (built / "output.txt").read_text()
    return FinishedStudy(db, "quickstart", 2, output)


def _finished_study_once(tmp_path_factory: pytest.TempPathFactory, sample_path: Path) -> Path:
    """The folder of the shared finished study, run by whichever test process asks first."""
    base = tmp_path_factory.getbasetemp()
    # xdist's test processes have their base folders side by side in this run's folder.
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "finished-once"
    with FileLock(f"{shared}.lock"):
        if not (shared / "output.txt").is_file():
            shared.mkdir(exist_ok=True)
            result = run_cli(*finished_study_command(sample_path, shared / FINISHED_DB))
            assert result.returncode == 0, result.stderr
            (shared / "output.txt").write_text(result.stdout)
    return shared
