"""Every event the agent emits is built here, and serialised by :func:`dumps`.

Why one module: a consumer (MQTT subscriber, JSONL reader, the live page)
must be able to rely on the shape of each kind, and every event must
serialise as strict JSON (``allow_nan=False``) whatever the data did, so
an episode's ``end`` can never become unsendable after its ``start`` went
out. Numbers that are not finite become ``null`` here, times outside what
``datetime`` can show become ``null``; nothing raises.

Kinds: ``start`` / ``end`` (an anomalous episode; QoS-1 alerts with an
idempotent ``id``, the raw ``score`` and ``threshold`` beside
``anomaly_score``, where 1.0 is the threshold for every family),
``drift`` / ``drift_end``, ``model`` (a model was swapped in),
``model_refused`` (a candidate model was refused; the running one stays).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from edgewatch import digests

if TYPE_CHECKING:
    from edgewatch.agent.drift_watch import DriftEvent
    from edgewatch.agent.episodes import Transition
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.score_scale import ScoreScale


def dumps(event: dict[str, Any]) -> str:
    """Strict JSON of an event; a non-finite number anywhere becomes ``null`` rather than an error."""
    try:
        return json.dumps(event, separators=(",", ":"), allow_nan=False, default=_default)
    except ValueError:  # a NaN/inf that a builder did not clean (an observer's own field, say)
        return json.dumps(finite(event), separators=(",", ":"), allow_nan=False, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    try:
        return number(float(value))
    except (TypeError, ValueError):
        return str(value)


def finite(value: Any) -> Any:
    """``value`` with every NaN and infinity (in dicts, lists, tuples, NumPy scalars) as None, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.generic):
        return finite(value.item())
    return value


def number(value: float | None, digits: int | None = None) -> float | None:
    """A JSON-safe number: ``None`` for None, NaN and infinities, else (optionally rounded) float."""
    if value is None:
        return None
    f = float(value)
    if not math.isfinite(f):
        return None
    return round(f, digits) if digits is not None else f


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC time of epoch seconds, or None when ``datetime`` cannot show it (never raises)."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None


def _model(model: ScoringModel) -> dict[str, Any]:
    return {"sha256": model.sha256, "family": model.card.family}


def episode_event(tr: Transition, *, agent: str, stream: str, threshold: float, scale: ScoreScale,
                  model: ScoringModel, now: float, features: Sequence[str] = (),
                  feature_error: np.ndarray | None = None, top: int = 3, reason: str | None = None,
                  closed_at: float | None = None) -> dict[str, Any]:
    """``start`` or ``end`` of an anomalous episode; ``id`` is the same for a redelivery of the same event.

    ``score`` is the episode's peak score in the model's units, ``threshold``
    the score it alerts above, and ``anomaly_score`` the peak on ``scale``
    (1.0 = the threshold for every family).

    ``closed_at``: the agent's wall-clock time when it ended the episode for ``reason`` (stopping, a model
    swap, an idle stream) rather than by its data; the episode's times stay those of the stream's messages.
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
    if feature_error is not None and len(features):
        event["top_features"] = top_features(feature_error, features, top)
    if reason:
        event["reason"] = reason
    if closed_at is not None:
        event["closed_at"] = iso(closed_at)
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


def drift_event(ev: DriftEvent, *, agent: str, stream: str, model: ScoringModel, now: float) -> dict[str, Any]:
    """``drift`` when a stream starts drifting (or in other features), ``drift_end`` when it is back."""
    event: dict[str, Any] = {"event": "drift" if ev.features else "drift_end", "agent": agent, "stream": stream,
                             "time": iso(now), "ts": now, "model": _model(model)}
    event.update(finite({k: v for k, v in asdict(ev).items() if k != "slot"}))
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
