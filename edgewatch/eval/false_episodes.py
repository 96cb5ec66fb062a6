"""False episodes a stream-day on normal rows: a stream's first day apart from the rest.

Why a figure of its own: NAB never scores a file's first 15 % (its
probation, up to 750 rows), which is exactly the stretch where a user who
starts the agent on many new streams gets woken up while the detector is
still learning them. This counts what the agent would send there and later.

The rules:

* an episode starts at a row whose score is at or over the threshold while
  the row before it was under (the first row counts as after an "under"),
  as the agent opens one alert per episode;
* only starts on **normal** rows count: outside every labelled window and
  farther than one window-length (that window's own) from it on either
  side, so an early warning of a labelled anomaly, or the tail of an alert
  it caused, is not called false; probation rows count like any other;
* a stream's **first day** is its rows within 24 h of its first timestamp;
  its exposure is the number of normal rows times its median sampling
  interval, so a rate is false episodes per day of normal data.

When it misleads: the labels mark what NAB's annotators saw; an unlabelled
real change is counted as a false episode here, as it is by NAB. A stream
shorter than a day has no "after"; a first day that is mostly one labelled
window has little exposure (the pooled rate weighs it by its exposure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edgewatch.data.nab import NabFile

DAY_SECONDS = 86_400.0


@dataclass
class StreamEpisodes:
    """One stream's false episode starts and normal exposure (days), on its first day and after."""

    key: str
    first_day: int
    first_day_days: float
    after: int
    after_days: float


@dataclass
class FalseEpisodes:
    """Pooled rates (episodes / stream-days of normal rows) at one threshold, and the worst first day."""

    threshold: float
    first_day: float
    after: float
    worst_key: str
    worst_first_day: int  # false episode starts on that stream's first day
    streams: list[StreamEpisodes] = field(default_factory=list)

    def line(self, label: str = "") -> str:
        """The figure as ``eval nab`` prints it."""
        worst = f"worst file {self.worst_first_day} on its first day ({self.worst_key})" if self.worst_key \
            else "no file had one on its first day"
        return (f"false episodes a stream-day on normal rows{label}: first day {self.first_day:.2f}, "
                f"after {self.after:.2f}; {worst}")


def normal_rows(n_rows: int, windows: Sequence[tuple[int, int]]) -> np.ndarray:
    """True for rows outside every window and farther than that window's length from it on either side."""
    normal = np.ones(n_rows, dtype=bool)
    for a, b in windows:
        width = b - a + 1
        normal[max(a - width, 0):min(b + width + 1, n_rows)] = False
    return normal


def episode_starts(scores: np.ndarray, threshold: float) -> np.ndarray:
    """True where a score is at or over the threshold and the one before it was under."""
    over = np.asarray(scores, dtype=np.float64) >= threshold
    before = np.r_[False, over[:-1]]
    return over & ~before


def stream_episodes(f: NabFile, scores: np.ndarray, threshold: float) -> StreamEpisodes:
    """One stream's counts; its interval is the median step between its (possibly unsorted) timestamps."""
    secs = f.seconds()
    n = len(secs)
    step = float(np.median(np.abs(np.diff(secs)))) if n > 1 else 0.0
    normal = normal_rows(n, f.windows)
    false = episode_starts(scores, threshold) & normal
    first = (secs - secs[0]) < DAY_SECONDS if n else np.zeros(0, dtype=bool)
    return StreamEpisodes(f.key, int(false[first].sum()), float((normal & first).sum()) * step / DAY_SECONDS,
                          int(false[~first].sum()), float((normal & ~first).sum()) * step / DAY_SECONDS)


def _rate(count: int, days: float) -> float:
    return count / days if days > 0 else (0.0 if count == 0 else math.inf)


def false_episodes(files: Sequence[NabFile], scores: Sequence[np.ndarray], threshold: float) -> FalseEpisodes:
    """The figure over a corpus at one threshold (NAB's standard-profile threshold in ``eval nab``)."""
    per = [stream_episodes(f, np.asarray(sc), threshold) for f, sc in zip(files, scores)]
    worst = max(per, key=lambda s: s.first_day, default=None)
    return FalseEpisodes(
        float(threshold),
        _rate(sum(s.first_day for s in per), sum(s.first_day_days for s in per)),
        _rate(sum(s.after for s in per), sum(s.after_days for s in per)),
        worst.key if worst and worst.first_day else "",
        worst.first_day if worst else 0,
        per,
    )
