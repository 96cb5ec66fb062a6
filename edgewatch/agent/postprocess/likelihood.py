"""The ``likelihood`` kind: Numenta's anomaly likelihood (Ahmad et al. 2017), per stream.

The graph scores each window on its own; what counts as *unusual* for a
stream depends on that stream's history. This step learns online, per
stream, the distribution of the short-term mean of the raw score and
reports how far in its tail the current short-term mean lies, so a model
file works on any stream without per-stream tuning. It then keeps one alert
per event: a score that does not beat the recent maximum is damped.

Parameters (all optional, defaults in
:class:`~edgewatch.contract.postprocess.LikelihoodParams`):

``short``       rows in the short-term mean of the raw score (10)
``long``        rows of history the distribution is estimated on (8640)
``learning``    rows after a (re)start that only feed the distribution, output 0 (150)
``reestimate``  rows between two estimates of the distribution (100)
``min_std``     floor of the distribution's deviation, in raw-score units (0.05)
``refractory``  rows during which a score must beat the recent maximum (0 = off)
``damp``        factor applied to scores that do not beat it (0.5)
``certain``     raw scores at or above this pass as 1.0 at once (0 = off)
``alert``       an output at or above this level starts a hold (0 = off)
``hold``        rows after such an output whose scores are damped (one alert per event)
``tail``        0: the Gaussian tail of the history's mean and deviation (Numenta's); 1: Student's t, the
                predictive tail of one more value given the history's n values (n - 1 degrees of freedom,
                scale ``s * sqrt(1 + 1/n)``), stricter while the history is short (0)

Why ``tail`` 1: a stream's first rows give the distribution from a few
dozen values, and the Gaussian tail of so few reads an ordinary value as
one in 100,000 far more often than that; NAB scores short files from 15 %
of their length, where those alarms cost (docs/eval.md, eighth round).
The t tail is computed through Wallace's normal approximation
``z = (8v + 1) / (8v + 3) * sqrt(v * ln(1 + t^2 / v))`` (one log and one
square root a row; its output is within 0.006 of the exact tail's from
v = 19, the fewest degrees of freedom the ``novelty`` kind's rungs give).
"""

from __future__ import annotations

import math
from array import array
from collections import deque

import numpy as np

from edgewatch.agent.postprocess.base import PerStream
from edgewatch.contract.postprocess import LikelihoodParams, Tail

_LOG_FLOOR = math.log(1e-10)


def log_likelihood(likelihood: float) -> float:
    """Map a likelihood near 1 onto [0, 1] so that 0.999 and 0.99999 are far apart."""
    return min(max(math.log(1.0000000001 - likelihood) / _LOG_FLOOR, 0.0), 1.0)


def student_as_normal(t: float, dof: int) -> float:
    """The normal deviate with (about) the tail of Student's ``t`` with ``dof`` degrees of freedom (Wallace, 1959).

    0 without degrees of freedom: one value says nothing of the spread.
    """
    if dof < 1:
        return 0.0
    z = (8.0 * dof + 1.0) / (8.0 * dof + 3.0) * math.sqrt(dof * math.log1p(t * t / dof))
    return z if t > 0 else -z


def overlap_bias(n: int, m: int) -> float:
    """E[s^2] / sigma^2 for ``n`` consecutive values correlated over ``m`` rows (triangular autocorrelation).

    Why: a statistic of the last ``m`` values shares ``m - 1`` of them with
    the next row's, and the sample variance of a short run of such values
    is low (the textbook bias of the variance of an autocorrelated series,
    ``1 - 2/(n - 1) * sum_k (1 - k/n) rho_k``, with ``rho_k = 1 - k/m``).
    1 for ``m`` <= 1; never below ``1/n``.
    """
    if m <= 1 or n <= 1:
        return 1.0
    k = np.arange(1, min(m, n))
    s = float(np.sum((1.0 - k / n) * (1.0 - k / m)))
    return max(1.0 - 2.0 * s / (n - 1), 1.0 / n)


