"""Per-feature two-sample Kolmogorov-Smirnov tests with a Bonferroni correction.

Drift is declared when any feature's p-value is below ``alpha / n_features``:
the chance of a false alarm over all features is then at most ``alpha``
(Bonferroni holds whatever the dependence between features, at the price of
some power when there are many features; reduce images first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from edgewatch.errors import BadInput, require


@dataclass
class KSResult:
    """Per-feature KS statistics and p-values, and the corrected decision."""

    features: list[str]
    statistic: list[float]
    p_value: list[float]
    alpha: float
    alpha_corrected: float

    @property
    def drifted_features(self) -> list[str]:
        """Features whose p-value is under the corrected level, most significant first."""
        idx = [i for i in np.argsort(self.p_value, kind="stable") if self.p_value[i] < self.alpha_corrected]
        return [self.features[i] for i in idx]

    @property
    def drift(self) -> bool:
        return bool(self.drifted_features)

    def ranked(self) -> list[int]:
        """Feature indices from the most to the least shifted (by KS statistic)."""
        return [int(i) for i in np.argsort(-np.asarray(self.statistic), kind="stable")]


def ks_test(reference: np.ndarray, current: np.ndarray, features: list[str] | None = None,
            alpha: float = 0.05) -> KSResult:
    """Test every column of ``current`` against the same column of ``reference``.

    Uses SciPy's exact p-values for small samples and the asymptotic ones
    for large samples (``method="auto"``).
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.ndim != 2 or cur.ndim != 2 or ref.shape[1] != cur.shape[1]:
        raise BadInput(f"KS needs two [n, n_features] tables with the same columns, got {ref.shape} "
                       f"and {cur.shape}")
    if min(len(ref), len(cur)) < 2:
        raise BadInput("KS needs at least two rows on each side")
    if not 0.0 < alpha < 1.0:
        raise BadInput(f"alpha must be between 0 and 1, got {alpha}")
    n_features = ref.shape[1]
    names = list(features) if features is not None else [f"f{i}" for i in range(n_features)]
    if len(names) != n_features:
        raise BadInput(f"{len(names)} feature names for {n_features} columns")
    res = require("scipy.stats", "drift").ks_2samp(ref, cur, axis=0)
    return KSResult(features=names,
                    statistic=[float(v) for v in np.atleast_1d(res.statistic)],
                    p_value=[float(v) for v in np.atleast_1d(res.pvalue)],
                    alpha=float(alpha), alpha_corrected=float(alpha) / n_features)
