"""A stream's sampling, decided from its first rows: its interval in seconds and whether it holds counts.

Why per stream and in the post-process: one model file meets streams of
every rate, and lengths counted in rows mean hours on one and days on
another (docs/eval.md, sixth and seventh rounds). The first rows are
buffered (outputs 0), the decision is kept in the stream's state, and the
rows are replayed into the kind's state built for that sampling.

Fails when: a stream's first intervals are not typical (a gap or a burst
of retransmissions at its start), an integer-valued measurement (speeds in
whole mph) is taken for counts, or a stream without timestamps is
replayed faster than real time (arrival times then say nothing of its
sampling). Rows without a time (NaN) or with no positive interval between
them leave the interval unknown, and the kind keeps its lengths in rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from edgewatch.agent.postprocess.base import PerStream
from edgewatch.contract.postprocess import SamplingParams


@dataclass(frozen=True)
class Sampling:
    """A stream's decided sampling: seconds between rows (None: unknown) and whether its values are counts."""

    interval: float | None = None
    counts: bool = False


def interval_seconds(times: Sequence[float], intervals: int) -> float | None:
    """The median of the positive finite intervals among the first ``intervals`` ones, or None if none."""
    head = list(times[:intervals + 1])
    d = sorted(b - a for a, b in zip(head, head[1:]) if math.isfinite(b - a) and b - a > 0)
    if not d:
        return None
    mid = len(d) // 2
    return d[mid] if len(d) % 2 else (d[mid - 1] + d[mid]) / 2


def looks_like_counts(values: Sequence[float], rows: int) -> bool:
    """True when there are ``rows`` values and the first ``rows`` are all non-negative integers."""
    return rows > 0 and len(values) >= rows and all(v >= 0 and v == math.floor(v) for v in values[:rows])


def anscombe(x: float) -> float:
    """Anscombe's variance-stabilising transform: Poisson noise about as wide at every rate."""
    y = x + 0.375
    return 2.0 * math.sqrt(y) if y >= 0 else -2.0 * math.sqrt(-y)


def decide(values: Sequence[float], times: Sequence[float], p: SamplingParams) -> Sampling:
    """The sampling a kind with parameters ``p`` reads from a stream's first rows."""
    interval = interval_seconds(times, int(p.interval_rows)) if p.uses_time() else None
    return Sampling(interval, looks_like_counts(values, int(p.count_rows)))


class _Pending:
    """A stream whose sampling is not decided yet, then its decision and the kind's own state."""

    __slots__ = ("values", "times", "counts", "sampling", "inner")

    def __init__(self) -> None:
        self.values: list[float] | None = []
        self.times: list[float] | None = []
        self.counts = False
        self.sampling: Sampling | None = None
        self.inner: object | None = None


class SampledPerStream(PerStream):
    """The base of a kind whose lengths or input depend on the stream's sampling (:class:`SamplingParams`).

    A kind defines ``_state_for(sampling)`` instead of ``_new_state()``.
    When its parameters ask for nothing per stream, a stream's state is the
    kind's own from its first row (an older file runs exactly as before).
    """

    def __init__(self, params: SamplingParams) -> None:
        super().__init__()
        self.rows = params.sampling_rows()
        self.sampling_params = params

    def _state_for(self, sampling: Sampling) -> object:  # pragma: no cover - abstract
        raise NotImplementedError

    def _new_state(self) -> object:
        return _Pending() if self.rows else self._state_for(Sampling())

    def sampling_of(self, slot: int) -> Sampling | None:
        """A stream's decided sampling (None while undecided, or when the kind decides nothing per stream)."""
        st = self._streams.get(int(slot))
        return st.sampling if type(st) is _Pending else None

    def _one_at(self, st, x: float, t: float) -> float:  # noqa: ANN001 - the kind's state or _Pending
        if type(st) is not _Pending:
            return self._one(st, x)
        if st.inner is not None:
            return self._one(st.inner, anscombe(x) if st.counts else x)
        if not math.isfinite(x):
            return 0.0
        st.values.append(x)
        st.times.append(t)
        if len(st.values) < self.rows:
            return 0.0
        sampling = decide(st.values, st.times, self.sampling_params)
        st.sampling, st.counts, st.inner = sampling, sampling.counts, self._state_for(sampling)
        out = 0.0
        for v in st.values:  # the outputs before this row are 0 (the schema checks that no part speaks earlier)
            out = self._one(st.inner, anscombe(v) if st.counts else v)
        st.values = st.times = None
        return out
