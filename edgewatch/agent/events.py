"""Every event the agent emits is built here; sinks serialise it with :func:`edgewatch.wire.json.dumps`.

Why one module: a consumer (MQTT subscriber, JSONL reader, the live page)
must be able to rely on the shape of each kind. Numbers that are not
finite become ``null`` here, times outside what ``datetime`` can show
become ``null`` (:mod:`edgewatch.wire.json`); nothing raises.

Kinds: ``start`` / ``end`` (an anomalous episode; QoS-1 alerts with an
idempotent ``id``, the raw ``score`` and ``threshold`` beside
``anomaly_score``, where 1.0 is the threshold for every family),
``drift`` / ``drift_end``, and the model events of the fleet contract
(docs/fleet.md): ``model_swapped``, ``model_shadow``, ``model_refused``
(the running model stays), ``model_unchanged``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from edgewatch import digests
from edgewatch.wire.json import finite, iso, number

if TYPE_CHECKING:
    from edgewatch.agent.watch.drift_watch import DriftEvent
    from edgewatch.agent.episodes import Lead, Transition
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.score_scale import ScoreScale


def _model(model: ScoringModel) -> dict[str, Any]:
    return {"sha256": model.sha256, "family": model.card.family}


def episode_event(tr: Transition, *, agent: str, stream: str, threshold: float, scale: ScoreScale,
                  model: ScoringModel, now: float, contributions: list[dict[str, Any]] | None = None,
                  reason: str | None = None) -> dict[str, Any]:
    """``start`` or ``end`` of an anomalous episode; ``id`` is the same for a redelivery of the same event.

    ``score`` is the episode's peak score in the model's units, ``threshold``
    the score it alerts above, and ``anomaly_score`` the peak on ``scale``
    (1.0 = the threshold for every family). ``contributions``: the
    features that contributed most (:func:`top_features`), as ``top_features``.

    ``reason``: why the agent ended the episode (stopping, a model swap, an idle stream) rather than its
    data; then ``closed_at`` is ``now``, the agent's wall-clock time, while the episode's times stay those
    of the stream's messages.
    """
    ep = tr.episode
    start = tr.kind == "start"
    ident = digests.sha1(f"{agent}|{stream}|{ep.start_ts!r}|{ep.start_seq}|{tr.kind}".encode()).hexdigest()[:20]
    ts = ep.start_ts if start else ep.end_ts
    event: dict[str, Any] = {
        "event": tr.kind,
        "id": ident,
        "agent": agent,
        "stream": stream,
        "time": iso(ts if start else (ep.end_ts or now)),
        "ts": number(ts),
        "seq": ep.start_seq if start else ep.end_seq,
        "score": number(ep.peak_score, 6),
        "threshold": number(threshold),
        "anomaly_score": number(scale.score(ep.peak_score), 6),
        "episode": {
            "start_ts": number(ep.start_ts), "start_seq": ep.start_seq,
            "end_ts": number(ep.end_ts), "end_seq": ep.end_seq,
            "duration_s": None if ep.end_ts is None else number(ep.end_ts - ep.start_ts, 6),
            "peak_score": number(ep.peak_score, 6), "peak_seq": ep.peak_seq,
            "windows_over": ep.windows_over,
            "last_over_ts": number(ep.last_over_ts), "last_over_seq": ep.last_over_seq,
        },
        "model": _model(model),
    }
    if contributions is not None:
        event["top_features"] = contributions
    if reason:
        event["reason"] = reason
        event["closed_at"] = iso(now)
    return event


_FLOAT_MAX = float(np.finfo(np.float64).max)  # what +inf counts as in a feature's error


def top_features(feature_error: np.ndarray | Sequence[float], features: Sequence[str], top: int = 3
                 ) -> list[dict[str, Any]]:
    """The ``top`` features by error, with their share of the total (NaN counts as 0, +inf as the largest).

    Plain Python on a list: an event names a handful of features, and NumPy's
    per-call overhead on arrays this small was most of an alert's cost.
    """
    fe = [0.0 if v != v or v == -math.inf else (_FLOAT_MAX if v == math.inf else v)
          for v in np.asarray(feature_error, dtype=np.float64).reshape(-1).tolist()]
    order = sorted(range(len(fe)), key=lambda j: -fe[j])[:top]  # stable: ties keep feature order
    total = sum(fe)
    total = total if math.isfinite(total) and total > 0 else 1.0
    return [{"feature": features[j], "error": number(fe[j], 6), "share": number(fe[j] / total, 4)} for j in order]


def lead_features(lead: Lead, features: Sequence[str], top: int = 3) -> list[dict[str, Any]]:
    """The ``top`` features by their mean share of the error over an episode's windows over the threshold
    (:class:`~edgewatch.agent.episodes.Lead`): ``share`` that mean, ``error`` the feature's mean error there.

    Why by share and not by summed error: a window that straddles a stop can hold a hundred times the error of
    the fault's own windows in another feature; ranked by the sum it would name that feature alone."""
    n = max(lead.windows, 1)
    order = sorted(range(len(lead.share)), key=lambda j: -float(lead.share[j]))[:top]  # stable: ties keep order
    return [{"feature": features[j], "error": number(float(lead.error[j]) / n, 6),
             "share": number(float(lead.share[j]) / n, 4)} for j in order]


