"""A latency budget nothing can meet ends the run with one line instead of probing forever.

Trials over the budget are never trained and do not count toward `n_trials`, so without this a
budget below every architecture would loop. The run stops when every architecture of a finite
search space is known to be over the budget, or after many over-budget proposals in a row
(a continuous space cannot be enumerated).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optuna.trial import FrozenTrial

from hpo.core.errors import SpecError
from hpo.core.keys import canonical_json
from hpo.core.trial_config import TrialConfig
from hpo.search.architecture import ArchitectureSpace
from hpo.store.outcomes import over_budget

# Over-budget proposals in a row after which a budget is called impossible.
MAX_OVER_BUDGET_IN_A_ROW = 30


class BudgetWatch:
    """Counts over-budget proposals; raises SpecError once the budget cannot be met."""

    def __init__(
        self,
        space: ArchitectureSpace,
        budget: float,
        known: Callable[[], list[tuple[dict[str, Any], float]]],
        give_up_after: int | None = MAX_OVER_BUDGET_IN_A_ROW,
    ) -> None:
        self.space = space
        self.budget = budget
        self.known = known
        self.give_up_after = give_up_after  # over-budget proposals in a row (None: never)
        self.in_a_row = 0

    def after(self, trial: FrozenTrial) -> None:
        """Look at a finished trial; raise SpecError when no architecture can fit."""
        if not over_budget(trial):
            self.in_a_row = 0
            return
        self.in_a_row += 1
        known = self.known()
        probed = {canonical_json(a): ms for a, ms in known}
        everything = self.space.enumerate()
        exhausted = everything is not None and all(
            probed.get(canonical_json(_canonical(a)), 0.0) > self.budget for a in everything
        )
        given_up = self.give_up_after is not None and self.in_a_row >= self.give_up_after
        if exhausted or given_up:
            # Probes of other studies on this device may lie outside this search space.
            mine = [(a, ms) for a, ms in known if self.space.contains(a)]
            fastest = min(mine, key=lambda item: item[1], default=None)
            where = ""
            if fastest is not None:
                shown = " ".join(f"{k}={v}" for k, v in fastest[0].items())
                where = f"; the fastest probed is {fastest[1]:.2f} ms ({shown})"
            raise SpecError(
                f"[study] max_latency_ms = {self.budget:g}: no architecture of the search "
                f"space fits{where}; raise the budget or search faster architectures"
            )


def _canonical(architecture: dict[str, Any]) -> dict[str, Any]:
    return TrialConfig.from_params(architecture).architecture()
