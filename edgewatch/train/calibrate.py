"""Choosing a threshold from score statistics on normal, noisy and random data.

Three kinds of data are scored with the trained scorer (raw units in, the
same scorer that is exported):

* ``normal``: held-out nominal windows the model never trained on;
* ``noisy``: the same windows plus Gaussian noise of standard deviation
  ``noise_sigma`` times each feature's training range (default 0.05): a
  mild, realistic corruption the detector should catch;
* ``random``: values drawn uniformly in each feature's training range: in
  range, but with no structure; everything should be far over the line.

Threshold rule (:func:`choose_threshold`), stored as ``threshold_method``:

1. ``t = p99.9(normal) * margin`` (default margin 1.5): about one normal
   window in a thousand reaches p99.9, and the margin absorbs the
   difference between held-out and live data, so false alarms stay rare.
2. If ``t`` is not below the median of the noisy scores, the margin would
   hide half of the mild corruptions: take the geometric mean of p99.9
   (normal) and the noisy median instead (halfway on a log scale, where
   these scores live), provided p99.9 is below that median.
3. If even p99.9 (normal) reaches the noisy median, normal and noisy data
   cannot be told apart at that noise level: keep ``t`` and say so.

:func:`drift_reference` summarises the training data for the agent's drift
check (101 quantiles, mean and std per feature).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgewatch.contract import DriftReference, ScoreStats
from edgewatch.errors import BadInput


@dataclass
class CalibrationConfig:
    noise_sigma: float = 0.05  # noise std as a fraction of each feature's training range
    margin: float = 1.5
    normal_quantile: float = 0.999
    seed: int = 0


@dataclass
class Calibration:
    score_stats: dict[str, ScoreStats]
    threshold: float
    threshold_method: str
    separable: bool  # False when normal and noisy data overlap (rule 3)
    samples: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # raw-unit inputs per kind
    scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def table(self) -> str:
        """The score statistics as a text table, with the share of each kind over the threshold."""
        head = f"{'data':<8}{'n':>7}{'mean':>11}{'p50':>11}{'p90':>11}{'p99':>11}{'max':>11}{'over':>8}"
        rows = [head, "-" * len(head)]
        for kind, st in self.score_stats.items():
            over = float(np.mean(self.scores[kind] > self.threshold)) if kind in self.scores else float("nan")
            rows.append(f"{kind:<8}{st.n:>7}{st.mean:>11.4g}{st.p50:>11.4g}{st.p90:>11.4g}{st.p99:>11.4g}"
                        f"{st.max:>11.4g}{over:>8.1%}")
        return "\n".join(rows)


def calibrate(score_fn: Callable[[np.ndarray], np.ndarray], normal: np.ndarray, low: np.ndarray,
              high: np.ndarray, config: CalibrationConfig | None = None) -> Calibration:
    """Score normal, noisy and random samples and choose the threshold from the scores.

    ``normal`` holds raw-unit samples ``[N, ..., F]``; ``low``/``high`` are
    each feature's training range (the noise scale and the random range).
    """
    cfg = config or CalibrationConfig()
    normal = np.asarray(normal, dtype=np.float32)
    if len(normal) == 0:
        raise BadInput("no held-out normal samples to calibrate on: give more data or a shorter window")
    rng = np.random.default_rng(cfg.seed)
    low = np.asarray(low, dtype=np.float32)
    high = np.asarray(high, dtype=np.float32)
    span = np.where(high > low, high - low, 1.0).astype(np.float32)
    samples = {
        "normal": normal,
        "noisy": (normal + rng.normal(0.0, cfg.noise_sigma, normal.shape) * span).astype(np.float32),
        "random": rng.uniform(low, high, normal.shape).astype(np.float32),
    }
    scores = {kind: np.asarray(score_fn(x), dtype=np.float64).ravel() for kind, x in samples.items()}
    for kind, s in scores.items():
        if not np.isfinite(s).all():
            raise BadInput(f"the model produced non-finite scores on {kind} data; retrain it")
    threshold, method, separable = choose_threshold(scores["normal"], scores["noisy"], cfg)
    method += f" (normal: {len(normal)} held-out windows; noisy: sigma {cfg.noise_sigma:g} of the range)"
    stats = {kind: ScoreStats.of(s) for kind, s in scores.items()}
    return Calibration(stats, threshold, method, separable, samples, scores)


def choose_threshold(normal: np.ndarray, noisy: np.ndarray,
                     config: CalibrationConfig | None = None) -> tuple[float, str, bool]:
    """The rule in the module docstring: (threshold, reason in words, separable)."""
    cfg = config or CalibrationConfig()
    q = cfg.normal_quantile
    a = float(np.quantile(normal, q))
    b = float(np.median(noisy))
    t = a * cfg.margin
    label = f"p{q * 100:g} of normal"
    if t < b:
        return t, (f"{label} ({a:.4g}) x margin {cfg.margin:g} = {t:.4g}, "
                   f"below the median of noisy data ({b:.4g})"), True
    if a < b:
        g = math.sqrt(max(a, 1e-30) * b)
        return g, (f"geometric mean of {label} ({a:.4g}) and the median of noisy data ({b:.4g}) = {g:.4g}, "
                   f"because margin {cfg.margin:g} would reach the noisy median"), True
    return t, (f"{label} ({a:.4g}) x margin {cfg.margin:g} = {t:.4g}; WARNING: normal and noisy data overlap "
               f"(noisy median {b:.4g} <= {label}), noise of this size will not be detected"), False


def mixed_samples(calibration: Calibration, n: int = 512, seed: int = 0) -> np.ndarray:
    """Up to ``n`` raw-unit samples, half normal and a quarter each noisy and random.

    Stored in the checkpoint for export: static quantization sees the whole
    input range, and the parity check sees decisions on both sides of the
    threshold (normal data alone would all be under it).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for kind, share in (("normal", 0.5), ("noisy", 0.25), ("random", 0.25)):
        x = calibration.samples[kind]
        k = min(len(x), max(1, int(n * share)))
        parts.append(x[np.sort(rng.choice(len(x), size=k, replace=False))])
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def drift_reference(values: np.ndarray, n_quantiles: int = 101) -> DriftReference:
    """Per-feature summary of training data ``[T, F]`` (raw units) for the agent's KS check."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr.reshape(-1, arr.shape[-1])
    if len(arr) == 0:
        raise BadInput("no training rows to summarise for the drift reference")
    qs = np.quantile(arr, np.linspace(0.0, 1.0, n_quantiles), axis=0)  # [q, F]
    return DriftReference(
        n=int(len(arr)),
        quantiles=[[float(v) for v in qs[:, f]] for f in range(arr.shape[1])],
        mean=[float(v) for v in arr.mean(axis=0)],
        std=[float(v) for v in arr.std(axis=0)],
    )
