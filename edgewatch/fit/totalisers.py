"""A totaliser kept as its rate: how ``edgewatch fit`` differences it, and what the card tells the agent.

A totaliser (a flow totaliser reset each shift, a 16-bit pack counter that
wraps, a kWh meter; :mod:`edgewatch.fit.screening` finds them) counts since
its last reset, which no fault moves; what it totals (the flow, the packs a
minute) is often the most telling signal of the line. So the column is
replaced by its rate: the rise from one row to the next over the time
between them (units per second; per row when the files have no times).

A fall is one of two things, told from the normal data:

* **a wrap** (the counter's modulus is known: the smallest of
  :data:`WRAPS` above every value, from which each fall, taken modulo it,
  is a rise no larger than :data:`WRAP_STEPS` times the largest ordinary
  rise): the rise across it is exact, ``(new - old) mod M``.
* **a reset** (a shift change set it to zero): the counts between the last
  reading and the reset are lost, so the rate over that step is unknown; it
  is *held* (the rate of the row before), as a blank is held. Taking the
  value after the reset as the rise would undercount that step by what
  came in before the reset (up to a whole step's flow at a random moment),
  a dip that no process made; holding it keeps the rate's normal spread.

The first row of a stream, and any row before a rate is known (a reset in
the second row), has no rate: ``fit`` drops it from every segment, and the
agent skips it (``missing_feature``) by the same rule
(:mod:`edgewatch.agent.sources.rows`); a step of no time (a repeated time)
holds the rate too. The card's ``totalisers`` says, per feature, ``per``
(``"s"`` or ``"row"``) and ``wrap`` (the modulus, absent for a reset).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgewatch.fit.normal_data import NormalData

WRAPS = (2.0 ** 15, 2.0 ** 16, 2.0 ** 31, 2.0 ** 32) + tuple(10.0 ** k for k in range(2, 10))
WRAP_STEPS = 2.0  # a fall taken modulo M is a wrap when its rise is at most this many of the largest ordinary rise


def wrap_of(segments: list[np.ndarray]) -> float | None:
    """The modulus a totaliser wraps at (its falls are rollovers), or None when its falls are resets."""
    x = np.concatenate(segments)
    d = np.concatenate([np.diff(s) for s in segments if len(s) > 1] or [np.zeros(0)])
    rises, falls = d[d >= 0], d[d < 0]
    if not falls.size or not rises.size or float(x.min()) < 0:
        return None
    top = float(x.max())
    for m in sorted(WRAPS):
        if m <= top:
            continue
        across = falls + m
        if float(across.max()) <= WRAP_STEPS * max(float(rises.max()), 1.0) and float(across.min()) >= 0:
            return m
        return None  # the smallest modulus above the values is the only one a counter could wrap at
    return None


def rate(x: np.ndarray, t: np.ndarray | None, wrap: float | None) -> np.ndarray:
    """The column's rate row by row (NaN where none is known yet: the first row, a reset before any rate)."""
    d = np.diff(x)
    if wrap is not None:
        d = np.mod(d, wrap)
    dt = np.diff(t) if t is not None else np.ones(len(d))
    good = (d >= 0) & (dt > 0)
    r = np.full(len(x), np.nan)
    r[1:][good] = d[good] / dt[good]
    for i in range(2, len(r)):  # a reset or a step of no time: the rate before it is held
        if np.isnan(r[i]):
            r[i] = r[i - 1]
    return r


def as_rates(data: NormalData, wraps: Mapping[str, float | None]) -> NormalData:
    """``data`` with each totaliser of ``wraps`` replaced by its rate; the rows before a rate is known dropped."""
    idx = {data.features.index(f): w for f, w in wraps.items()}
    segments, times = [], []
    for i, seg in enumerate(data.segments):
        t = data.times[i] if data.times is not None else None
        out = seg.copy()
        for j, w in idx.items():
            out[:, j] = rate(seg[:, j], t, w)
        known = ~np.isnan(out[:, list(idx)]).any(axis=1)
        first = int(np.argmax(known)) if known.any() else len(out)
        if first < len(out):
            segments.append(out[first:])
            times.append(t[first:] if t is not None else None)
    return NormalData(data.features, segments, times if data.times is not None else None, data.notes)


def card_entry(wrap: float | None, per_second: bool) -> dict[str, Any]:
    """What the card's ``totalisers`` says of one feature."""
    entry: dict[str, Any] = {"per": "s" if per_second else "row"}
    if wrap is not None:
        entry["wrap"] = int(wrap) if float(wrap).is_integer() else wrap
    return entry


def reason(wrap: float | None, resets: int, per_second: bool, kept: bool = True) -> str:
    """The report's words for a totaliser kept as its rate (``kept``; else its rate is left out, for the reason
    the pipeline adds)."""
    per = "a second" if per_second else "a row"
    how = (f"wraps at {wrap:.10g} ({resets} time(s)): the rise across a wrap is taken modulo it, exactly"
           if wrap is not None else
           f"falls back to its start {resets} time(s), a reset: the rate across one is unknown and the rate "
           "before it is held" if resets else "never falls")
    what = "a totaliser (its level counts since the last reset, which no fault moves)"
    return f"kept as its rate: {what}, scored by its rise {per}; it {how}" if kept else f"{what}; it {how}"


def steady_reason(wrap: float | None, resets: int, per_second: bool, value: float) -> str:
    """The report's words for a totaliser whose rate is one value throughout (a sequence number, a seconds
    counter): why it is left out, without the advice for a coarse reading that a constant measurement gets
    (export more decimals), which reads oddly for a counter. Not "a clock": the report's clock words are kept
    for its times (a clock change, a repeated time)."""
    per = "a second" if per_second else "a row"
    return (f"{reason(wrap, resets, per_second, kept=False)}; its rate is constant ({value:.6g} {per}): it counts "
            "messages or time (a sequence number, a seconds counter), not what the process makes, so nothing in "
            "it moves with the plant")
