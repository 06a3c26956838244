"""Small studies with known results, written through Optuna's own API (no training)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

from hpo.core.spec import validate
from hpo.store.connect import open_storage
from hpo.store.studies import create_or_load_study

NORMS = ["batch", "group", "layer", "instance", "none"]
OPTIMIZERS = ["nesterov", "adam", "sgd"]
SPEC = {
    "study": {"name": "synthetic", "n_trials": 6},
    "data": {"dataset": "cifar10", "train_size": 256},
    "train": {"epochs": 1},
    "search": {
        "model": ["simple_cnn", "resnet"],
        "norm": NORMS,
        "optimizer": OPTIMIZERS,
        "lr": {"low": 0.001, "high": 0.2, "log": True},
        "batch_size": {"low": 64, "high": 256, "step": 64},
        "depth": [14, 20],
    },
}
DISTRIBUTIONS: dict[str, BaseDistribution] = {
    "model": CategoricalDistribution(["simple_cnn", "resnet"]),
    "norm": CategoricalDistribution(NORMS),
    "optimizer": CategoricalDistribution(OPTIMIZERS),
    "lr": FloatDistribution(0.001, 0.2, log=True),
    "batch_size": IntDistribution(64, 256, step=64),
    "depth": CategoricalDistribution([14, 20]),
    "width": CategoricalDistribution([1.0]),  # fixed values are one-element choices in hpo
}


@dataclass(frozen=True)
class Row:
    """One synthetic trial: its params, values (None for a failed trial) and state."""

    params: dict[str, Any]
    values: tuple[float, float] | None

    @property
    def state(self) -> str:
        return "COMPLETE" if self.values is not None else "FAIL"


def _row(
    norm: str,
    optimizer: str,
    lr: float,
    values: tuple[float, float] | None,
    model: str = "simple_cnn",
    batch_size: int = 128,
) -> Row:
    params: dict[str, Any] = {
        "model": model,
        "norm": norm,
        "optimizer": optimizer,
        "lr": lr,
        "batch_size": batch_size,
        "width": 1.0,
    }
    if model == "resnet":
        params["depth"] = 20
    return Row(params, values)


ROWS = [
    _row("batch", "adam", 0.01, (0.60, 1.5)),
    _row("group", "nesterov", 0.05, (0.70, 2.5), model="resnet"),
    _row("none", "sgd", 0.02, (0.65, 1.0), batch_size=64),
    _row("layer", "adam", 0.1, None),
    _row("layer", "nesterov", 0.003, (0.55, 0.5), batch_size=256),
    _row("batch", "sgd", 0.004, (0.50, 3.0)),
]

# A second study with awkward names: quoting must survive them, and its `lr` is a fixed
# (categorical) value where the first study's is a float range.
ODD_PARAM = 'it\'s "odd"'
ODD_ROWS = [
    ({"lr": 0.1, ODD_PARAM: "x'y"}, (0.4, 1.2)),
    ({"lr": 0.1, ODD_PARAM: "z; DROP TABLE trials"}, (0.3, 0.8)),
]
ODD_DISTRIBUTIONS: dict[str, BaseDistribution] = {
    "lr": CategoricalDistribution([0.1]),
    ODD_PARAM: CategoricalDistribution(["x'y", "z; DROP TABLE trials"]),
}
ODD_STUDY = "odd 'study'"


def make_studies(url: str) -> None:
    """Write the `synthetic` study (through hpo's own creation path) and the odd one."""
    storage = open_storage(url)
    study = create_or_load_study(validate(SPEC), storage).study
    for row in ROWS:
        distributions = {k: DISTRIBUTIONS[k] for k in row.params}
        if row.values is None:
            trial = create_trial(
                state=TrialState.FAIL, params=row.params, distributions=distributions
            )
        else:
            trial = create_trial(
                params=row.params,
                distributions=distributions,
                values=list(row.values),
                user_attrs={"test_accuracy": row.values[0] - 0.01},
            )
        study.add_trial(trial)
    odd = optuna.create_study(
        storage=storage, study_name=ODD_STUDY, directions=["maximize", "minimize"]
    )
    for params, values in ODD_ROWS:
        odd.add_trial(create_trial(params=params, distributions=ODD_DISTRIBUTIONS, values=values))
    storage.engine.dispose()  # PostgreSQL cannot drop a database with open connections


# A finished study as the quickstart leaves one: 10 trials, 3 complete, 6 stopped early by the
# pruner or the latency budget, 1 failed. Some choices (norm layer and instance, optimizer sgd,
# scheduler step) appear only in trials that stopped, so a figure over complete trials alone
# would lose them.
STOPPED_STUDY = "stopped"
STOPPED_SPEC = {
    "study": {"name": STOPPED_STUDY, "n_trials": 10, "max_latency_ms": 2.0},
    "data": {"dataset": "cifar10", "train_size": 256},
    "train": {"epochs": 4},
    "search": {
        "model": "simple_cnn",
        "norm": ["batch", "group", "layer", "instance"],
        "optimizer": ["adam", "nesterov", "sgd"],
        "lr": {"low": 0.001, "high": 0.2, "log": True},
        "scheduler": ["cosine", "step"],
    },
}
STOPPED_DISTRIBUTIONS: dict[str, BaseDistribution] = {
    "norm": CategoricalDistribution(["batch", "group", "layer", "instance"]),
    "optimizer": CategoricalDistribution(["adam", "nesterov", "sgd"]),
    "lr": FloatDistribution(0.001, 0.2, log=True),
    "scheduler": CategoricalDistribution(["cosine", "step"]),
}


@dataclass(frozen=True)
class StoppedRow:
    """One trial of the stopped study: params, latency, learning curve and how it ended."""

    norm: str
    optimizer: str
    scheduler: str
    latency_ms: float
    curve: list[float]
    state: TrialState
    reason: str = ""


def _rung_reason(epoch: int, accuracy: float, latency_ms: float) -> str:
    return (
        f"stopped at epoch {epoch}: accuracy {accuracy:.2%} at {latency_ms:.4g} ms is "
        f"dominated at rung {epoch - 1} and not in the best 1/3 of the 4 trials there"
    )


STOPPED_ROWS = [
    StoppedRow("batch", "adam", "cosine", 0.6628, [0.31, 0.45, 0.55, 0.61], TrialState.COMPLETE),
    StoppedRow("group", "nesterov", "cosine", 0.9812, [0.35, 0.5, 0.6, 0.66], TrialState.COMPLETE),
    StoppedRow(
        "layer", "sgd", "step", 0.7702, [0.21], TrialState.PRUNED, _rung_reason(1, 0.21, 0.7702)
    ),
    StoppedRow(
        "batch", "sgd", "step", 0.6511, [0.19], TrialState.PRUNED, _rung_reason(1, 0.19, 0.6511)
    ),
    StoppedRow("group", "adam", "cosine", 1.4023, [0.62, 0.7, 0.72, 0.74], TrialState.COMPLETE),
    StoppedRow(
        "instance",
        "adam",
        "step",
        0.8521,
        [0.22, 0.3],
        TrialState.PRUNED,
        _rung_reason(2, 0.3, 0.8521),
    ),
    StoppedRow(
        "layer",
        "nesterov",
        "cosine",
        3.1054,
        [],
        TrialState.PRUNED,
        "over latency budget: 3.11 ms > 2.00 ms",
    ),
    StoppedRow(
        "instance", "sgd", "step", 0.9133, [0.18], TrialState.PRUNED, _rung_reason(1, 0.18, 0.9133)
    ),
    StoppedRow(
        "layer",
        "adam",
        "cosine",
        0.7801,
        [0.28, 0.33],
        TrialState.PRUNED,
        _rung_reason(2, 0.33, 0.7801),
    ),
    StoppedRow(
        "batch", "nesterov", "step", 0.7, [0.1], TrialState.FAIL, "diverged: loss is nan at epoch 2"
    ),
]


def make_stopped_study(url: str, artifact_folder: Path) -> None:
    """Write the stopped study through Optuna, laid out as hpo's runner lays out its trials,
    with a (stand-in) ONNX model stored for each complete trial."""
    from hpo.core.trial_attrs import laid_out
    from hpo.store import artifacts

    storage = open_storage(url)
    stored = create_or_load_study(validate(STOPPED_SPEC), storage)
    study = stored.study
    store = artifacts.open_store(url, artifact_folder, create=True)
    assert store is not None
    for number, row in enumerate(STOPPED_ROWS):
        params = {"norm": row.norm, "optimizer": row.optimizer, "lr": round(0.01 + number / 100, 4)}
        params["scheduler"] = row.scheduler
        config = {"model": "simple_cnn", **params, "batch_size": 128, "width": 1.0}
        attrs: dict[str, Any] = {
            "config": config,
            "latency_ms": row.latency_ms,
            "latency": {"median_ms": row.latency_ms, "iqr_ms": 0.004},
            "fold_report": {"n_folded": 6, "folded": [{"layer": f"{i}.1"} for i in range(6)]},
            "cost_layers": [{"layer": f"{i}.0", "macs": 884736 + i} for i in range(12)],
        }
        if row.curve:
            attrs["val_accuracy_curve"] = row.curve
            attrs["epoch"] = len(row.curve)
        if row.state == TrialState.PRUNED:
            attrs["stop_reason"] = row.reason
        if row.state == TrialState.FAIL:
            attrs["fail_reason"] = row.reason
        if row.state == TrialState.COMPLETE:
            attrs["test_accuracy"] = row.curve[-1] - 0.01
            attrs["macs"] = 4_000_000.0 + number * 250_000
        layout = laid_out(attrs)
        complete = row.state == TrialState.COMPLETE
        # A complete trial is added running: its model is stored before it completes, as a
        # worker stores it (a finished trial takes no new artifact).
        study.add_trial(
            create_trial(
                state=TrialState.RUNNING if complete else row.state,
                params=params,
                distributions=STOPPED_DISTRIBUTIONS,
                user_attrs=layout.shown,
                system_attrs=layout.hidden,
            )
        )
        if complete:
            trial = study.trials[-1]
            artifacts.upload_bytes(store, trial, artifacts.ONNX_NAME, b"onnx", storage)
            trial_id = storage.get_trial_id_from_study_id_trial_number(stored.study_id, number)
            storage.set_trial_state_values(
                trial_id, TrialState.COMPLETE, [row.curve[-1], row.latency_ms]
            )
    storage.engine.dispose()