class _Stream:
    __slots__ = ("n", "short", "short_sum", "history", "hcap", "hpos", "mean", "std", "dof", "since", "recent",
                 "held")

    def __init__(self, p: LikelihoodParams) -> None:
        self.n = 0
        self.short: deque[float] = deque(maxlen=int(p.short))
        self.short_sum = 0.0
        # the last ``long`` short-term means as C doubles (8 bytes each; a deque of floats took ~45): it grows
        # to hcap values, then is a ring whose oldest value is at hpos
        self.history = array("d")
        self.hcap = int(p.long)
        self.hpos = 0
        self.mean = 0.0
        self.std = 0.0
        self.dof = 0  # the Student tail's degrees of freedom (history values - 1 at the last estimate)
        self.since = 0  # rows since the last estimate
        self.recent: deque[float] = deque(maxlen=max(int(p.refractory), 1))
        self.held = 0  # rows of hold left

    def remember(self, value: float) -> None:
        if len(self.history) < self.hcap:
            self.history.append(value)
        else:
            self.history[self.hpos] = value
            self.hpos = self.hpos + 1 if self.hpos + 1 < self.hcap else 0

    def past(self) -> np.ndarray:
        """The remembered values, oldest first (a copy: the same array, in the same order, as a deque gave)."""
        h = np.frombuffer(self.history, dtype=np.float64)
        return np.concatenate((h[self.hpos:], h[:self.hpos])) if self.hpos else h.copy()


class Likelihood(PerStream):
    """Numenta-style anomaly likelihood, per stream, with an optional refractory damping."""

    def __init__(self, params: LikelihoodParams, overlap: int = 1) -> None:
        """``overlap`` > 1: the scores are correlated over that many rows (:func:`overlap_bias` widens the
        spread); the ``novelty`` kind passes a rung's shape length with ``overlap`` 1 on its card."""
        super().__init__()
        self.p = params
        self.student = Tail(int(params.tail)) is Tail.STUDENT
        self.overlap = int(overlap)

    def _new_state(self) -> _Stream:
        return _Stream(self.p)

    def _one(self, st: _Stream, x: float) -> float:
        p = self.p
        if not math.isfinite(x):
            return 0.0
        st.n += 1
        if len(st.short) == st.short.maxlen:
            st.short_sum -= st.short[0]
        st.short.append(x)
        st.short_sum += x
        avg = st.short_sum / len(st.short)
        if st.n <= p.learning:  # learn the distribution, say nothing yet
            st.remember(avg)
            return 0.0
        if st.std == 0.0 or st.since >= p.reestimate:
            h = st.past() if st.history else np.array([avg])
            st.mean = float(h.mean())
            widen = 1.0 / math.sqrt(overlap_bias(h.size, self.overlap)) if self.overlap > 1 else 1.0
            if self.student:
                st.dof = h.size - 1
                st.std = max(float(h.std(ddof=1)) * widen if st.dof else 0.0, p.min_std) * math.sqrt(1.0 + 1.0 / h.size)
            else:
                st.std = max(float(h.std()) * widen, p.min_std)
            del h  # no view of the history may outlive this (it still grows)
            st.since = 0
        st.since += 1
        st.remember(avg)
        z = (avg - st.mean) / st.std
        if self.student:
            z = student_as_normal(z, st.dof)
        tail = 0.5 * math.erfc(abs(z) / math.sqrt(2.0)) if z > 0 else 0.5
        value = log_likelihood(1.0 - tail)
        if p.certain and x >= p.certain:
            value = 1.0
        if p.refractory:
            peak = max(st.recent) if st.recent else 0.0
            st.recent.append(value)
            if value <= peak:
                value *= p.damp
        if st.held > 0:
            st.held -= 1
            value *= p.damp
        elif p.alert and value >= p.alert:
            st.held = int(p.hold)
        return value
