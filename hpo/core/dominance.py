"""Dominance on (accuracy, latency) when latency is measured with noise.

Accuracy is maximized, latency minimized. A trial's latency is the median of timed runs, and
its spread is their interquartile range (`latency_iqr_ms`). Two latencies closer than the
larger of their two spreads are equal: probing the same network again moves its median by
about that much, so such a difference ranks nothing. Trial a dominates trial b when

    acc_a >= acc_b  and  lat_a <= lat_b + tol          (as accurate, no slower within noise)
    and (acc_a > acc_b  or  lat_a < lat_b - tol)       (more accurate, or faster beyond noise)

with tol = max(spread_a, spread_b). So a tie in latency is decided by accuracy. A spread of 0
(a trial that recorded none) is the exact comparison.

The relation has no cycles: along one, every accuracy would be equal, so every step would be
faster beyond the noise and the first point faster than itself. So every set of trials has a
front (the trials nothing dominates), and non-dominated sorting peels it front by front. It is
not transitive: in a chain of trials, each within the noise of the next and less accurate, each
is dominated by the next, while the two ends may differ by more than the noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Values = Sequence[float] | np.ndarray


def _spreads(spread: Values | None, n: int) -> np.ndarray:
    if spread is None:
        return np.zeros(n)
    values = np.asarray(spread, dtype=float)
    return np.where(np.isfinite(values) & (values > 0), values, 0.0)


def dominance(
    accuracy: Values,
    latency: Values,
    spread: Values | None = None,
    targets: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """dominates[i, k]: point i dominates point `targets[k]` (every point when None)."""
    acc = np.asarray(accuracy, dtype=float)
    lat = np.asarray(latency, dtype=float)
    tol = _spreads(spread, len(acc))
    columns = np.arange(len(acc)) if targets is None else np.asarray(targets, dtype=int)
    tolerance = np.maximum(tol[:, None], tol[None, columns])
    as_accurate = acc[:, None] >= acc[None, columns]
    more_accurate = acc[:, None] > acc[None, columns]
    no_slower = lat[:, None] <= lat[None, columns] + tolerance
    faster = lat[:, None] < lat[None, columns] - tolerance
    return as_accurate & no_slower & (more_accurate | faster)


def nondominated(accuracy: Values, latency: Values, spread: Values | None = None) -> np.ndarray:
    """Mask of the points no other point dominates (the front)."""
    acc = np.asarray(accuracy, dtype=float)
    lat = np.asarray(latency, dtype=float)
    on_front = np.zeros(len(acc), dtype=bool)
    if not len(acc):
        return on_front
    # A point some more accurate point matches or beats on latency is dominated at any spread;
    # one sort finds the rest (few), and only they are checked against every point.
    order = np.lexsort((-acc, lat))
    best_before = np.maximum.accumulate(np.concatenate(([-np.inf], acc[order][:-1])))
    candidates = order[acc[order] >= best_before]
    dominated = dominance(acc, lat, spread, candidates).any(axis=0)
    on_front[candidates[~dominated]] = True
    return on_front
