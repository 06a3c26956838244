"""The one-line description of a trial in the progress display."""

from __future__ import annotations

from hpo.core.trial_config import TrialConfig
from hpo.run.display import describe


def test_the_line_shows_the_searched_design_params_after_the_headline() -> None:
    searched = {"norm": "batch", "lr": 0.05, "pool": "avg", "se_ratio": 4, "bottleneck": 0.5}
    config = TrialConfig.from_params({"model": "resnet", "optimizer": "adamw", **searched})
    assert describe(config, searched) == (
        "resnet/batch adamw lr=0.05 onecycle pool=avg se_ratio=4 bottleneck=0.5"
    )


def test_without_searched_params_only_the_headline_is_shown() -> None:
    config = TrialConfig.from_params({"model": "vgg", "norm": "group"})
    assert describe(config) == "vgg/group nesterov lr=0.05 onecycle"


def test_a_long_trial_line_leaves_the_bar_whole(tmp_path) -> None:
    """The running trial goes on a line of its own, cut at the terminal's width: its params
    never squeeze the bar, the count or the times off the line."""
    import optuna
    from rich.console import Console

    from hpo.run.display import TrialDisplay
    from hpo.store.connect import StoredStudy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'display.db'}")
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trial = study.ask()
    searched = {"norm": "batch", "lr": 0.05, "pool": "avg", "se_ratio": 4, "bottleneck": 0.5}
    searched |= {"kernel": "5x5", "attention": "se", "loss": "kl", "width": 1.5, "depth": 20}
    for name, value in searched.items():
        trial.suggest_categorical(name, [value])
    config = TrialConfig.from_params({"model": "resnet", "optimizer": "adamw", **searched})
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    display = TrialDisplay(console, StoredStudy.of(study, storage), target=40, done=3)  # type: ignore[arg-type]
    display.trial_start(trial, config)
    display.epoch(3, 10, 1.2345, 0.456)
    console.print(display.bar.get_renderable())
    bar, status = console.export_text().splitlines()
    assert "3/40" in bar and "elapsed" in bar and "remaining" in bar
    assert status.startswith(f"#{trial.number} epoch 3/10 loss 1.234 val 45.6% · resnet/batch")
    assert len(status) <= 80 and status.endswith("…")
