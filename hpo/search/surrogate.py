"""A surrogate of validation accuracy: an extremely randomized trees ensemble (scikit-learn).

Trees handle the mixed, conditional inputs of an architecture space (one-hot choices, ranged
numbers, "does not apply" markers) without scaling, fit in milliseconds on a study's trials, and
the spread of their predictions is a usable uncertainty for expected improvement.
"""

from __future__ import annotations

import numpy as np

_TREES = 128


class AccuracySurrogate:
    """Fit on (features, accuracy) pairs; predict a mean and a standard deviation."""

    def __init__(self, seed: int | None) -> None:
        # Imported here: scikit-learn takes a second to import, and only this sampler needs it.
        from sklearn.ensemble import ExtraTreesRegressor

        self.model = ExtraTreesRegressor(
            n_estimators=_TREES, min_samples_leaf=1, random_state=seed, n_jobs=1
        )
        self.noise = 0.0

    def fit(self, features: np.ndarray, accuracy: np.ndarray) -> AccuracySurrogate:
        """Fit the ensemble; the noise floor is the spread of repeated measurements."""
        self.model.fit(features, accuracy)
        self.noise = _replicate_std(features, accuracy)
        return self

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the trees' predictions (at least the noise floor)."""
        per_tree = np.stack([tree.predict(features) for tree in self.model.estimators_])
        std = np.sqrt(per_tree.var(axis=0) + self.noise**2)
        return per_tree.mean(axis=0), std


def _replicate_std(features: np.ndarray, accuracy: np.ndarray) -> float:
    """Pooled standard deviation of accuracies measured more than once at the same inputs."""
    groups: dict[bytes, list[float]] = {}
    for row, value in zip(features, accuracy, strict=True):
        groups.setdefault(row.tobytes(), []).append(float(value))
    deviations = [np.var(v, ddof=1) for v in groups.values() if len(v) > 1]
    return float(np.sqrt(np.mean(deviations))) if deviations else 0.0
