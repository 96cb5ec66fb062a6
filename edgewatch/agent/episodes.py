"""From a stream of over/under-threshold decisions to episodes.

One fault should make one alert with a duration, not fifty. An episode
*starts* when at least ``k`` of the last ``n`` scored windows are over the
threshold, and *ends* after ``m`` scored windows in a row under it (a
hysteresis: ``m`` defaults to ``n``, which is "none of the last ``n`` are
over", the rule of cards that carry no ``m``). Both transitions are
reported; everything in between only updates the episode's peak and the
last window over the threshold. An episode never ends before it started:
a device whose clock is set back during it (a day, or to 1970 when its
clock battery dies) gets an end at its start, not a negative duration.

Why a separate ``m``: a fault's score rarely stays over the threshold for
its whole length; on SKAB a 1-of-1 rule turned one 394-s valve fault into
29 episodes. Closing only after a quiet minute makes one fault one
episode, while opening stays as quick as ``k`` of ``n`` (docs/fit.md).

A quiet start (``--quiet-start``, off by default) holds a stream's
episodes for its first seconds of its own time (window timestamps): a
detector that learns each stream online, as NAB's default does, is nine
times as likely to raise a false episode on a stream's first day as on a
later one (docs/eval.md, twelfth round). Held episodes are counted, never
sent; when the quiet start ends, the windows it held do not count towards
the first episode after it, as if the detector had not spoken before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

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
    lead: Lead | None = None  # what the features did in its windows over the threshold (when errors were given)


@dataclass(slots=True)
class Lead:
    """Each feature's error summed over an episode's windows over the threshold, and its share of each window.

    Why over all of them and not the window that opened or closed the
    episode: with a k-of-n opening the k-th window over is any window, and on
    a packaging line whose current rose 15 % it was the one that straddled
    the next stop, where the belt speed's fall is most of the error: the
    start named the belt speed (97 %) for a fault of the current. The end's
    window is m windows under the threshold, and named what a quiet window
    holds. Each window's shares count once, whatever its size, so one huge
    straddling window does not outvote thirty that say the same thing.
    """

    error: np.ndarray  # [F] the sum of each feature's error
    share: np.ndarray  # [F] the sum of each feature's share of its window's error
    windows: int = 0

    def add(self, error: np.ndarray, share: np.ndarray | None = None) -> None:
        """One window's errors; ``share``: their shares of its total when the caller has them (one batch's at once)."""
        if share is None:
            error, share = window_shares(np.asarray(error, dtype=np.float64)[None])
            error, share = error[0], share[0]
        with np.errstate(over="ignore"):  # an overflowing window's error is the largest float: the sum stays there
            np.minimum(self.error + error, np.finfo(np.float64).max, out=self.error)
        self.share += share
        self.windows += 1

    @classmethod
    def of(cls, error: np.ndarray, share: np.ndarray | None = None) -> Lead:
        lead = cls(np.zeros(np.size(error)), np.zeros(np.size(error)))
        lead.add(error, share)
        return lead


def window_shares(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[B, F]`` errors with NaN as 0 and +inf as the largest float, and each row's shares of its total (0 where
    the total is 0 or not finite): the same reading of a bad error as ``events.top_features``."""
    clean = np.nan_to_num(errors, nan=0.0, posinf=np.finfo(np.float64).max, neginf=0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        total = clean.sum(axis=1, keepdims=True)
        ok = np.isfinite(total) & (total > 0)
        shares = np.where(ok, clean / np.where(ok, total, 1.0), 0.0)
    return clean, shares


@dataclass(slots=True)
class _Track:
    history: int = 0  # bit i set = the i-th most recent decision was over
    quiet: int = 0  # windows under the threshold since the last one over
    episode: Episode | None = None
    first_over_ts: float = 0.0
    first_over_seq: int = 0
    born: float | None = None  # the stream's first window time while its quiet start lasts, else None
    held_open: bool = False  # a held episode is open (quiet start): it ends as an episode would, unsent
    lead: Lead | None = None  # the counted windows over before an episode opens (from ``first_over``)
    counted: int = 0  # windows over since ``first_over``: the opening episode's ``windows_over``


@dataclass
class Transition:
    kind: str  # "start" or "end"
    slot: int
    episode: Episode


@dataclass
class EpisodeTracker:
    """k-of-n to open, m quiet windows to close, per stream slot (``m`` None: ``n``).

    ``quiet_start`` > 0: a stream's episodes are held (counted in ``held``,
    not returned) until its windows' time is that many seconds past its
    first window's.
    """

    k: int = 2
    n: int = 3
    m: int | None = None
    quiet_start: float = 0.0
    held: int = 0  # episodes held in quiet starts, not yet taken by :meth:`take_held`
    _tracks: dict[int, _Track] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n <= 62:
            raise ValueError(f"need 1 <= k <= n <= 62, got k={self.k}, n={self.n}")
        if self.m is None:
            self.m = self.n
        if not 1 <= self.m <= MAX_M:
            raise ValueError(f"need 1 <= m <= {MAX_M}, got m={self.m}")
        if not 0 <= self.quiet_start < float("inf"):
            raise ValueError(f"need a quiet start of 0 or more seconds, got {self.quiet_start}")
        self._mask = (1 << self.n) - 1

    def update(self, slot: int, over: bool, score: float, ts: float, seq: int, error: np.ndarray | None = None,
               share: np.ndarray | None = None) -> Transition | None:
        """Record one scored window; return the start or end it causes, if any.

        ``error``: the window's per-feature error; the windows over the threshold add theirs to the
        episode's :class:`Lead`, from the first of the counted windows that opened it."""
        tr = self._tracks.get(slot)
        if tr is None:
            tr = self._tracks[slot] = _Track(born=ts if self.quiet_start else None)
        if tr.born is not None:
            if ts - tr.born < self.quiet_start:
                self._hold(tr, over)
                return None
            # the quiet start is over: what it held does not count towards the first episode
            tr.born, tr.held_open, tr.history, tr.quiet = None, False, 0, 0
        # remember where the first of the currently counted "over" windows began,
        # so an episode starts at its first bad window, not at the k-th
        if over and tr.history == 0:
            tr.first_over_ts, tr.first_over_seq = ts, seq
            tr.lead = None
            tr.counted = 0
        if over:
            tr.counted += 1
        if over and error is not None:
            lead = tr.episode.lead if tr.episode is not None else tr.lead
            if lead is None:
                lead = Lead.of(error, share)
                if tr.episode is not None:
                    tr.episode.lead = lead
                else:
                    tr.lead = lead
            else:
                lead.add(error, share)
        tr.history = ((tr.history << 1) | int(over)) & self._mask
        tr.quiet = 0 if over else tr.quiet + 1
        ep = tr.episode
        if ep is None:
            if over and tr.history.bit_count() >= self.k:
                # windows_over: every window over since its start, as its start time counts them (the k-th
                # window alone said 1 of a start that 32 windows over had opened)
                tr.episode = Episode(tr.first_over_ts, tr.first_over_seq, score, seq, windows_over=tr.counted,
                                     last_over_ts=ts, last_over_seq=seq, lead=tr.lead)
                tr.lead = None
                return Transition("start", slot, tr.episode)
            return None
        if over:
            ep.windows_over += 1
            ep.last_over_ts, ep.last_over_seq = ts, seq
            if score > ep.peak_score:
                ep.peak_score, ep.peak_seq = score, seq
        elif tr.quiet >= self.m:
            ep.end_ts, ep.end_seq = max(ts, ep.start_ts), seq
            tr.episode = None
            tr.history = 0  # the closed episode's windows do not count towards the next one
            return Transition("end", slot, ep)
        return None

    def _hold(self, tr: _Track, over: bool) -> None:
        """One window in a quiet start: the k-of-n and m rules run as usual, their episode is counted, not sent."""
        tr.history = ((tr.history << 1) | int(over)) & self._mask
        tr.quiet = 0 if over else tr.quiet + 1
        if tr.held_open:
            if tr.quiet >= self.m:
                tr.held_open, tr.history = False, 0
        elif over and tr.history.bit_count() >= self.k:
            tr.held_open = True
            self.held += 1

    def take_held(self) -> int:
        """Episodes held since the last call (the agent adds them to its summary and metrics)."""
        held, self.held = self.held, 0
        return held

    def update_many(self, slots: list[int], over: list[bool], scores: list[float], ts: list[float],
                    seq: list[int], errors: np.ndarray | None = None) -> Iterator[tuple[int, Transition]]:
        """:meth:`update` for a batch of scored windows in order; yields each transition with its window's index.

        Why not one :meth:`update` per window: most windows are under the
        threshold on a stream with nothing counted and no episode, and such
        a window changes nothing that is ever read (its quiet count matters
        only inside an episode, and the next window over resets it), so it
        is passed over without a call. A generator, because a transition's
        episode changes with the windows after it: handle (emit) each one
        before asking for the next, as :meth:`update` one by one would.
        """
        tracks, update, quiet_start = self._tracks, self.update, self.quiet_start
        clean = shares = None
        if errors is not None and any(over):  # one batch's shares at once: a long episode has every window over
            clean, shares = window_shares(np.asarray(errors, dtype=np.float64))
        for i, slot in enumerate(slots):
            if not over[i]:
                tr = tracks.get(slot)
                if tr is None:
                    if quiet_start:  # a quiet start runs from the stream's first window, over or not
                        tracks[slot] = _Track(born=ts[i])
                    continue
                if not tr.history and tr.episode is None and not tr.held_open:
                    continue
            t = (update(slot, True, scores[i], ts[i], seq[i], clean[i], shares[i]) if over[i] and clean is not None
                 else update(slot, over[i], scores[i], ts[i], seq[i]))
            if t is not None:
                yield i, t

    def open_episode(self, slot: int) -> Episode | None:
        tr = self._tracks.get(slot)
        return tr.episode if tr else None

    def reset(self, slot: int) -> None:
        """Drop a stream's history; an open episode is left to :meth:`close`.

        With a quiet start, a stream without an open episode starts a new
        one at its next window: its detector's state was reset with it, so
        it learns the stream again.
        """
        tr = self._tracks.get(slot)
        if tr:
            tr.history = 0
            tr.lead = None
            if self.quiet_start and tr.episode is None:
                del self._tracks[slot]

    def forget(self, slot: int) -> None:
        """Drop a stream entirely (it was evicted); close an open episode first."""
        self._tracks.pop(slot, None)

    def close(self, slot: int, ts: float, seq: int) -> Transition | None:
        """End an open episode now (stream lost, shutdown)."""
        tr = self._tracks.get(slot)
        if tr is None or tr.episode is None:
            return None
        ep = tr.episode
        ep.end_ts, ep.end_seq = max(ts, ep.start_ts), seq
        tr.episode = None
        tr.history = 0
        tr.quiet = 0
        return Transition("end", slot, ep)

    def open_slots(self) -> list[int]:
        return [s for s, t in self._tracks.items() if t.episode is not None]
