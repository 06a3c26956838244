"""Pareto-aware successive halving: stop trials whose accuracy so far is dominated early.

Optuna cannot prune a multi-objective study (`trial.report` raises), so this is hpo's own rule,
after asynchronous successive halving (ASHA) and its multi-objective form (MOASHA). Rungs are at
`min_epochs * eta**k` epochs, below the trial's last epoch. When a trial reaches a rung, it is
compared with every trial started before it that reached that rung (running, finished or
stopped), on (accuracy at that rung, latency). The trial goes on when no point there dominates
it, or when it is among the best max(1, n // eta) of the n points ranked by non-dominated sorting
(ties within a front broken by crowding distance, as in NSGA-II). The first condition is where
this differs from MOASHA, which keeps only the top n // eta even when the rung's front is larger:
with few latency levels (e.g. a study that searches only the norm layer) that stops trials no
other trial beats at their speed, which are the ones the study is looking for. How many more
go on depends on the trade-off: few when accuracy and latency are unrelated (a front of n
random points holds about ln(n) of them), up to about half the rung when slower networks are
reliably more accurate. Latency is known before training; two latencies within their probes'
spread (IQR) are equal, so a tie in latency is decided by accuracy (`hpo.core.dominance`). Only
accuracy is provisional. Nothing waits: the rung holds whatever has reached it so far, so the
first trials always go on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpo.core.dominance import dominance

# (accuracy, latency ms[, latency IQR ms]): accuracy is maximized, latency minimized; a point
# without the IQR compares its latency exactly.
Point = tuple[float, float] | tuple[float, float, float]


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """Front index of each point: 0 for the non-dominated ones, 1 for the next front, ...

    Columns: accuracy, latency ms and, when there, the latency's spread (its IQR in ms):
    latencies within the spread are equal (`hpo.core.dominance`).
    """
    n = len(points)
    spread = points[:, 2] if points.shape[1] > 2 else None
    dominates = dominance(points[:, 0], points[:, 1], spread)  # [i, j]: point i dominates j
    ranks = np.full(n, -1)
    remaining = np.ones(n, dtype=bool)
    front = 0
    while remaining.any():
        dominated = (dominates & remaining[:, None]).any(axis=0)
        current = remaining & ~dominated
        ranks[current] = front
        remaining &= ~current
        front += 1
    return ranks


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each point within its set (boundary points: infinite)."""
    n = len(points)
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for axis in range(points.shape[1]):
        order = np.argsort(points[:, axis], kind="stable")
        values = points[order, axis]
        span = values[-1] - values[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def _with_spread(point: Point) -> tuple[float, float, float]:
    return (point[0], point[1], point[2] if len(point) > 2 else 0.0)


@dataclass(frozen=True)
class ParetoHalving:
    """The rung schedule and the decision at a rung."""

    eta: int = 3
    min_epochs: int = 1

    def rungs(self, epochs: int) -> list[int]:
        """Epoch counts at which trials are compared (all below `epochs`)."""
        found, epoch = [], self.min_epochs
        while epoch < epochs:
            found.append(epoch)
            epoch *= self.eta
        return found

    def keeps(self, point: Point, others: list[Point]) -> bool:
        """Whether a trial at `point` goes on, among `others` that reached the same rung."""
        points = np.array([_with_spread(p) for p in [*others, point]], dtype=float)
        keep = max(1, len(points) // self.eta)
        ranks = nondominated_ranks(points)
        if ranks[-1] == 0:
            return True  # nothing at this rung dominates it
        crowding = np.zeros(len(points))
        for front in np.unique(ranks):
            members = ranks == front
            crowding[members] = crowding_distance(points[members][:, :2])
        # Best first: lower front, then more crowding distance; the newcomer loses exact ties.
        position = np.arange(len(points))
        order = np.lexsort((position, -crowding, ranks))
        return bool(np.nonzero(order == len(points) - 1)[0][0] < keep)


def idle_pruner_note(pruner: str, min_epochs: int, eta: int, epochs: int) -> str | None:
    """A note when the pareto pruner has no rung before the last epoch: it would stop nothing,
    which a spec that asks for it did not mean."""
    if pruner != "pareto" or ParetoHalving(eta, min_epochs).rungs(epochs):
        return None
    return (
        f"hpo: note: [study] pruner_min_epochs = {min_epochs} is not below [train] epochs = "
        f"{epochs}: the pareto pruner has no rung before the last epoch and stops no trial"
    )
