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

With ``min_span`` > 0 the span is *stepped*: a stream's first rows are
scored at a short span, and the span grows with the history up to
``span``. The ladder is ``span``, ``span / ratio``, ... down to
``min_span``; each step has its own shape length ``m * span_k / span`` and its
own likelihood whose learning, hold and refractory rows are the given
ones times ``span_k / span`` (at least 20 learning rows and 3 refractory
rows). The largest step whose span and learning fit in the rows seen so
far speaks; a step is dropped once the next one speaks. Why: NAB scores
a file from 15 % of its length on, and a detector that needs 384 + 100
rows before it says anything misses every anomaly of a short or coarse
stream (an hourly file of 1,600 rows is scored from row 240). Measured on
perturbed copies of the NAB folder (docs/eval.md, fifth round), the
default ladder (48 doubling to 1536) against one 384-row span: resampled
to hourly 47.8 vs 36.5, mean of 8 perturbed copies 53.7 vs 49.3, the
unperturbed folder 78.1 vs 75.9.

What it computes per stream: once ``span`` values are known, the RMS
distance between the last ``m`` values and the nearest earlier stretch of
``m`` values that ends before them within the last ``span`` (a matrix-
profile-like nearest-neighbour distance, in the series' units); that
distance is fed to the ``likelihood`` step (same parameters, same state),
which normalises it per stream. Before ``span`` values it outputs 0 and
learns nothing. Memory per stream: ``span`` floats plus the likelihood's
history. Cost per value: one ``(span - 2m + 1) x m`` array difference
(about 14,000 multiply-adds at the defaults).

Per stream (:mod:`.sampling`, off unless the card asks): ``m_seconds``
sets the top shape length from the stream's own interval (at most ``m``
rows; the rungs below keep the ladder's proportion), and ``count_rows``
reads a count stream through Anscombe's transform. Why: the top rung's
192 rows are 16 hours at 5 minutes but 8 days hourly, where an anomaly of
a few hours is diluted (docs/eval.md, sixth round). The spans stay in rows.

With ``handover`` 1 (:class:`~edgewatch.contract.postprocess.Handover`) a
rung that takes over starts with the rows of hold left on the rung it
replaces. Why: on a short or coarse stream the takeovers fall in the
scored rows, and a fresh rung alarmed again on the event the one before
had just alarmed on (docs/eval.md, tenth round: hourly copies 58.84 →
62.00).

In a ``max`` file with ``alert`` (:mod:`.max`), :meth:`Novelty.hold_value`
is called after a row the file alerted on: the speaking rung holds for
the ``m - 1`` rows that follow, while the alerted value is still inside
its latest stretch (rows already held keep their longer hold). Why: a
``levels`` alarm on one value was followed by this kind's alarm on the
same value a few rows later, a second alert for one event (docs/eval.md,
thirteenth round).

With ``overlap`` 1 (:class:`~edgewatch.contract.postprocess.Overlap`)
each rung's likelihood widens its spread by the bias of the sample
variance of distances correlated over the rung's ``m`` rows
(:func:`~edgewatch.agent.postprocess.likelihood.overlap_bias`). Why: a
rung speaks after about two shape lengths of distances, whose spread is
then about 0.8 of the true one, and its first 100 rows alarmed on
ordinary shapes (docs/eval.md, fourteenth round).

Fails when: a stream's period is longer than ``span`` (ordinary parts of
the cycle look new), or a drift is slow (each stretch resembles the one
before). A non-finite value is skipped (output 0, not remembered).
NumPy and the standard library only (this runs in the agent).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgewatch.agent.postprocess.likelihood import Likelihood, _Stream
from edgewatch.agent.postprocess.sampling import SampledPerStream, Sampling
from edgewatch.contract.postprocess import Handover, NoveltyParams, Overlap


class _Step:
    """One rung of the ladder: its shape length, span, lags, likelihood step and the row from which it speaks."""

    __slots__ = ("m", "span", "lags", "lik", "speaks")

    def __init__(self, m: int, span: int, lik: Likelihood) -> None:
        self.m, self.span, self.lik = m, span, lik
        self.lags = np.arange(m, span - m + 1)  # the earlier stretch ends ``lag`` rows before the last value
        self.speaks = span - 1 + int(lik.p.learning)  # 0-based row of its first output


class _Rung:
    """A stream's state on one rung: its squared distances per lag (updated row by row) and its likelihood."""

    __slots__ = ("d2", "age", "lik")

    def __init__(self, lik: _Stream) -> None:
        self.d2: np.ndarray | None = None
        self.age = 0  # rows since d2 was computed from scratch
        self.lik = lik


