"""A Gaussian density fitted on training features, as a whitening the exported graph can apply.

The squared Mahalanobis distance of a feature vector ``u`` is
``||(u - mean) @ W||^2``; :func:`fit_whitening` returns ``mean`` and ``W``
so that a scorer holds them as buffers and the graph computes the distance
with one MatMul. The covariance is the Ledoit–Wolf shrinkage estimate
(Ledoit & Wolf 2004, the closed-form optimal weight towards a scaled
identity) of the features after each is scaled to unit variance: a few
thousand images do not pin down a few hundred correlated dimensions, and
the plain sample covariance then gives its smallest eigen-directions (noise)
huge weights, so tiny changes such as int8 rounding would move the
distance. Shrinkage needs no tuned constant.

Fails when a feature has no spread at all on the training set (a dead
channel): it then gets unit scale, so it adds nothing while it stays dead
and counts when it wakes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgewatch.errors import BadInput


@dataclass
class Whitening:
    mean: np.ndarray  # [D]
    matrix: np.ndarray  # [D, D]: squared Mahalanobis distance = ||(u - mean) @ matrix||^2
    shrinkage: float  # Ledoit-Wolf weight of the identity target, 0..1
    n: int  # training vectors it was fitted on


def ledoit_wolf(centered: np.ndarray) -> tuple[np.ndarray, float]:
    """Shrunk covariance of already centred rows ``[n, D]`` and the shrinkage weight."""
    n, d = centered.shape
    sample = centered.T @ centered / n
    mu = np.trace(sample) / d
    target_gap = np.sum((sample - mu * np.eye(d)) ** 2) / d
    spread = (np.sum(np.sum(centered ** 2, axis=1) ** 2) / n - np.sum(sample ** 2)) / (n * d)
    weight = 1.0 if target_gap <= 0 else float(np.clip(spread / target_gap, 0.0, 1.0))
    return weight * mu * np.eye(d) + (1.0 - weight) * sample, weight


def fit_whitening(features: np.ndarray) -> Whitening:
    """The Gaussian of ``features [n, D]`` (n >= 2) as a mean and a whitening matrix."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise BadInput(f"a density needs at least 2 feature vectors [n, D], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise BadInput("features for the density contain NaN or inf")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12 * max(1.0, float(np.abs(mean).max())), scale, 1.0)
    cov, weight = ledoit_wolf((x - mean) / scale)
    evals, evecs = np.linalg.eigh(cov)
    evals = np.maximum(evals, 1e-9 * float(evals.max()))
    matrix = (evecs / np.sqrt(evals)) / scale[:, None]
    return Whitening(mean, matrix, weight, len(x))


def mahalanobis_sq(features: np.ndarray, whitening: Whitening) -> np.ndarray:
    """Squared distances of rows ``[n, D]`` (NumPy reference of what the graph computes)."""
    d = (np.asarray(features, dtype=np.float64) - whitening.mean) @ whitening.matrix
    return np.sum(d * d, axis=1)
