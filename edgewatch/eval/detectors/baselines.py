"""Reference detectors: the floor any real detector must clear.

``null`` never fires (NAB score 0 by construction), ``random`` is uniform
noise drawn as NAB's own random detector draws it (Python's generator
restarted with the same seed for every file), and ``windowed-gaussian`` is
NAB's own baseline: the two-sided Gaussian tail of each value against the
mean and deviation of the last 6400 values, refreshed every 100 values.
"""

from __future__ import annotations

import math
import random

import numpy as np


class NullDetector:
    name = "null"

    def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
        return np.full(len(values), 0.5)


class RandomDetector:
    name = "random"

    def __init__(self, seed: int = 42) -> None:
        self.seed = seed

    def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
        rng = random.Random(self.seed)
        return np.array([rng.uniform(0.0, 1.0) for _ in range(len(values))])


class WindowedGaussianDetector:
    """Scores in [0.5, 1]: ``1 - P(|Z| >= |z|)/2`` where the statistics lag by up to a step."""

    name = "windowed-gaussian"

    def __init__(self, window: int = 6400, step: int = 100) -> None:
        self.window = window
        self.step = step

    def score_series(self, values: np.ndarray, key: str = "", times: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        n = len(x)
        i = np.arange(n)
        his = np.where(i <= self.window, i, self.window + ((i - self.window) // self.step) * self.step)
        mean = np.zeros(n)
        std = np.ones(n)
        # Exact statistics (not running sums) so that a flat line stays exactly flat.
        for hi in np.unique(his):
            if hi == 0:
                continue
            seg = x[max(hi - self.window, 0):hi]
            rows = his == hi
            mean[rows] = seg.mean()
            std[rows] = seg.std()
        std[std == 0.0] = 1e-6
        z = np.abs(x - mean) / std
        tail = np.array([0.5 * math.erfc(v / math.sqrt(2.0)) for v in z])
        out = 1.0 - tail
        out[0] = 0.0
        return out
