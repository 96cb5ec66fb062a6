"""The ``novelty`` post-process kind: subsequence novelty of a stream's values, then Numenta's likelihood.

Why a post-process and not a graph: an agent scores a stream only once
the model's window is full. With the novelty distance in a 384-row graph,
every other part of the file (the ``levels`` step) was silent until row
383 too, although levels knows its range after 256 rows and NAB windows
start as early as row 303. A file whose graph passes each value through
(window 1) and whose post-process keeps the history lets each part speak
as soon as it can; the distance itself is the same statistic as the
graph's (:func:`edgewatch.eval.detectors.novelty.novelty_scores`, one
scale).

What it computes per stream: once ``span`` values are known, the RMS
distance between the last ``m`` values and the nearest earlier stretch of
``m`` values that ends before them within the last ``span`` (a matrix-
profile-like nearest-neighbour distance, in the series' units); that
distance is fed to the ``likelihood`` step (same parameters, same state),
which normalises it per stream. Before ``span`` values it outputs 0 and
learns nothing. Memory per stream: ``span`` floats plus the likelihood's
history. Cost per value: one ``(span - 2m + 1) x m`` array difference
(about 14,000 multiply-adds at the defaults).

Fails when: a stream's period is longer than ``span`` (ordinary parts of
the cycle look new), or a drift is slow (each stretch resembles the one
before). A non-finite value is skipped (output 0, not remembered).
NumPy and the standard library only (this runs in the agent).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgewatch.agent.postprocess.base import PerStream
from edgewatch.agent.postprocess.likelihood import Likelihood, _Stream
from edgewatch.contract.postprocess import NoveltyParams


class _NoveltyStream:
    __slots__ = ("buf", "n", "lik")

    def __init__(self, span: int, lik: _Stream) -> None:
        self.buf = np.zeros(2 * span)  # the last span values are buf[n - span:n] (shifted down when full)
        self.n = 0
        self.lik = lik


class Novelty(PerStream):
    """Per stream: nearest-neighbour distance of the last ``m`` values within ``span``, then the likelihood."""

    def __init__(self, params: NoveltyParams) -> None:
        super().__init__()
        self.p = params
        self.m, self.span = int(params.m), int(params.span)
        self.lik = Likelihood(params.likelihood())

    def _new_state(self) -> _NoveltyStream:
        return _NoveltyStream(self.span, self.lik._new_state())

    def distance(self, window: np.ndarray) -> float:
        """The statistic on the last ``span`` values (oldest first)."""
        m, span = self.m, self.span
        subs = sliding_window_view(window[:span - m], m)  # stretches ending before the last m values start
        d = subs - window[span - m:]
        return math.sqrt(float(np.min(np.einsum("ij,ij->i", d, d))) / m)

    def _one(self, st: _NoveltyStream, x: float) -> float:
        if not math.isfinite(x):
            return 0.0
        span = self.span
        if st.n == st.buf.size:
            st.buf[:span] = st.buf[span:]
            st.n = span
        st.buf[st.n] = x
        st.n += 1
        if st.n < span:
            return 0.0
        return self.lik._one(st.lik, self.distance(st.buf[st.n - span:st.n]))

