"""Run a real study in this process (as `hpo run` does) and read back what it did.

Shared by the benchmarks that compare whole studies (search.py, early_stopping.py).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hpo.core.trial_attrs import PROBE_SECONDS_ATTR, SUGGEST_SECONDS_ATTR  # noqa: E402
from hpo.search.ehvi import hypervolume  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "cifar10-sample.npz"


def refuse(message: str) -> NoReturn:
    """Bad input to a benchmark: one line on stderr naming it, exit 2 (as `hpo` does)."""
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    raise SystemExit(2)


def require_sample(path: Path) -> None:
    """Refuse a missing CIFAR-10 sample before any work starts."""
    if not path.is_file():
        refuse(f"the CIFAR-10 sample is not at {path} (--data PATH)")


def listed(option: str, value: str, allowed: list[str] | tuple[str, ...]) -> list[str]:
    """A comma-separated option's names, each one of `allowed`; refused otherwise."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        what = f"unknown {', '.join(map(repr, unknown))}" if unknown else "nothing named"
        refuse(
            f"{option} {value!r}: {what}; expected comma-separated names of {', '.join(allowed)}"
        )
    return names


def counts(option: str, value: str) -> list[int]:
    """A comma-separated option's positive integers, in rising order; refused otherwise."""
    try:
        numbers = sorted({int(part) for part in value.split(",")})
    except ValueError:
        numbers = []
    if not numbers or numbers[0] < 1:
        refuse(f"{option} {value!r}: expected comma-separated integers >= 1")
    return numbers


@dataclass
class StudyRun:
    """One finished study: its trials, wall time and where it lives."""

    trials: list[FrozenTrial]
    wall_seconds: float
    url: str

    @property
    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE]

    def points(self) -> np.ndarray:
        """(accuracy, latency) of every COMPLETE trial."""
        return np.array([t.values for t in self.complete]).reshape(-1, 2)

    def best_accuracy(self) -> float:
        return max((t.values[0] for t in self.complete), default=0.0)

    def trial_seconds(self) -> float:
        """Summed durations of every trial that ended."""
        return sum(
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in self.trials
            if t.datetime_complete is not None and t.datetime_start is not None
        )

    def overhead_shares(self) -> tuple[float, float]:
        """The sampler's time (every suggest) and the trials' waits for latency probes, each
        as a share of `trial_seconds`."""
        total = self.trial_seconds()
        if total <= 0:
            return 0.0, 0.0
        sampler = sum(t.user_attrs.get(SUGGEST_SECONDS_ATTR, 0.0) for t in self.trials)
        probes = sum(t.user_attrs.get(PROBE_SECONDS_ATTR, 0.0) for t in self.trials)
        return sampler / total, probes / total


def run_spec(spec: Path, values: dict[str, Any], sets: list[str], db: Path) -> StudyRun:
    """Run the spec (with `--set`-style overrides and typed values) into a fresh SQLite file."""
    from rich.console import Console

    from hpo.run.runner import run_study

    url = f"sqlite:///{db}"
    started = time.perf_counter()
    run_study(spec, sets, url, Console(quiet=True), values)
    wall = time.perf_counter() - started
    (name,) = optuna.get_all_study_names(url)  # a fresh file holds this one study
    trials = optuna.load_study(study_name=name, storage=url).trials
    return StudyRun(trials, wall, url)


def common_reference(runs: list[StudyRun]) -> tuple[float, float]:
    """One hypervolume reference point for runs compared together: accuracy 0 and 1.1 x the
    slowest COMPLETE trial of any of them."""
    slowest = max(float(run.points()[:, 1].max()) for run in runs if len(run.complete))
    return 0.0, 1.1 * slowest


def volume(run: StudyRun, reference: tuple[float, float]) -> float:
    return hypervolume(run.points(), reference)
