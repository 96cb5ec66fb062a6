"""Shadow scoring: a candidate model scores the live windows beside the running one, and never alerts.

A model published with ``--shadow`` is built like any candidate (trust,
runtime checks) and must read the same features with the same window, so
it can score exactly the windows the live model scores: one more batched
ONNX Runtime call per scoring batch, on the same array. It has its own
post-processor and episode tracker (its own threshold and k/n from its
card); its episodes are recorded, never sent as alerts.

The report (every ``--shadow-report-interval`` seconds on the retained
``PREFIX/AGENT/shadow`` topic, and on request) says, for the windows both
scored: how many were over each threshold, the episodes each model opened,
which of them differ (an episode of one model on a stream that no episode
of the other overlaps in time), and the Pearson correlation of the two
post-processed scores. Episode lists are bounded (the most recent
:data:`MAX_EPISODES` of each model); the counts are not.

Both models' episodes are counted alike: an episode counts for a model
when that model had it open at any time while the shadow scored. The
shadow's tracker starts empty, so a fault already in progress becomes a
shadow episode once k of n of its windows are over; the live model's
episodes open when the shadow's first batch is scored are taken from the
live tracker at that moment, with their real start (before: only live
``start`` events after it counted, so a fault in progress read "live 0,
shadow 1; 1 differ"). Each model's open episodes reach to now.

``--promote-if "alerts_differ<=N,after=DURATION"`` promotes the shadow
model when it has been in shadow at least DURATION and at most N episodes
differ; the report says which rule held and why. Until DURATION has passed
nothing is promoted, however quiet the streams (no evidence is not
agreement, so a rule without ``after`` is refused).
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgewatch.errors import BadModelFile

if TYPE_CHECKING:
    from edgewatch.agent.episodes import EpisodeTracker
    from edgewatch.agent.runtime import ModelRuntime


class LiveAgent(Protocol):
    """What the scorer reads of the agent: its live model's episode tracker (agent/engine.py's Agent)."""

    @property
    def tracker(self) -> EpisodeTracker: ...


MAX_EPISODES = 500

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"bad duration {text!r}: use a number with s, m, h or d (e.g. 30m)")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class PromotionRule:
    """``alerts_differ<=N,after=DURATION``: see the module docstring."""

    max_differ: int
    after_s: float
    text: str

    @classmethod
    def parse(cls, text: str) -> PromotionRule:
        terms: dict[str, str] = {}
        for term in filter(None, (t.strip() for t in text.split(","))):
            m = re.match(r"^(alerts_differ)\s*<=\s*([0-9]+)$", term) or re.match(r"^(after)\s*=\s*(.+)$", term)
            if not m:
                raise ValueError(f"bad promotion rule term {term!r}: the rule is "
                                 "'alerts_differ<=N,after=DURATION'")
            if m.group(1) in terms:
                raise ValueError(f"promotion rule names {m.group(1)} twice")
            terms[m.group(1)] = m.group(2)
        missing = [k for k in ("alerts_differ", "after") if k not in terms]
        if missing:
            raise ValueError(f"promotion rule {text!r} lacks {' and '.join(missing)}: the rule is "
                             "'alerts_differ<=N,after=DURATION'")
        return cls(int(terms["alerts_differ"]), parse_duration(terms["after"]), text)

    def check(self, differ: int, elapsed: float) -> tuple[bool, str]:
        if elapsed < self.after_s:
            return False, f"{elapsed:.0f} s of {self.after_s:.0f} s in shadow; {differ} episode(s) differ so far"
        if differ > self.max_differ:
            return False, f"{differ} episode(s) differ, more than {self.max_differ}"
        return True, (f"{differ} episode(s) differ (at most {self.max_differ}) after {elapsed:.0f} s in shadow "
                      f"(at least {self.after_s:.0f} s): rule {self.text!r} holds")


@dataclass
class _Episodes:
    """The episodes one model opened, per stream, most recent last."""

    opened: int = 0
    carried: int = 0  # of ``opened``: already open when the shadow began (live model only)
    items: deque = field(default_factory=lambda: deque(maxlen=MAX_EPISODES))
    open_now: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start(self, stream: str, ts: float, score: float, carried: bool = False) -> None:
        """An episode opened (``carried``: it was already open when the shadow began)."""
        self.opened += 1
        ep = {"stream": stream, "start_ts": ts, "end_ts": None, "peak_score": score}
        if carried:
            self.carried += 1
            ep["open_at_start"] = True
        self.open_now[stream] = ep
        self.items.append(ep)

    def end(self, stream: str, ts: float | None, peak: float | None = None) -> None:
        ep = self.open_now.pop(stream, None)
        if ep is not None:
            ep["end_ts"] = ts
            if peak is not None:
                ep["peak_score"] = peak


def _overlaps(a: dict[str, Any], b: dict[str, Any], now: float) -> bool:
    a_end = a["end_ts"] if a["end_ts"] is not None else now
    b_end = b["end_ts"] if b["end_ts"] is not None else now
    return a["stream"] == b["stream"] and a["start_ts"] <= b_end and b["start_ts"] <= a_end


class ShadowScorer:
    """Scores the live windows with a shadow runtime and keeps the comparison; see the module docstring."""

    def __init__(self, runtime: ModelRuntime, live_threshold: float, note: str = "",
                 rule: PromotionRule | None = None, message_id: str | None = None,
                 started: float | None = None, agent: LiveAgent | None = None) -> None:
        self.runtime = runtime
        self.live_threshold = live_threshold
        self.note = note
        self.rule = rule
        self.message_id = message_id
        self.started = time.time() if started is None else started
        self.promoted = False  # set once it was handed over as the live model (its swap may still be pending)
        self.windows = 0
        self.over_live = 0
        self.over_shadow = 0
        self.seconds = 0.0  # time in the shadow's ORT calls and post-processing
        self._sums = np.zeros(6)  # n, sx, sy, sxx, syy, sxy of (live, shadow) decision scores, finite pairs
        self.live = _Episodes()
        self.shadow = _Episodes()
        self._agent = agent  # read once, in the loop's thread, at the first batch (then None)

    @property
    def sha256(self) -> str:
        return self.runtime.sha256

    @classmethod
    def check_fits(cls, runtime: ModelRuntime, live: ModelRuntime) -> None:
        """Refuse (BadModelFile) a shadow candidate that cannot score the live model's windows."""
        if runtime.card.features != live.card.features:
            raise BadModelFile(f"shadow model reads features {runtime.card.features}, the live model "
                               f"{live.card.features}: it cannot score the same windows")
        if runtime.window != live.window:
            raise BadModelFile(f"shadow model has window {runtime.window}, the live model {live.window}: "
                               "it cannot score the same windows")
        if (runtime.card.states or None) != (live.card.states or None):  # rows carry the live model's codes
            raise BadModelFile(f"shadow model codes its state features' texts as {runtime.card.states}, the live "
                               f"model as {live.card.states}: it cannot score the same windows")

    def score(self, x: np.ndarray, slots: np.ndarray, meta: list[tuple[int, float, int]],
              live_scores: np.ndarray, streams: list[str], live_threshold: float | None = None) -> None:
        """Score the batch ``x`` the live model just scored (``live_scores`` its decision scores,
        ``live_threshold`` its threshold now: the live model may be swapped while this one is in shadow)."""
        if live_threshold is not None:
            self.live_threshold = live_threshold
        if self._agent is not None:
            self._carry_open_live(streams)
        t0 = time.perf_counter()
        rt = self.runtime
        batch = rt.model.score_many(x)
        times = np.fromiter((m[1] for m in meta), dtype=np.float64, count=len(meta))
        scores = rt.post.update_many(slots, batch.scores, batch.aux, times)
        over = scores > rt.threshold
        for i, (slot, ts, seq) in enumerate(meta):
            tr = rt.tracker.update(int(slot), bool(over[i]), float(scores[i]), ts, seq)
            if tr is not None:
                stream = streams[int(slot)]
                if tr.kind == "start":
                    self.shadow.start(stream, tr.episode.start_ts, tr.episode.peak_score)
                else:
                    self.shadow.end(stream, tr.episode.end_ts, tr.episode.peak_score)
        live = np.asarray(live_scores, dtype=np.float64)
        shadow = np.asarray(scores, dtype=np.float64)
        self.windows += len(x)
        self.over_live += int(np.count_nonzero(live > self.live_threshold))
        self.over_shadow += int(np.count_nonzero(over))
        ok = np.isfinite(live) & np.isfinite(shadow)
        a, b = live[ok], shadow[ok]
        self._sums += (a.size, a.sum(), b.sum(), (a * a).sum(), (b * b).sum(), (a * b).sum())
        self.seconds += time.perf_counter() - t0

    def _carry_open_live(self, streams: list[str]) -> None:
        """Count the live model's episodes open now, as the shadow starts scoring (see the module docstring).

        Called from :meth:`score`, in the agent loop's thread and before the
        live tracker takes this batch: the live ``start`` events of this batch
        on come through :meth:`on_live_event`, and an open episode's ``end``
        closes the one recorded here.
        """
        agent, self._agent = self._agent, None
        if agent is None:
            return
        tracker = agent.tracker
        for slot in tracker.open_slots():
            ep = tracker.open_episode(slot)
            name = streams[slot] if slot < len(streams) else None
            if ep is not None and name is not None:
                self.live.start(name, ep.start_ts, ep.peak_score, carried=True)

    def on_live_event(self, event: dict[str, Any]) -> None:
        """The live model's alerts (start/end), to compare episodes."""
        kind = event.get("event")
        if kind == "start":
            self.live.start(str(event.get("stream")), float(event.get("ts") or time.time()),
                            float(event.get("score") or 0.0))
        elif kind == "end":
            self.live.end(str(event.get("stream")), event.get("ts"), event.get("score"))

    def correlation(self) -> float | None:
        n, sx, sy, sxx, syy, sxy = self._sums
        if n < 3:
            return None
        vx, vy = n * sxx - sx * sx, n * syy - sy * sy
        if vx <= 0 or vy <= 0:
            return None
        return float((n * sxy - sx * sy) / math.sqrt(vx * vy))

    def differing(self, now: float | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(live episodes no shadow episode overlaps, shadow episodes no live episode overlaps)."""
        now = time.time() if now is None else now
        live, shadow = list(self.live.items), list(self.shadow.items)
        only_live = [e for e in live if not any(_overlaps(e, s, now) for s in shadow)]
        only_shadow = [s for s in shadow if not any(_overlaps(s, e, now) for e in live)]
        return only_live, only_shadow

    def promotion(self, now: float | None = None) -> tuple[bool, str] | None:
        if self.rule is None or self.promoted:
            return None
        now = time.time() if now is None else now
        only_live, only_shadow = self.differing(now)
        return self.rule.check(len(only_live) + len(only_shadow), now - self.started)

    def report(self, live_sha256: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        only_live, only_shadow = self.differing(now)
        corr = self.correlation()
        out: dict[str, Any] = {
            "live": {"sha256": live_sha256, "threshold": self.live_threshold, "windows_over": self.over_live,
                     "episodes": self.live.opened, "open_at_start": self.live.carried},
            "shadow": {"sha256": self.sha256, "threshold": self.runtime.threshold, "windows_over": self.over_shadow,
                       "episodes": self.shadow.opened, "note": self.note},
            "windows": self.windows,
            "since_s": round(now - self.started, 3),
            "score_correlation": None if corr is None else round(corr, 6),
            "alerts_differ": len(only_live) + len(only_shadow),
            "only_live": [_plain(e) for e in only_live[-50:]],
            "only_shadow": [_plain(e) for e in only_shadow[-50:]],
            "shadow_cost_s": round(self.seconds, 6),
        }
        decision = self.promotion(now)
        if decision is not None:
            out["promote_if"] = {"rule": self.rule.text if self.rule else None, "holds": decision[0],
                                 "why": decision[1]}
        return out


def _plain(ep: dict[str, Any]) -> dict[str, Any]:
    from edgewatch.wire.json import iso

    out = {"stream": ep["stream"], "start": iso(ep["start_ts"]),
           "end": None if ep["end_ts"] is None else iso(ep["end_ts"]),
           "peak_score": None if ep["peak_score"] is None or not math.isfinite(ep["peak_score"])
           else round(float(ep["peak_score"]), 6)}
    if ep.get("open_at_start"):
        out["open_at_start"] = True
    return out


def _carried(live: dict[str, Any]) -> str:
    n = live.get("open_at_start") or 0  # absent from the reports of older agents
    return f" ({n} open when the shadow began)" if n else ""


def format_report(r: dict[str, Any]) -> str:
    """A shadow report as text for ``edgewatch fleet shadow-report``."""
    live, shadow = r.get("live", {}), r.get("shadow", {})
    lines = [f"shadow {str(shadow.get('sha256'))[:12]} ({shadow.get('note') or 'no note'}) beside live "
             f"{str(live.get('sha256'))[:12]} for {r.get('since_s', 0):.0f} s, {r.get('windows', 0)} windows",
             f"  over threshold: live {live.get('windows_over')} (thr {live.get('threshold')}), shadow "
             f"{shadow.get('windows_over')} (thr {shadow.get('threshold')})",
             f"  episodes: live {live.get('episodes')}{_carried(live)}, shadow {shadow.get('episodes')}; "
             f"{r.get('alerts_differ')} differ; score correlation {r.get('score_correlation')}"]
    for key, who in (("only_live", "only live"), ("only_shadow", "only shadow")):
        for e in r.get(key, []):
            lines.append(f"    {who:<11} {e['stream']}  {e['start']} .. {e['end'] or 'open'}"
                         + ("  (open when the shadow began)" if e.get("open_at_start") else ""))
    if r.get("promote_if"):
        p = r["promote_if"]
        lines.append(f"  promote-if {p['rule']!r}: {'holds' if p['holds'] else 'not yet'}: {p['why']}")
    return "\n".join(lines)
