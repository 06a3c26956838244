"""Expected hypervolume improvement when one objective is known exactly.

Points are (accuracy, latency): accuracy is maximized, latency minimized. A candidate's latency
is known before training (it was probed); only its accuracy is uncertain, with a Gaussian
predictive distribution N(mean, std). Then the improvement of the dominated area is a sum over
the segments of the current front's staircase to the right of the candidate, and its
expectation has a closed form per segment:

    EHVI = sum_k width_k * E[max(min(A, top) - level_k, 0)],
    E[max(min(A, top) - c, 0)] = excess(c) - excess(top)  for c <= top,
    excess(c) = E[max(A - c, 0)] = (mean - c) * Phi(z) + std * phi(z),  z = (mean - c) / std.

`top` is 100 %, as no accuracy can end above it: without that bound, an uncertain candidate
near the top (a table where the best runs reach 100 %) would be credited with gains it cannot
make, and the search would drift to wherever the model knows least. Where 100 % lies, and the
reference level of accuracy below every configuration's, are read from the values observed
(`AccuracyScale`): hpo records fractions, but a table may give percentages, and an objective
that is not an accuracy at all (minus an error, ...) has no known ceiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

# Below the lowest value of an objective that is not an accuracy, the reference level sits
# this share of the values' spread lower, so that the worst trial still dominates some area.
REFERENCE_SPREAD = 0.1


@dataclass(frozen=True)
class AccuracyScale:
    """The reference level of accuracy (no trial falls below it) and the most a candidate can
    reach (`math.inf` when unknown)."""

    reference: float = 0.0
    ceiling: float = 1.0

    @classmethod
    def of(cls, observed: np.ndarray) -> AccuracyScale:
        """A fraction (every value in [0, 1]) ends at 1 and a percentage (in [0, 100]) at 100,
        both above 0; any other objective has no ceiling and a reference below its lowest
        value."""
        low, high = float(np.min(observed)), float(np.max(observed))
        if low >= 0.0 and high <= 1.0:
            return cls(0.0, 1.0)
        if low >= 0.0 and high <= 100.0:
            return cls(0.0, 100.0)
        spread = high - low
        return cls(
            low - REFERENCE_SPREAD * (spread if spread > 0 else max(abs(low), 1.0)), math.inf
        )


def staircase(points: np.ndarray, reference: tuple[float, float]) -> np.ndarray:
    """The non-dominated points inside the reference box, fastest first (accuracy rising)."""
    ref_accuracy, ref_latency = reference
    inside = points[(points[:, 0] > ref_accuracy) & (points[:, 1] < ref_latency)]
    if len(inside) == 0:
        return inside.reshape(0, 2)
    ordered = inside[np.lexsort((-inside[:, 0], inside[:, 1]))]
    front, best = [], -np.inf
    for accuracy, latency in ordered:
        if accuracy > best:
            front.append((accuracy, latency))
            best = accuracy
    return np.array(front)


def hypervolume(points: np.ndarray, reference: tuple[float, float]) -> float:
    """Area dominated by `points` up to `reference` = (accuracy, latency)."""
    front = staircase(points, reference)
    if len(front) == 0:
        return 0.0
    right = np.append(front[1:, 1], reference[1])
    return float(np.sum((right - front[:, 1]) * (front[:, 0] - reference[0])))


def expected_improvement(
    front_points: np.ndarray,
    latency: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    reference: tuple[float, float],
    ceiling: float = 1.0,
) -> np.ndarray:
    """EHVI of each candidate (known `latency`, accuracy ~ N(mean, std), at most `ceiling`) over
    the front."""
    ref_accuracy, ref_latency = reference
    front = staircase(front_points, reference)
    # Segment k spans [start_k, end_k) of latency with the front's accuracy level_k there:
    # below the fastest front point the level is the reference accuracy.
    starts = np.concatenate([[-np.inf], front[:, 1]])
    ends = np.concatenate([front[:, 1], [ref_latency]])
    levels = np.concatenate([[ref_accuracy], front[:, 0]])
    latency = np.asarray(latency, dtype=float)[:, None]
    widths = np.clip(ends[None, :] - np.maximum(latency, starts[None, :]), 0.0, None)
    mean = np.asarray(mean, dtype=float)[:, None]
    sigma = np.maximum(np.asarray(std, dtype=float), 1e-12)[:, None]
    gain = _expected_excess(mean, sigma, levels[None, :])
    if math.isfinite(ceiling):
        gain -= _expected_excess(mean, sigma, ceiling)
    return np.sum(widths * np.clip(gain, 0.0, None), axis=1)


def expected_capped(mean: np.ndarray, std: np.ndarray, ceiling: float = 1.0) -> np.ndarray:
    """E[min(A, ceiling)] for A ~ N(mean, std): the model's estimate of an accuracy, which
    cannot end above the ceiling, however far past it the model's mean has strayed."""
    mean = np.asarray(mean, dtype=float)
    if not math.isfinite(ceiling):
        return mean
    sigma = np.maximum(np.asarray(std, dtype=float), 1e-12)
    # min(A, c) = c - max(c - A, 0), and c - A ~ N(c - mean, sigma).
    return ceiling - _expected_excess(-mean, sigma, -ceiling)


def _expected_excess(mean: np.ndarray, sigma: np.ndarray, level: np.ndarray | float) -> np.ndarray:
    """E[max(A - level, 0)] for A ~ N(mean, sigma)."""
    gap = mean - level
    z = gap / sigma
    # The standard normal's cdf and pdf (scipy.special: scipy.stats takes a second to import).
    return gap * ndtr(z) + sigma * np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
