"""From a stream of over/under-threshold decisions to episodes.

One fault should make one alert with a duration, not fifty. An episode
*starts* when at least ``k`` of the last ``n`` scored windows are over the
threshold, and *ends* after ``m`` scored windows in a row under it (a
hysteresis: ``m`` defaults to ``n``, which is "none of the last ``n`` are
over", the rule of cards that carry no ``m``). Both transitions are
reported; everything in between only updates the episode's peak and the
last window over the threshold.

Why a separate ``m``: a fault's score rarely stays over the threshold for
its whole length; on SKAB a 1-of-1 rule turned one 394-s valve fault into
29 episodes. Closing only after a quiet minute makes one fault one
episode, while opening stays as quick as ``k`` of ``n`` (docs/fit.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_M = 10**6  # quiet windows before an episode closes: a bound that no sane setting reaches


@dataclass(slots=True)
class Episode:
    start_ts: float
    start_seq: int
    peak_score: float
    peak_seq: int
    windows_over: int = 1
    end_ts: float | None = None
    end_seq: int | None = None
    last_over_ts: float = 0.0  # the last window over the threshold: where the anomaly was last seen
    last_over_seq: int = 0


@dataclass(slots=True)
class _Track:
    history: int = 0  # bit i set = the i-th most recent decision was over
    quiet: int = 0  # windows under the threshold since the last one over
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
    """k-of-n to open, m quiet windows to close, per stream slot (``m`` None: ``n``)."""

    k: int = 2
    n: int = 3
    m: int | None = None
    _tracks: dict[int, _Track] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n <= 62:
            raise ValueError(f"need 1 <= k <= n <= 62, got k={self.k}, n={self.n}")
        if self.m is None:
            self.m = self.n
        if not 1 <= self.m <= MAX_M:
            raise ValueError(f"need 1 <= m <= {MAX_M}, got m={self.m}")
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
        tr.quiet = 0 if over else tr.quiet + 1
        ep = tr.episode
        if ep is None:
            if over and tr.history.bit_count() >= self.k:
                tr.episode = Episode(tr.first_over_ts, tr.first_over_seq, score, seq, last_over_ts=ts,
                                     last_over_seq=seq)
                return Transition("start", slot, tr.episode)
            return None
        if over:
            ep.windows_over += 1
            ep.last_over_ts, ep.last_over_seq = ts, seq
            if score > ep.peak_score:
                ep.peak_score, ep.peak_seq = score, seq
        elif tr.quiet >= self.m:
            ep.end_ts, ep.end_seq = ts, seq
            tr.episode = None
            tr.history = 0  # the closed episode's windows do not count towards the next one
            return Transition("end", slot, ep)
        return None

    def update_many(self, slots: list[int], over: list[bool], scores: list[float], ts: list[float],
                    seq: list[int]) -> Iterator[tuple[int, Transition]]:
        """:meth:`update` for a batch of scored windows in order; yields each transition with its window's index.

        Why not one :meth:`update` per window: most windows are under the
        threshold on a stream with nothing counted and no episode, and such
        a window changes nothing that is ever read (its quiet count matters
        only inside an episode, and the next window over resets it), so it
        is passed over without a call. A generator, because a transition's
        episode changes with the windows after it: handle (emit) each one
        before asking for the next, as :meth:`update` one by one would.
        """
        tracks, update = self._tracks, self.update
        for i, slot in enumerate(slots):
            if not over[i]:
                tr = tracks.get(slot)
                if tr is None or (not tr.history and tr.episode is None):
                    continue
            t = update(slot, over[i], scores[i], ts[i], seq[i])
            if t is not None:
                yield i, t

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
        tr.quiet = 0
        return Transition("end", slot, ep)

    def open_slots(self) -> list[int]:
        return [s for s, t in self._tracks.items() if t.episode is not None]
