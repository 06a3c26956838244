"""The settings that make a study's trials comparable, fixed when the study is created.

Trials trained for other epochs, on another split or subset, or timed by another runtime,
device or protocol cannot share one Pareto front. Everything else may change between runs:
where the data lies on this machine (`data.dataset`, `data.root`), the target (`n_trials`,
which only rises), and how new trials are proposed or stopped early (sampler, seeds, pruner,
latency budget): those change which trials are run, not how a trial is measured.
"""

from __future__ import annotations

from typing import Any

from hpo.core.spec import Spec

FIXED_AT_CREATION = (
    "data.train_size",
    "data.val_size",
    "data.split_seed",
    "train.epochs",
    "train.augment",
    "train.device",
    "latency.backend",
    "latency.threads",
    "latency.warmup",
    "latency.loops",
    "latency.max_rounds",
    "latency.target_iqr",
    "latency.max_seconds",
)
# Changed without a word: the target is handled on its own, the others say where things are.
_QUIET = ("study.name", "study.n_trials", "data.dataset", "data.root", "train.eval_batch_size")


def setting(spec: Spec, key: str) -> Any:
    """The value of `section.name` in a validated spec (defaults filled in)."""
    section, name = key.split(".")
    return getattr(getattr(spec, section), name)


def changed_settings(before: Spec, after: Spec) -> list[str]:
    """The keys outside [search] whose values differ between two specs, in spec order."""
    changed = []
    for section in ("study", "data", "train", "latency"):
        old, new = getattr(before, section), getattr(after, section)
        changed += [
            f"{section}.{n}" for n in type(old).model_fields if getattr(old, n) != getattr(new, n)
        ]
    return changed


def refused_change(before: Spec, after: Spec) -> str | None:
    """The first fixed setting that `after` changes, or None."""
    return next((k for k in changed_settings(before, after) if k in FIXED_AT_CREATION), None)


def noted_changes(before: Spec, after: Spec) -> list[str]:
    """The changed settings worth a note: allowed, and not a matter of this machine."""
    return [k for k in changed_settings(before, after) if k not in _QUIET]
