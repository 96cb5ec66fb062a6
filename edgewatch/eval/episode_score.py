"""Episode-level figures: what an operator lives with, beside the point-wise F1 that hides it.

A point-wise F1 counts rows; an operator counts alerts. SKAB's pca
predictions beat the leaderboard point-wise while one valve fault raised up
to 35 episodes and normal operation 14 false ones an hour. So every
labelled evaluation also reports, from the agent's episodes:

* **faults caught**: labelled segments that an episode overlaps (from its
  first to its last window over the threshold); ``opened inside`` counts
  those where an episode *starts* within the segment, since an episode
  already open when the fault begins catches it too;
* **false episodes**: episodes that overlap no labelled segment, per hour
  (and per day) of normal operation (rows labelled 0);
* **episodes per fault**: episodes overlapping a caught fault, averaged
  over caught faults (1.0 is one alert per fault);
* **delay**: from a segment's first row to the start of the first episode
  that overlaps it (negative when that episode began before it).

Only episodes that reach the scored part count (``scored_from``: SKAB
scores the rows after the 400 training rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` row ranges where ``labels`` is 1."""
    d = np.diff(np.r_[0, (np.asarray(labels) > 0.5).astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


@dataclass
class EpisodeCounts:
    faults: int = 0
    caught: int = 0
    opened_inside: int = 0
    false_episodes: int = 0
    on_caught_faults: int = 0  # episodes overlapping caught faults, summed over those faults
    normal_seconds: float = 0.0
    delays: list[float] = field(default_factory=list)  # seconds, one per caught fault

    def __add__(self, other: EpisodeCounts) -> EpisodeCounts:
        return EpisodeCounts(self.faults + other.faults, self.caught + other.caught,
                             self.opened_inside + other.opened_inside, self.false_episodes + other.false_episodes,
                             self.on_caught_faults + other.on_caught_faults,
                             self.normal_seconds + other.normal_seconds, self.delays + other.delays)

    @property
    def caught_share(self) -> float:
        return self.caught / self.faults if self.faults else float("nan")

    @property
    def false_per_hour(self) -> float:
        return 3600.0 * self.false_episodes / self.normal_seconds if self.normal_seconds else float("nan")

    @property
    def false_per_day(self) -> float:
        return 24.0 * self.false_per_hour

    @property
    def episodes_per_fault(self) -> float:
        return self.on_caught_faults / self.caught if self.caught else float("nan")

    @property
    def median_delay(self) -> float:
        return float(np.median(self.delays)) if self.delays else float("nan")


def row_seconds(times: np.ndarray | None, rows: int) -> float:
    """The typical time between two rows (the median step), 1.0 without times."""
    if times is None or rows < 2:
        return 1.0
    steps = np.diff(np.asarray(times, dtype=np.float64))
    steps = steps[np.isfinite(steps) & (steps > 0)]
    return float(np.median(steps)) if steps.size else 1.0


def score_episodes(episodes: Sequence[tuple[int, int]], labels: np.ndarray, times: np.ndarray | None = None,
                   scored_from: int = 0) -> EpisodeCounts:
    """Episode figures of one series; ``episodes`` are ``(first row over, last row over)``, inclusive."""
    y = np.asarray(labels)
    step = row_seconds(times, len(y))
    t = np.arange(len(y), dtype=np.float64) * step if times is None else np.asarray(times, dtype=np.float64)
    live = [(a, b) for a, b in episodes if b >= scored_from]
    faults = [(a, b) for a, b in segments(y) if b > scored_from]
    out = EpisodeCounts(faults=len(faults), normal_seconds=float((y[scored_from:] <= 0.5).sum()) * step)
    touched: set[int] = set()
    for s, e in faults:
        s = max(s, scored_from)
        hits = [i for i, (a, b) in enumerate(live) if a < e and b >= s]
        if not hits:
            continue
        out.caught += 1
        out.on_caught_faults += len(hits)
        out.opened_inside += any(s <= live[i][0] < e for i in hits)
        first = min(live[i][0] for i in hits)
        out.delays.append(float(t[first] - t[s]))
        touched.update(hits)
    out.false_episodes = sum(1 for i, (a, b) in enumerate(live)
                             if i not in touched and not any(a < e and b >= s for s, e in segments(y)))
    return out
