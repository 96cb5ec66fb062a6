"""SKAB's two scores: the point-wise ``binary`` metric and its changepoint NAB variant.

Both follow the definitions of SKAB ``core/metrics.py`` (``chp_score``),
re-implemented here with NumPy only:

``binary``: TP, FP, FN, TN summed over the test rows of every file, then
F1 = TP / (TP + (FN + FP) / 2), FAR = FP / (FP + TN) in %, MAR = FN / (FN + TP)
in %. (SKAB rounds F1 to 2 places and the rates to 2 decimals when it
prints; the figures here are unrounded and printed the same way.)

``nab`` (changepoint detection): each true changepoint ``t`` gets the
detection window ``[t, t + 60 s]`` (SKAB's ``window_width='60S'``,
``anomaly_window_destination='righter'``; where two windows overlap the
right one starts where the left one ends). In a window, the first
predicted changepoint earns ``A_fp + (A_tp - A_fp) / 2 * (1 - tanh(x) /
tanh(pi / 2))`` with ``x`` going from ``-pi/2`` at the window's start to
``pi/2`` at its end (1000 steps), a window without one costs ``A_fn``, and
every predicted changepoint outside all windows costs ``A_fp``. Summed
over files and normalised: 100 x (score - null) / (perfect - null), null =
every window missed, perfect = every window hit at its start. Profiles as
SKAB's table: standard (1, -0.11, -1), low FP (1, -0.22, -1), low FN (1,
-0.11, -2) for (A_tp, A_fp, A_fn).

An outlier detector's predicted changepoints are the rows where its 0/1
prediction changes (an episode's start and end, exactly what the agent
alerts on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

NAB_WINDOW_SECONDS = 60
NAB_PROFILES: dict[str, tuple[float, float, float]] = {  # (A_tp, A_fp, A_fn)
    "standard": (1.0, -0.11, -1.0),
    "low FP": (1.0, -0.22, -1.0),
    "low FN": (1.0, -0.11, -2.0),
}
_STEPS = 1000


@dataclass
class Binary:
    """Point-wise counts and SKAB's three figures (F1 as a fraction, FAR and MAR in %)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, predicted: np.ndarray, truth: np.ndarray) -> Binary:
        p, y = np.asarray(predicted).astype(bool), np.asarray(truth).astype(bool)
        if p.shape != y.shape:
            raise ValueError(f"{p.shape} predictions for {y.shape} labels")
        return cls(int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum()), int((~p & ~y).sum()))

    def __add__(self, other: Binary) -> Binary:
        return Binary(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def f1(self) -> float:
        denom = self.tp + (self.fn + self.fp) / 2
        return self.tp / denom if denom else float("nan")

    @property
    def far(self) -> float:
        return 100.0 * self.fp / (self.fp + self.tn) if self.fp + self.tn else float("nan")

    @property
    def mar(self) -> float:
        return 100.0 * self.fn / (self.fn + self.tp) if self.fn + self.tp else float("nan")

    @property
    def rows(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def changepoints_of(predicted: np.ndarray) -> np.ndarray:
    """Rows where a 0/1 prediction changes (the first row counts when it is 1)."""
    p = np.asarray(predicted).astype(np.int8)
    return np.flatnonzero(np.diff(np.r_[np.int8(0), p]) != 0)


def detection_windows(times: np.ndarray, changepoints: np.ndarray,
                      width: float = NAB_WINDOW_SECONDS) -> list[tuple[float, float]]:
    """``[t, t + width]`` per true changepoint (seconds); an overlapping right window starts where the left ends."""
    wins = [[float(times[i]), float(times[i]) + width] for i in np.flatnonzero(np.asarray(changepoints))]
    for a, b in zip(wins, wins[1:]):
        if a[1] >= b[0]:
            b[0] = a[1]
    return [(a, b) for a, b in wins]


def _tp_value(t: float, start: float, end: float, a_tp: float, a_fp: float) -> float:
    x = np.linspace(-math.pi / 2, math.pi / 2, _STEPS)
    y = (a_tp - a_fp) / 2 * -np.tanh(x) / math.tanh(math.pi / 2) + (a_tp - a_fp) / 2 + a_fp
    event = int((t - start) / (end - start) * _STEPS) if end > start else 0
    return float(y[min(event, _STEPS - 1)])


def nab_file(times: np.ndarray, true_cp: np.ndarray, predicted_cp_times: np.ndarray,
             profile: tuple[float, float, float]) -> tuple[float, float, float]:
    """(score, null, perfect) of one file for one profile; ``times`` in seconds, one per row."""
    a_tp, a_fp, a_fn = profile
    wins = detection_windows(times, true_cp)
    pred = np.sort(np.asarray(predicted_cp_times, dtype=np.float64))
    score = 0.0
    inside = np.zeros(len(pred), dtype=bool)
    for start, end in wins:
        hit = (pred >= start) & (pred <= end)
        inside |= hit
        score += _tp_value(float(pred[hit][0]), start, end, a_tp, a_fp) if hit.any() else a_fn
    score += a_fp * int((~inside).sum())
    return score, len(wins) * a_fn, len(wins) * a_tp


def nab_scores(files: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Normalised NAB score per profile over ``(times_s, true_changepoint, predicted_0/1)`` per file."""
    out = {}
    for name, prof in NAB_PROFILES.items():
        s = n = p = 0.0
        for times, true_cp, predicted in files:
            got = nab_file(times, true_cp, np.asarray(times)[changepoints_of(predicted)], prof)
            s, n, p = s + got[0], n + got[1], p + got[2]
        out[name] = 100.0 * (s - n) / (p - n) if p != n else float("nan")
    return out


def seconds_of(datetimes: Sequence[str]) -> np.ndarray:
    """SKAB's ``YYYY-MM-DD hh:mm:ss`` strings as float seconds since the epoch."""
    stamps = np.array([d.strip().replace(" ", "T") for d in datetimes], dtype="datetime64[s]")
    return stamps.astype(np.int64).astype(np.float64)
