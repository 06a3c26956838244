"""The Gaussian process of accuracy (hpo/search/gaussian_process.py): its kernel params are
fitted by maximum a posteriori, with weak priors."""

from __future__ import annotations

import numpy as np
import pytest

from hpo.search.gaussian_process import log_prior


@pytest.mark.parametrize("seed", range(5))
def test_the_prior_gradient_is_the_derivative_of_the_prior(seed: int) -> None:
    theta = np.random.default_rng(seed).uniform(-3, 3, size=6)
    _, gradient = log_prior(theta)
    step = 1e-6
    numeric = [
        (log_prior(theta + step * unit)[0] - log_prior(theta - step * unit)[0]) / (2 * step)
        for unit in np.eye(len(theta))
    ]
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-6)


def test_the_prior_prefers_unit_length_scales_and_little_noise() -> None:
    # theta = (log signal variance, log length scale, log noise variance)
    scales = np.linspace(-3, 3, 61)
    best_scale = scales[np.argmax([log_prior(np.array([0.0, s, -3.0]))[0] for s in scales])]
    assert best_scale == pytest.approx(0.0)  # length scale 1
    noises = np.linspace(-10, 1, 111)
    best_noise = noises[np.argmax([log_prior(np.array([0.0, 0.0, n]))[0] for n in noises])]
    assert np.exp(best_noise) == pytest.approx(0.1 / 30, rel=0.1)  # Gamma(1.1, 30)'s mode
