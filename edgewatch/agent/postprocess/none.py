"""The ``none`` kind: the graph's score is the decision score."""

from __future__ import annotations

import numpy as np


class Identity:
    """The ``none`` kind: scores pass unchanged."""

    def update_many(self, slots: np.ndarray, scores: np.ndarray, aux: np.ndarray | None = None,
                    times: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64).copy()

    def reset(self, slot: int) -> None:
        return None
