"""Search space: suggestions follow the spec, conditional params appear only when they apply."""

from __future__ import annotations

import optuna
import pytest

from hpo.core.errors import SpecError
from hpo.core.params import CATALOG
from hpo.core.spec import validate
from hpo.core.trial_config import TrialConfig
from hpo.search.space import first_values, grid_search_space, suggest


def run_space(search: dict, n_trials: int = 30) -> list[optuna.trial.FrozenTrial]:
    spec = validate({"study": {"name": "t"}, "search": search})
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1)
    )
    study.optimize(lambda t: (suggest(t, spec).lr, 0.0), n_trials=n_trials)
    return study.trials


def test_choices_and_ranges_are_respected() -> None:
    trials = run_space(
        {"lr": {"low": 1e-3, "high": 1e-1}, "optimizer": ["adam", "nesterov"], "norm": "group"}
    )
    for trial in trials:
        assert 1e-3 <= trial.params["lr"] <= 1e-1
        assert trial.params["optimizer"] in ("adam", "nesterov")
        # A fixed value is not a param (nothing was searched) but is in the stored config.
        assert "norm" not in trial.params and trial.user_attrs["config"]["norm"] == "group"
    assert {t.params["optimizer"] for t in trials} == {"adam", "nesterov"}


def test_conditional_params_only_when_they_apply() -> None:
    trials = run_space(
        {"optimizer": ["sgd", "nesterov", "adam"], "scheduler": ["step", "cosine", "polynomial"]}
    )
    for trial in trials:
        params = trial.user_attrs["config"]  # every value the trial used, fixed ones included
        assert ("momentum" in params) == (params["optimizer"] == "nesterov")
        assert ("beta1" in params) == (params["optimizer"] == "adam")
        assert ("step_size" in params) == (params["scheduler"] == "step")
        assert ("gamma" in params) == (params["scheduler"] == "step")
        assert ("power" in params) == (params["scheduler"] == "polynomial")


def test_config_rebuilds_from_what_the_trial_stored() -> None:
    for trial in run_space({"lr": {"low": 1e-3, "high": 1e-1}, "optimizer": ["sgd", "adamw"]}):
        config = TrialConfig.from_trial(trial.params, trial.user_attrs)
        assert config.lr == trial.params["lr"]
        assert config.as_params() == trial.user_attrs["config"]
        assert set(trial.params) <= set(config.as_params()) and "model" not in trial.params
        # A study made before `config` existed stored every value as a param: same config.
        assert TrialConfig.from_trial(config.as_params(), {}) == config


def test_every_catalog_default_is_valid() -> None:
    for param in CATALOG:
        assert param.check_value(param.default) is None, param.name


def test_first_values_are_each_list_s_first_and_each_range_s_middle() -> None:
    search = {
        "norm": ["layer", "batch"],
        "optimizer": ["adam", "nesterov"],
        "lr": {"low": 0.01, "high": 1.0, "log": True},
        "weight_decay": {"low": 0.0, "high": 0.001},
        "translate": {"low": 0, "high": 3},
        "dropout": {"low": 0.0, "high": 0.5, "step": 0.1},
        "scheduler": "onecycle",
    }
    first = first_values(validate({"study": {"name": "t"}, "search": search}))
    # beta1 and the rest apply to adam but are fixed; momentum does not apply; nothing fixed.
    assert first == {
        "norm": "layer",
        "optimizer": "adam",
        "lr": pytest.approx(0.1),
        "weight_decay": pytest.approx(0.0005),
        "translate": 2,
        "dropout": pytest.approx(0.2),
    }
    assert isinstance(first["translate"], int)
    search["lr"] = {"low": 0.01, "high": 1.0, "log": True, "first": 0.2}
    spec = validate({"study": {"name": "t"}, "search": search})
    assert first_values(spec)["lr"] == 0.2
    search["lr"] = {"low": 0.01, "high": 1.0, "first": 2.0}
    with pytest.raises(SpecError, match=r"\[search\] lr: first must be a value in \[0.01, 1.0\]"):
        validate({"study": {"name": "t"}, "search": search})


def test_first_values_cover_a_model_factory_s_own_params() -> None:
    search = {
        "model": "nets/tiny.py:build",
        "lr": [0.1, 0.05],
        "model_params": {
            "channels": [32, 16],
            "blocks": {"low": 1, "high": 3},
            "drop": {"low": 0.0, "high": 0.5, "first": 0.1},
            "stem": 7,
        },
    }
    first = first_values(validate({"study": {"name": "t"}, "search": search}))
    assert first["lr"] == 0.1
    # The factory's own params: the list's first, the range's middle or its `first`; the
    # fixed one is not searched, so it is not enqueued.
    assert {k: first[k] for k in ("channels", "blocks", "drop")} == {
        "channels": 32,
        "blocks": 2,
        "drop": 0.1,
    }
    assert "stem" not in first


