"""A Gaussian-process surrogate of validation accuracy over the joint space (scikit-learn).

A Matern 5/2 kernel with one length scale per input column learns which params matter and how
smoothly accuracy varies along each, from few trials; a white-noise term absorbs the scatter
of repeated trainings. Inputs are the unit-cube rows of `hpo.search.encoding`.

Runs that did not train (a too-large learning rate, a diverged loss) score near chance, far
below the rest: a stationary model would bend its whole surface to fit those cliffs. So
accuracies below a floor (the lower quartile minus its distance to the median) are lifted to
it: they still read as bad, without deciding the shape of the good region.

The kernel's params are fitted by maximum a posteriori rather than maximum likelihood: with a
few dozen trials in five or more dimensions, the likelihood alone often prefers very short
length scales (every trial its own island, the model back to the prior mean between them) or
noise that explains everything. Weak priors (Optuna's GPSampler uses the same ones: length
scales near the unit cube's size, a modest signal scale, little noise) keep the fit smooth.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

_RESTARTS = 1


def log_prior(theta: np.ndarray) -> tuple[float, np.ndarray]:
    """Log prior density (up to a constant) of the kernel's log-params and its gradient.

    `theta` is scikit-learn's vector for `ConstantKernel * Matern + WhiteKernel`: the log signal
    variance, one log length scale per column, the log noise variance. Gamma(2, 1) on the
    signal variance, Gamma(1.1, 30) on the noise variance (of standardized accuracy), and
    -0.1 (l^2 + 1/l^2) on each length scale l, which is largest at l = 1.
    """
    signal, scales, noise = theta[0], theta[1:-1], theta[-1]
    value = (signal - np.exp(signal)) + (0.1 * noise - 30 * np.exp(noise))
    value -= 0.1 * np.sum(np.exp(2 * scales) + np.exp(-2 * scales))
    gradient = np.concatenate(
        [
            [1 - np.exp(signal)],
            -0.2 * (np.exp(2 * scales) - np.exp(-2 * scales)),
            [0.1 - 30 * np.exp(noise)],
        ]
    )
    return float(value), gradient


def _maximum_a_posteriori(
    objective: Callable[..., tuple[float, np.ndarray]],
    initial_theta: np.ndarray,
    bounds: np.ndarray,
) -> tuple[np.ndarray, float]:
    """scikit-learn's optimizer hook: L-BFGS-B on minus the log posterior of the kernel's
    params (`objective` is minus the log marginal likelihood and its gradient)."""
    from scipy.optimize import minimize

    def minus_log_posterior(theta: np.ndarray) -> tuple[float, np.ndarray]:
        likelihood, gradient = objective(theta, eval_gradient=True)
        prior, prior_gradient = log_prior(theta)
        return likelihood - prior, gradient - prior_gradient

    result = minimize(
        minus_log_posterior, initial_theta, jac=True, method="L-BFGS-B", bounds=bounds
    )
    return result.x, float(result.fun)


def robust_targets(accuracy: np.ndarray) -> np.ndarray:
    """`accuracy` with values far below the bulk lifted to a floor (see the module doc)."""
    if len(accuracy) < 4:
        return accuracy
    lower, median = np.quantile(accuracy, [0.25, 0.5])
    return np.maximum(accuracy, lower - (median - lower))


@contextmanager
def quietly_on_one_thread() -> Iterator[None]:
    """One BLAS thread (the matrices are small: on a shared 2-core machine, threads made a fit
    50 times slower) and no warnings about length scales at their bounds (a param that does
    not matter has an unbounded one)."""
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


class GaussianAccuracy:
    """Fit on (features, accuracy); predict a mean and a standard deviation."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.model = None
        self.features = np.zeros((0, 0))
        self.targets = np.zeros(0)

    def fit(self, features: np.ndarray, accuracy: np.ndarray) -> GaussianAccuracy:
        # Imported here: scikit-learn takes a second to import, and only this sampler needs it.
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        width = features.shape[1]
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(
            length_scale=np.full(width, 0.5), length_scale_bounds=(1e-2, 1e2), nu=2.5
        ) + WhiteKernel(1e-2, (1e-6, 1.0))
        self.model = GaussianProcessRegressor(
            kernel,
            normalize_y=True,
            optimizer=_maximum_a_posteriori,
            n_restarts_optimizer=_RESTARTS,
            random_state=self.seed,
        )
        self.features, self.targets = features, robust_targets(accuracy)
        with quietly_on_one_thread():
            self.model.fit(self.features, self.targets)
        return self

    def fantasize(self, features: np.ndarray) -> GaussianAccuracy:
        """The same model with `features` observed at their predicted mean (pending trials):
        their uncertainty shrinks, so another worker looks elsewhere."""
        from sklearn.base import clone

        assert self.model is not None
        if len(features) == 0:
            return self
        mean, _ = self.predict(features)
        # The fitted kernel is kept (no new fit of its params): only the data grows.
        fantasy = GaussianAccuracy(self.seed)
        fantasy.model = clone(self.model).set_params(kernel=self.model.kernel_, optimizer=None)
        fantasy.features = np.vstack([self.features, features])
        fantasy.targets = np.concatenate([self.targets, mean])
        with quietly_on_one_thread():
            fantasy.model.fit(fantasy.features, fantasy.targets)
        return fantasy

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.model is not None
        with quietly_on_one_thread():
            mean, std = self.model.predict(features, return_std=True)
        return mean, std
