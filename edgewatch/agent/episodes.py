"""From a stream of over/under-threshold decisions to episodes.

One fault should make one alert with a duration, not fifty. An episode
*starts* when at least ``k`` of the last ``n`` scored windows are over the
threshold, and *ends* when none of the last ``n`` are. Both transitions are
reported; everything in between only updates the episode's peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Episode:
    start_ts: float
    start_seq: int
    peak_score: float
    peak_seq: int
    windows_over: int = 1
    end_ts: float | None = None
    end_seq: int | None = None


@dataclass(slots=True)
class _Track:
    history: int = 0  # bit i set = the i-th most recent decision was over
    episode: Episode | None = None
    first_over_ts: float = 0.0
    first_over_seq: int = 0


@dataclass
class Transition:
    kind: str  # "start" or "end"
    slot: int
    episode: Episode


@dataclass
class EpisodeTracker:
    """k-of-n debounce per stream slot."""

    k: int = 2
    n: int = 3
    _tracks: dict[int, _Track] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n <= 62:
            raise ValueError(f"need 1 <= k <= n <= 62, got k={self.k}, n={self.n}")
        self._mask = (1 << self.n) - 1

    def update(self, slot: int, over: bool, score: float, ts: float, seq: int) -> Transition | None:
        """Record one scored window; return the start or end it causes, if any."""
        tr = self._tracks.get(slot)
        if tr is None:
            tr = self._tracks[slot] = _Track()
        # remember where the first of the currently counted "over" windows began,
        # so an episode starts at its first bad window, not at the k-th
        if over and tr.history == 0:
            tr.first_over_ts, tr.first_over_seq = ts, seq
        tr.history = ((tr.history << 1) | int(over)) & self._mask
        ep = tr.episode
        if ep is None:
            if over and tr.history.bit_count() >= self.k:
                tr.episode = Episode(tr.first_over_ts, tr.first_over_seq, score, seq)
                return Transition("start", slot, tr.episode)
            return None
        if over:
            ep.windows_over += 1
            if score > ep.peak_score:
                ep.peak_score, ep.peak_seq = score, seq
        elif tr.history == 0:
            ep.end_ts, ep.end_seq = ts, seq
            tr.episode = None
            return Transition("end", slot, ep)
        return None

    def open_episode(self, slot: int) -> Episode | None:
        tr = self._tracks.get(slot)
        return tr.episode if tr else None

    def reset(self, slot: int) -> None:
        """Drop a stream's history; an open episode is left to :meth:`close`."""
        tr = self._tracks.get(slot)
        if tr:
            tr.history = 0

    def forget(self, slot: int) -> None:
        """Drop a stream entirely (it was evicted); close an open episode first."""
        self._tracks.pop(slot, None)

    def close(self, slot: int, ts: float, seq: int) -> Transition | None:
        """End an open episode now (stream lost, shutdown)."""
        tr = self._tracks.get(slot)
        if tr is None or tr.episode is None:
            return None
        ep = tr.episode
        ep.end_ts, ep.end_seq = ts, seq
        tr.episode = None
        tr.history = 0
        return Transition("end", slot, ep)

    def open_slots(self) -> list[int]:
        return [s for s, t in self._tracks.items() if t.episode is not None]
