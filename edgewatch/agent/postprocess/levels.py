"""The ``levels`` kind: a value-level novelty per stream (the first level of a contextOSE-like detector).

It reads the graph's score as the stream's current value. It learns the
value range on the first ``range_rows`` rows, then freezes it so that a
level keeps its meaning; the range is cut into ``bins`` equal levels
(values outside it get levels beyond, unclipped). The output is 1.0 when a
value falls on a level never seen before in that stream, else 0.0; after
such an output the next ``rest`` rows stay 0 (one alert per event). Memory
per stream is bounded: at most ``range_rows`` buffered values until the
range is frozen, then at most ``cap`` remembered levels (an unseen level
beyond the cap is still reported, not remembered). A stream constant over
its range rows has no scale and never fires. Parameters (defaults in
:class:`~edgewatch.contract.postprocess.LevelsParams`): ``bins`` (8,
contextOSE's 3 bits), ``range_rows`` (384), ``rest`` (100), ``cap`` (4096),
``edges`` (:class:`~edgewatch.contract.postprocess.Edges`; absent: levels
counted from the minimum, so any new minimum is a new level while a new
maximum needs a level's margin; ``edges`` 1 gives both sides the margin),
``width`` (:class:`~edgewatch.contract.postprocess.Width`; absent: ``bins``
levels across the range; ``width`` 1: levels as wide in the stream's own
spread as ``bins`` across ``range_rows`` Gaussian rows, however many rows
the stream's range took; the levels above the range are then counted up
from its maximum, so a new maximum needs a whole level's margin as a new
minimum does, though the range holds a fractional number of levels),
``margin`` (:class:`~edgewatch.contract.postprocess.Margin`; absent: a
value is new when its level is; ``margin`` 1: when it lies a whole level
from every value the stream has shown, inside the range as beyond it,
kept as the union of the intervals within a level of those values).

Per stream (:mod:`.sampling`, off unless the card asks): ``range_seconds``
learns the range over that much of the stream's own time (rows within
``range_min`` .. ``range_max``), and ``count_rows`` reads a count stream
through Anscombe's transform. Why: 256 rows are 21 hours at 5 minutes but
10.7 days hourly, after an hourly stream's first anomalies (docs/eval.md,
sixth round).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

from edgewatch.agent.postprocess.sampling import SampledPerStream, Sampling
from edgewatch.contract.postprocess import Edges, LevelsParams, Margin, Width


class _LevelStream:
    __slots__ = ("range_rows", "bins", "first", "lo", "hi", "top", "step", "seen", "quiet", "los", "his")

    def __init__(self, range_rows: int, bins: float) -> None:
        self.range_rows = range_rows
        self.bins = bins  # levels across the range (``bins``, or with ``width`` 1 as many as its rows give)
        self.first: list[float] | None = []  # values until the range is frozen, then None
        self.lo = 0.0
        self.hi = 0.0
        self.top = 0  # the level of the range's maximum
        self.step = 0.0  # width of one level; 0 = no scale
        self.seen: set[int] = set()
        self.quiet = 0  # rows of rest left
        # ``margin`` 1: the values within a level of a value shown, as sorted disjoint open intervals (ends apart)
        self.los: list[float] = []
        self.his: list[float] = []


class Levels(SampledPerStream):
    """Value-level novelty per stream: 1.0 when the value reaches a level never seen, then a rest."""

    def __init__(self, params: LevelsParams) -> None:
        super().__init__(params)
        self.p = params
        self.symmetric = Edges(int(params.edges)) is Edges.SYMMETRIC
        # with levels as wide in the stream's spread, a range holds a fractional number of them, so the levels
        # above it are counted up from its maximum (a level's margin, as below the minimum); with a whole number
        # of levels across the range (``width`` 0) the two counts agree and the code is the one before
        self.from_top = self.symmetric and Width(int(params.width)) is Width.SPREAD
        self.everywhere = Margin(int(params.margin)) is Margin.EVERYWHERE

    def _state_for(self, sampling: Sampling) -> _LevelStream:
        rows = self.p.rows_for(sampling.interval)
        return _LevelStream(rows, self.p.bins_for(rows))

    def _level(self, st: _LevelStream, x: float) -> int:
        if st.step <= 0:
            return 0
        if self.symmetric and x < st.lo:  # the mirror of the top: level -k from k levels below the minimum
            return -math.floor((st.lo - x) / st.step)
        if self.from_top and x > st.hi:  # k levels above the maximum's level from k levels above the maximum
            return st.top + math.floor((x - st.hi) / st.step)
        return math.floor((x - st.lo) / st.step)

    def _near(self, st: _LevelStream, x: float) -> bool:
        """``margin`` 1: True when ``x`` lies within a level of a value the stream has shown."""
        i = bisect_right(st.los, x) - 1
        return i >= 0 and x < st.his[i] and x > st.los[i]

    def _show(self, st: _LevelStream, x: float) -> None:
        """``margin`` 1: remember ``x`` (merge ``(x - step, x + step)`` into the intervals; beyond ``cap`` of them a
        value that would start another is not remembered, as a level beyond the cap is not)."""
        a, b = x - st.step, x + st.step
        i, j = bisect_left(st.his, a), bisect_right(st.los, b)
        if i == j and len(st.los) >= self.p.cap:
            return
        if i < j:
            a, b = min(a, st.los[i]), max(b, st.his[j - 1])
        st.los[i:j] = [a]
        st.his[i:j] = [b]

    def _one(self, st: _LevelStream, x: float) -> float:
        p = self.p
        if not math.isfinite(x):
            return 0.0
        if st.first is not None:  # learning the range
            st.first.append(x)
            if len(st.first) >= st.range_rows:
                lo, hi = min(st.first), max(st.first)
                st.lo, st.hi, st.step = lo, hi, (hi - lo) / st.bins
                st.top = math.floor((hi - lo) / st.step) if st.step > 0 else 0
                if self.everywhere and st.step > 0:
                    for v in st.first:
                        self._show(st, v)
                    st.first = None
                    return 0.0
                for v in st.first:
                    if len(st.seen) < p.cap:
                        st.seen.add(self._level(st, v))
                st.first = None
            return 0.0
        if self.everywhere and st.step > 0:
            new = not self._near(st, x)
            self._show(st, x)
        else:
            level = self._level(st, x)
            new = level not in st.seen
            if new and len(st.seen) < p.cap:
                st.seen.add(level)
        if st.quiet > 0:
            st.quiet -= 1
            return 0.0
        if new:
            st.quiet = int(p.rest)
            return 1.0
        return 0.0