def test_grid_refuses_ranges() -> None:
    spec = validate({"study": {"name": "t"}, "search": {"lr": {"low": 0.01, "high": 0.1}}})
    with pytest.raises(SpecError, match=r"\[search\] lr: the grid sampler needs a list"):
        grid_search_space(spec)


def test_architecture_params_are_the_ones_that_change_the_network() -> None:
    import torch

    import models
    from hpo.core.params import ARCHITECTURE, BY_NAME

    expected = ("model", "norm", "head", "activation", "width", "depth", "pool", "kernel")
    expected += (
        "bottleneck",
        "attention",
        "se_ratio",
        "growth_rate",
        "dense_layers",
        "compression",
    )
    assert expected + ("dense_order",) == ARCHITECTURE
    # Dropout is not one: in eval mode it is the identity, so the timed graph is the same.
    assert not BY_NAME["dropout"].architecture
    # Nor is the loss: it changes the weights training finds, never the graph.
    assert not BY_NAME["loss"].architecture
    torch.manual_seed(0)
    plain = models.build_model("vgg", norm="batch", dropout=0.0).eval()
    torch.manual_seed(0)
    dropped = models.build_model("vgg", norm="batch", dropout=0.5).eval()
    image = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(plain(image), dropped(image))


DESIGN_SPACE = {
    "model": ["simple_cnn", "vgg", "resnet", "mobilenet", "densenet"],
    "depth": 8,
    "pool": ["max", "avg", "conv"],
    "kernel": ["3x3", "5x5"],
    "bottleneck": [0.0, 0.5],
    "attention": ["none", "se"],
    "se_ratio": [4, 16],
    "growth_rate": [8, 12],
    "dense_layers": [2, 3],
    "compression": {"low": 0.5, "high": 1.0},
    "dense_order": ["pre", "post"],
    "loss": ["cross_entropy", "nll", "multi_margin", "bce", "mse", "kl"],
    "label_smoothing": [0.0, 0.1],
}


def test_design_options_apply_where_the_family_takes_them() -> None:
    from hpo.train.model import build_network
    from models.catalog import FAMILY_OPTIONS

    for trial in run_space(DESIGN_SPACE, n_trials=40):
        config = TrialConfig.from_trial(trial.params, trial.user_attrs)
        params = trial.user_attrs["config"]
        taken = FAMILY_OPTIONS[params["model"]]
        for option in ("depth", "pool", "kernel", "bottleneck", "attention", "growth_rate"):
            assert (option in params) == (option in taken), (option, params)
        assert ("dense_order" in params) == (params["model"] == "densenet")
        assert ("se_ratio" in params) == (params.get("attention") == "se")
        assert ("label_smoothing" in params) == (params["loss"] in ("cross_entropy", "kl"))
        # The options reach the family (a misrouted one would be refused by the registry).
        build_network(config, num_classes=10)


def test_the_latency_aware_space_holds_the_design_options_but_not_the_loss() -> None:
    from hpo.search.architecture import ArchitectureSpace

    spec = validate({"study": {"name": "t"}, "search": DESIGN_SPACE})
    space = ArchitectureSpace.from_spec(spec)
    assert {"pool", "kernel", "bottleneck", "attention", "se_ratio", "dense_order"} <= set(
        space.names
    )
    assert "loss" not in space.names and "label_smoothing" not in space.names
    config = TrialConfig.from_params({"model": "densenet", "attention": "se", "loss": "kl"})
    assert "loss" not in config.architecture()
    assert config.architecture()["se_ratio"] == 8 and config.architecture()["pool"] == "auto"


def test_a_config_stored_before_the_design_options_rebuilds_the_same_network() -> None:
    # Studies made before these options stored no pool, kernel, attention or loss: the
    # defaults rebuild the network they trained, and cross-entropy with their smoothing.
    config = TrialConfig.from_params({"model": "simple_cnn", "label_smoothing": 0.2})
    assert config.model_kwargs() == {
        "width": 1.0,
        "dropout": 0.0,
        "head": "gap",
        "activation": "relu",
        "pool": "auto",
        "kernel": "auto",
        "bottleneck": 0.0,
        "attention": "none",
    }
    assert config.loss == "cross_entropy" and config.label_smoothing == 0.2


@pytest.mark.parametrize("start", [True, False])
def test_start_from_first_enqueues_the_first_values_once(tmp_path, start: bool) -> None:
    from optuna.trial import TrialState

    from hpo.store.connect import open_storage
    from hpo.store.studies import create_or_load_study

    search = {"norm": ["batch", "layer"], "lr": {"low": 0.01, "high": 1.0}}
    spec = validate({"study": {"name": "t", "start_from_first": start}, "search": search})
    url = f"sqlite:///{tmp_path}/s.db"
    create_or_load_study(spec, open_storage(url))
    study = create_or_load_study(spec, open_storage(url)).study  # loading again adds nothing
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == int(start)
    if start:
        # Optuna's own storage: the resilient one has heartbeats, which warn outside optimize.
        trial = optuna.load_study(study_name="t", storage=url).ask()
        suggest(trial, spec)
        assert trial.number == 0 and trial.params == first_values(spec)
