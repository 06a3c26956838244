"""Small studies with known results, written through Optuna's own API (no training)."""

from __future__ import annotations

from dataclasses import dataclass
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