def drift_event(ev: DriftEvent, *, agent: str, stream: str, model: ScoringModel, ts: float,
                now: float) -> dict[str, Any]:
    """``drift`` when a stream starts drifting (or in other features), ``drift_end`` when it is back.

    On the stream's clock like an alert (``ts``: its last message time, so a
    replay of 2015 data drifts in 2015); ``checked_at`` is the agent's wall time.
    ``modes``: the recent sample's share in each operating point of the
    reference, when it has them (the KS test's mixture weights).
    """
    event: dict[str, Any] = {"event": "drift" if ev.features else "drift_end", "agent": agent, "stream": stream,
                             "time": iso(ts), "ts": ts, "checked_at": iso(now), "model": _model(model)}
    # modes: only when the reference has operating points, so other models' events keep their keys
    event.update(finite({k: v for k, v in asdict(ev).items() if k != "slot" and not (k == "modes" and v is None)}))
    return event


def model_event(*, agent: str, now: float, previous: ScoringModel, model: ScoringModel,
                warnings: Sequence[str] = ()) -> dict[str, Any]:
    """A new model took over between two batches (``model_swapped``, fleet contract v1)."""
    event: dict[str, Any] = {"event": "model_swapped", "agent": agent, "time": iso(now),
                             "previous_sha256": previous.sha256, "sha256": model.sha256,
                             "family": model.card.family}
    if warnings:
        event["warnings"] = list(warnings)
    return event


def model_shadow_event(*, agent: str, now: float, live: ScoringModel, shadow: ScoringModel) -> dict[str, Any]:
    """A model now scores in shadow beside the live one (fleet contract v1)."""
    return {"event": "model_shadow", "agent": agent, "time": iso(now), "sha256": shadow.sha256,
            "live_sha256": live.sha256, "family": shadow.card.family}


def model_refused_event(*, agent: str, now: float, origin: str, reason: str, sha256: str | None,
                        running: ScoringModel) -> dict[str, Any]:
    """A candidate model (from ``origin``: start, file, mqtt) was refused; ``running_sha256`` keeps scoring."""
    return {"event": "model_refused", "agent": agent, "time": iso(now), "origin": origin, "sha256": sha256,
            "reason": reason, "running_sha256": running.sha256}


def model_unchanged_event(*, agent: str, now: float, sha256: str, **info: Any) -> dict[str, Any]:
    """A model message named the model that already runs: nothing changed (``info``: the message's note...)."""
    return {"event": "model_unchanged", "agent": agent, "time": iso(now), "sha256": sha256, **info}


# -- what subscribers get -----------------------------------------------------------------


@dataclass
class ScoredWindow:
    """One window the agent scored: its stream, time and sequence number, decision score, over or not."""

    slot: int
    stream: str
    ts: float
    seq: int
    score: float
    over: bool
    anomaly: float = float("nan")  # anomaly_score (agent/score_scale.py)


@dataclass
class BatchView:
    """What one processed batch contained, for batch subscribers (the live page, the run recorder)."""

    streams: list[str]
    ts: list[float]
    seq: list[int]
    values: np.ndarray  # [messages, n_features]
    scored: list[ScoredWindow]
    threshold: float


@dataclass
class Subscribers:
    """Who gets the agent's events (``on_event``), batch views (``on_batch``) and evicted streams' names
    (``on_forget``), besides the sinks.

    Separate lists because a batch view costs the hot path (every message's row
    is kept for it), so the agent builds one only while somebody subscribed
    to batches; events are few. ``on_forget`` lets a follower that keeps
    something per stream (the live page's traces, a Sparkplug device, a Home
    Assistant entity) drop it when the agent drops the stream, so its memory
    is bounded like the agent's whatever ids come and go.
    """

    on_event: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    on_batch: list[Callable[[BatchView], None]] = field(default_factory=list)
    on_forget: list[Callable[[list[str]], None]] = field(default_factory=list)

    def add(self, on_event: Callable[[dict[str, Any]], None] | None = None,
            on_batch: Callable[[BatchView], None] | None = None,
            on_forget: Callable[[list[str]], None] | None = None) -> Callable[[], None]:
        """Subscribe any of the three; returns what unsubscribes them."""
        pairs = ((self.on_event, on_event), (self.on_batch, on_batch), (self.on_forget, on_forget))
        for subscribed, callback in pairs:
            if callback is not None:
                subscribed.append(callback)  # type: ignore[arg-type]

        def remove() -> None:
            for subscribed, callback in pairs:
                if callback is not None and callback in subscribed:
                    subscribed.remove(callback)  # type: ignore[arg-type]
        return remove