class _NoveltyStream:
    __slots__ = ("steps", "buf", "n", "seen", "rungs", "rung")

    def __init__(self, steps: list[_Step], span: int, rungs: list[_Rung]) -> None:
        self.steps = steps  # the ladder for this stream's shape length
        self.buf = np.zeros(2 * (span + 1))  # the last span + 1 values end at buf[n - 1] (shifted down when full)
        self.n = 0  # values in buf
        self.seen = 0  # finite values of the stream so far
        self.rungs: list[_Rung | None] = list(rungs)  # None once dropped
        self.rung = 0  # the lowest rung still computed


class Novelty(SampledPerStream):
    """Per stream: nearest-neighbour distance of the last ``m`` values within ``span`` (stepped), then the likelihood.

    The squared distances to every earlier stretch are kept per lag and
    updated with the one value that enters and the one that leaves each
    stretch (O(span) a row instead of O(span * m)), and recomputed from
    scratch every ``m`` rows so that rounding cannot build up.
    """

    def __init__(self, params: NoveltyParams) -> None:
        super().__init__(params)
        self.p = params
        self.span = int(params.span)
        self._ladders: dict[int, list[_Step]] = {}  # top shape length -> its ladder, shared by the streams
        self.corrected = Overlap(int(params.overlap)) is Overlap.CORRECTED
        self.steps = self._ladder_for(int(params.m))
        self.carry_hold = Handover(int(params.handover)) is Handover.HOLD

    def _ladder_for(self, m: int) -> list[_Step]:
        steps = self._ladders.get(m)
        if steps is None:
            p = replace(self.p, m=float(m))
            steps = self._ladders[m] = [_Step(mk, k, Likelihood(p.likelihood(k / self.span), mk if self.corrected else 1))
                                        for mk, k in p.ladder()]
        return steps

    def _state_for(self, sampling: Sampling) -> _NoveltyStream:
        steps = self._ladder_for(self.p.m_for(sampling.interval))
        return _NoveltyStream(steps, self.span, [_Rung(s.lik._new_state()) for s in steps])

    @staticmethod
    def _from_scratch(window: np.ndarray, m: int) -> np.ndarray:
        """Squared distances of the last ``m`` values to the stretch ending ``lag`` rows earlier, lag = m..span-m."""
        span = len(window)
        subs = sliding_window_view(window[:span - m], m)[::-1]  # the stretch ending lag rows back, lag = m, m+1, ...
        d = subs - window[span - m:]
        return np.einsum("ij,ij->i", d, d)

    def _one(self, st: _NoveltyStream, x: float) -> float:
        if not math.isfinite(x):
            return 0.0
        keep = self.span + 1
        if st.n == st.buf.size:
            st.buf[:keep] = st.buf[st.n - keep:]
            st.n = keep
        st.buf[st.n] = x
        st.n += 1
        st.seen += 1
        return self._ladder(st, st.seen - 1)

    def hold_value(self, slot: int) -> None:
        """The stream's latest value belonged to an alert: hold the speaking rung while it stays in the stretch."""
        st = self._streams.get(int(slot))
        st = getattr(st, "inner", st)  # a stream whose sampling is decided, or one that decides none
        if not isinstance(st, _NoveltyStream):
            return  # unknown or still buffering: nothing speaks yet
        step, rung = st.steps[st.rung], st.rungs[st.rung]
        if rung is not None and st.seen - 1 >= step.speaks:
            rung.lik.held = max(rung.lik.held, step.m - 1)

    def _squared(self, st: _NoveltyStream, step: _Step, rung: _Rung) -> np.ndarray:
        m, buf, n = step.m, st.buf, st.n
        if rung.d2 is None or rung.age >= m:
            rung.d2 = self._from_scratch(buf[n - step.span:n], m)
            rung.age = 0
        else:
            lags = step.lags
            new = buf[n - 1] - buf[n - 1 - lags]
            old = buf[n - 1 - m] - buf[n - 1 - m - lags]
            rung.d2 += new * new - old * old
            rung.age += 1
        return rung.d2

    def _ladder(self, st: _NoveltyStream, row: int) -> float:
        out = 0.0
        steps = st.steps
        for k in range(st.rung, len(steps)):
            step, rung = steps[k], st.rungs[k]
            if row < step.span - 1:
                break
            assert rung is not None
            if self.carry_hold and row == step.speaks and k > st.rung:
                rung.lik.held = max(rung.lik.held, st.rungs[st.rung].lik.held)
            d2 = float(np.min(self._squared(st, step, rung)))
            value = step.lik._one(rung.lik, math.sqrt(max(d2, 0.0) / step.m))
            if row >= step.speaks:
                out = value
                if k > st.rung:  # a longer span speaks: the shorter ones are dropped
                    for j in range(st.rung, k):
                        st.rungs[j] = None
                    st.rung = k
        return out
