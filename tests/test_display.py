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
