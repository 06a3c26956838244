"""Latencies comparable across machines: the reference network, the fingerprint, the ratio."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import optuna
import pytest
import torch

from hpo.core import results
from hpo.core.trial_attrs import SPEC_ATTR, flat
from hpo.measure.calibration import (
    REFERENCE_NAME,
    device_fingerprint,
    reference_network,
    reference_runtime,
)
from hpo.measure.runtimes import cpu_model
from hpo.store import queries
from hpo.store.connect import load_study, open_storage
from tests.conftest import ROOT, invoke


def test_reference_network_is_fixed_and_leaves_the_seed_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, second = reference_network(), reference_network()
    assert torch.equal(torch.rand(3), expected_next)  # building it consumed no random numbers
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not first.training


def test_reference_runtime_is_built_once_per_backend() -> None:
    eager = reference_runtime("eager", 1, "cpu")
    assert reference_runtime("eager", 1, "cpu") is eager
    assert reference_runtime("torchscript", 1, "cpu") is not eager
    eager.run()


def test_device_fingerprint_names_the_machine() -> None:
    fingerprint = device_fingerprint("onnxruntime", 1, torch.device("cpu"))
    assert fingerprint["cpu_model"] == cpu_model() and fingerprint["cores"] >= 1
    assert fingerprint["threads"] == 1 and fingerprint["torch_version"] == torch.__version__
    assert fingerprint["backend"].startswith("onnxruntime ")
    assert fingerprint["reference"] == REFERENCE_NAME
    json.dumps(fingerprint)  # stored as a user attribute: must be JSON


def test_rank_by_latency_ratio_across_machines(tmp_path: Path) -> None:
    """Two workers on different hardware: raw ms mislead, the ratio to the reference does not."""
    storage = f"sqlite:///{tmp_path / 'mixed.db'}"
    study = optuna.create_study(
        storage=storage, study_name="mixed", directions=["maximize", "minimize"]
    )
    study.set_user_attr(SPEC_ATTR, {"study": {"name": "mixed"}})  # as hpo creates its studies
    machines = {
        "fast": {"cpu_model": "fast CPU", "reference_ms": 0.5},
        "slow": {"cpu_model": "slow CPU", "reference_ms": 2.0},
    }
    # (machine, accuracy, model/reference): the slow machine ran the leanest, most accurate net.
    runs = [("fast", 0.60, 1.2), ("fast", 0.55, 0.9), ("slow", 0.70, 0.8)]
    for machine, accuracy, ratio in runs:
        reference_ms = machines[machine]["reference_ms"]
        study.add_trial(
            optuna.trial.create_trial(
                values=[accuracy, ratio * reference_ms],
                params={"lr": 0.1},
                distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1.0)},
                user_attrs={
                    "latency_ratio": ratio,
                    "latency_reference_ms": reference_ms,
                    "device_fingerprint": {"cpu_model": machines[machine]["cpu_model"]},
                },
            )
        )
    finished = queries.completed(load_study(open_storage(storage), "mixed"))
    by_ms = results.within_budget(finished, 1.0, "latency_ms")
    assert [t.number for t in by_ms] == [0, 1]  # the slow machine's 1.6 ms hides its net
    front = results.pareto_front(finished, "latency_ratio")
    assert [t.number for t in front] == [2]  # leanest and most accurate: it alone is the front

    result = invoke(
        "best",
        *("--storage", storage, "--study-name", "mixed", "--format", "json"),
        *("--rank-by", "latency_ratio", "--max-latency-ms", "1.0"),
    )
    assert result.returncode == 0, result.stderr
    chosen = json.loads(result.stdout)
    assert [t["number"] for t in chosen] == [2, 1]
    assert [t["latency_ratio"] for t in chosen] == [0.8, 0.9]
    table = invoke(
        "best",
        *("--storage", storage, "--study-name", "mixed"),
        *("--rank-by", "latency_ratio", "--max-latency-ms", "1.0"),
    )
    assert "latency ratio" in table.stdout, "the table shows what it ranked by"
    rows = [line.split() for line in table.stdout.splitlines() if line.strip()[:1] in "12"]
    assert [row[3] for row in rows[:2]] == ["0.800", "0.900"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["eager", "torchscript", "onnxruntime"])
def test_study_records_latency_per_backend(backend: str, tmp_path: Path, sample_path: Path) -> None:
    db = tmp_path / "s.db"
    settings = {
        "latency.backend": f'"{backend}"',
        "latency.warmup": "2",
        "latency.loops": "10",
        "latency.max_rounds": "3",
        "data.train_size": "256",
        "train.epochs": "1",
        "search.norm": '"batch"',
        "search.width": "0.25",
    }
    overrides = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    result = invoke(
        "run",
        str(ROOT / "studies" / "quickstart.toml"),
        "--n-trials",
        "1",
        "--data",
        str(sample_path),
        "--storage",
        f"sqlite:///{db}",
        *overrides,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT key, value_json FROM trial_user_attributes").fetchall()
        system = connection.execute("SELECT key, value_json FROM trial_system_attributes")
        hidden = {key: json.loads(value) for key, value in system.fetchall()}
    shown = {key: json.loads(value) for key, value in rows}
    # People read short scalars; the structures sit in system attributes, out of the dashboard.
    assert all(not isinstance(v, dict | list) for k, v in shown.items() if k not in STRUCTURED)
    attrs = flat(shown, hidden)
    assert shown["latency_iqr_ms"] == pytest.approx(attrs["latency"]["iqr_ms"], 1e-3)
    assert attrs["latency_backend"].startswith(f"{backend} ")
    assert attrs["latency_backend"].split()[-1] in (torch.__version__, _ort_version())
    assert attrs["latency"]["median_ms"] > 0 and attrs["latency"]["iqr_ms"] >= 0
    assert attrs["latency_ratio"] == pytest.approx(  # both sides rounded to 4 digits
        attrs["latency"]["median_ms"] / attrs["latency_reference_ms"], rel=1e-3
    )
    assert attrs["device_fingerprint"]["backend"] == attrs["latency_backend"]
    assert attrs["fold_report"]["n_folded"] > 0 and attrs["fold_report"]["n_kept"] == 0
    assert attrs["speedup"] > 0 and attrs["macs"] > 0 and attrs["cost_layers"]
    if backend != "eager":
        assert attrs["latency_backend_max_abs_diff"] < 1e-3

    best = invoke(
        "best", "--storage", f"sqlite:///{db}", "--study-name", "quickstart", "--format", "json"
    )
    (trial,) = json.loads(best.stdout)
    assert trial["latency_ratio"] == pytest.approx(attrs["latency_ratio"])


# The one user attribute that may be a structure: the learning curve.
STRUCTURED = {"val_accuracy_curve"}


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
