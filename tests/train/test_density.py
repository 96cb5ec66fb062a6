"""The Gaussian feature density of the image score: Ledoit-Wolf shrinkage and the whitening the graph applies."""

from __future__ import annotations

import numpy as np
import pytest

from edgewatch.errors import BadInput
from edgewatch.train.density import fit_whitening, ledoit_wolf, mahalanobis_sq


def test_whitening_gives_the_mahalanobis_distance_when_data_are_plenty() -> None:
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(4, 4))
    x = rng.normal(size=(40_000, 4)) @ mix * [1.0, 10.0, 100.0, 0.1] + [5.0, -3.0, 0.0, 1e3]
    w = fit_whitening(x)
    d = x[:50] - x.mean(axis=0)
    exact = np.einsum("ij,jk,ik->i", d, np.linalg.inv(np.cov(x, rowvar=False, bias=True)), d)
    assert w.shrinkage < 0.01
    np.testing.assert_allclose(mahalanobis_sq(x[:50], w), exact, rtol=0.02)
    # squared distances of the training set average the dimension, as for a chi-square
    assert abs(mahalanobis_sq(x, w).mean() - 4.0) < 0.1


def test_few_samples_in_many_dimensions_shrink_towards_the_identity() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 60))  # fewer samples than dimensions: the sample covariance is singular
    cov, weight = ledoit_wolf(x - x.mean(axis=0))
    assert 0.5 < weight <= 1.0
    assert np.linalg.eigvalsh(cov).min() > 0.1
    w = fit_whitening(x)
    far = mahalanobis_sq(x[:1] + 10.0, w)[0]
    assert np.isfinite(far) and far > 5 * mahalanobis_sq(x, w).mean()


def test_a_dead_feature_adds_nothing_and_bad_input_is_refused() -> None:
    rng = np.random.default_rng(2)
    x = np.c_[rng.normal(size=(500, 3)), np.zeros(500)]
    w = fit_whitening(x)
    np.testing.assert_allclose(mahalanobis_sq(x[:5], w), mahalanobis_sq(x[:5, :3], fit_whitening(x[:, :3])), rtol=0.05)
    with pytest.raises(BadInput, match="at least 2"):
        fit_whitening(x[:1])
    with pytest.raises(BadInput, match="NaN"):
        fit_whitening(np.r_[x, [[np.nan] * 4]])
