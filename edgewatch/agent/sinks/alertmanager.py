"""``alertmanager://HOST:PORT`` (``alertmanagers://`` for TLS): episodes as Prometheus Alertmanager alerts.

Each anomalous episode is one alert, posted to ``/api/v2/alerts``:

* labels ``alertname`` (default ``EdgewatchEpisode``), ``agent``,
  ``stream``, ``model`` (the family), ``episode`` (a digest of agent,
  stream and the episode's first window: a new episode on the same stream
  is a new alert, a re-send of the same one deduplicates), ``severity``
  (default ``warning``), plus any ``label=name:value``;
* annotations ``summary``, ``description``, ``top_features``
  (``flow 74%, temp 20%``), ``anomaly_score``, ``score``, ``threshold``;
* ``startsAt`` the episode's start; ``endsAt`` its end, sent when it closes.

Alertmanager ends an alert by itself ``resolve_timeout`` (default 5 min)
after the last post without ``endsAt``, and keeps alerts only in memory.
So every open episode is posted again every ``resend`` seconds (default
60), which also gives a restarted Alertmanager its alerts back within one
interval. Starts and ends go through the sink's spool
(:mod:`.http_delivery`) in order: while Alertmanager is down they wait on
disk, and when it returns each start is followed by its end if the
episode closed meanwhile. Re-sends are not spooled: the next interval
replaces a lost one. Other events (drift, model events) are not alerts
here; a webhook sink takes them.

Settings (query keys or ``[[sink]]`` table keys): ``resend``,
``alertname``, ``label=name:value`` (repeatable; ``labels`` table),
and the HTTP keys of :mod:`.webhook` (``header``, ``token_file``,
``timeout``, ``retry_min``, ``retry_max``, ``ca_file``, ``tls_insecure``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from edgewatch import digests
from edgewatch.agent.sinks.base import SinkConfigError, SinkContext, SinkSpec
from edgewatch.agent.sinks.http_delivery import (HTTP_KEYS, Answer, HttpPoster, SpooledHttpSink, as_float,
                                                 http_options, refuse_unknown)
from edgewatch.agent.sinks.registry import register
from edgewatch.wire.json import dumps, iso

DEFAULT_PORT = 9093
DEFAULT_RESEND = 60.0
DEFAULT_ALERTNAME = "EdgewatchEpisode"
OWN_KEYS = ("resend", "alertname", "label", "labels")
LABEL_NAME_FIRST = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


class AlertmanagerSink(SpooledHttpSink):
    """Episodes as Alertmanager alerts; see the module docstring."""

    def __init__(self, poster: HttpPoster, context: SinkContext, resend: float = DEFAULT_RESEND,
                 alertname: str = DEFAULT_ALERTNAME, labels: Mapping[str, str] | None = None) -> None:
        self.resend = resend
        self.alertname = alertname
        self.labels = dict(labels or {})
        self._open: dict[str, dict[str, Any]] = {}  # episode label -> its alert without endsAt
        self._lock = threading.Lock()
        self._next_resend = time.monotonic() + resend
        self.resent = 0  # posts of open alerts this run
        super().__init__("alertmanager", poster, context, idle=self._resend_open)

    def send(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind not in ("start", "end"):
            return
        alert = self.alert(event)
        key = alert["labels"]["episode"]
        with self._lock:
            if kind == "start":
                self._open[key] = alert
            else:
                opened = self._open.pop(key, None)
                if opened is not None:  # the labels it was opened with (a model swap may have ended it)
                    alert["labels"] = opened["labels"]
        self.sender.append(dumps([alert]).encode())

    def alert(self, event: dict[str, Any]) -> dict[str, Any]:
        """The Alertmanager alert of a ``start`` or ``end`` event."""
        agent, stream = str(event.get("agent", "")), str(event.get("stream", ""))
        ep = event.get("episode") or {}
        episode = digests.sha1(f"{agent}|{stream}|{ep.get('start_ts')!r}|{ep.get('start_seq')}".encode()
                               ).hexdigest()[:16]
        model = event.get("model") or {}
        labels = {"alertname": self.alertname, "severity": "warning", **self.labels, "agent": agent,
                  "stream": stream, "model": str(model.get("family", "")), "episode": episode}
        features = ", ".join(f"{f['feature']} {100 * (f.get('share') or 0):.0f}%"
                             for f in event.get("top_features") or [])
        anomaly = event.get("anomaly_score")
        annotations = {
            "summary": f"anomaly on {stream} (agent {agent})",
            "description": (f"anomaly_score {anomaly:.3g} (1 = the model's threshold)" if isinstance(anomaly, (int, float))
                            else "anomaly_score unknown") + (f"; top features: {features}" if features else ""),
            "top_features": features,
            "anomaly_score": str(anomaly),
            "score": str(event.get("score")),
            "threshold": str(event.get("threshold")),
            "model_sha256": str(model.get("sha256", "")),
        }
        starts = iso(ep.get("start_ts")) or event.get("time") or iso(time.time())
        alert: dict[str, Any] = {"labels": labels, "annotations": annotations, "startsAt": starts}
        if event.get("event") == "end":
            ends = iso(ep.get("end_ts")) or event.get("closed_at") or iso(time.time())
            alert["endsAt"] = max(ends, starts)  # same format and zone: text order is time order
        return alert

    def _resend_open(self) -> Answer | None:
        """Called by the sender thread when the spool is empty: post the open alerts when ``resend`` is due."""
        now = time.monotonic()
        if now < self._next_resend:
            return None
        with self._lock:
            alerts = list(self._open.values())
        self._next_resend = now + self.resend
        if not alerts:
            return None
        answer = self.sender.poster.post(dumps(alerts).encode())
        if answer.ok:
            self.resent += 1
        else:
            self._next_resend = now  # due again after the sender's backoff
        return answer

    @property
    def open_alerts(self) -> int:
        with self._lock:
            return len(self._open)



def labels_of(settings: dict[str, Any]) -> dict[str, str]:
    """``label=name:value`` (repeatable) and a ``labels`` table; names as Prometheus allows them."""
    out: dict[str, str] = {}
    given = settings.pop("label", [])
    for item in [given] if isinstance(given, str) else list(given):
        name, sep, value = str(item).partition(":")
        if not sep:
            raise SinkConfigError(f"label={item!r}: write it as name:value")
        out[name.strip()] = value.strip()
    table = settings.pop("labels", {})
    if not isinstance(table, Mapping):
        raise SinkConfigError(f"labels = {table!r}: give a table, e.g. labels = {{ team = \"plant-north\" }}")
    out.update({str(k): str(v) for k, v in table.items()})
    for name in out:
        if not name or name[0] not in LABEL_NAME_FIRST or not all(c.isalnum() or c == "_" for c in name):
            raise SinkConfigError(f"label {name!r}: a Prometheus label name is letters, digits and _ (not first)")
        if name in ("agent", "stream", "model", "episode", "alertname"):
            raise SinkConfigError(f"label {name!r} is set by the sink (alertname= changes the alert's name)")
    return out


@register("alertmanager", "alertmanagers", form="alertmanager[s]://HOST[:PORT]")
def _build(spec: SinkSpec, context: SinkContext) -> AlertmanagerSink:
    parts = urlsplit(spec.url)
    if not parts.hostname:
        raise SinkConfigError(f"{spec.url!r}: write alertmanager://HOST:PORT (port {DEFAULT_PORT} if left out)")
    scheme = "https" if parts.scheme.lower() == "alertmanagers" else "http"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    target = f"{scheme}://{host}:{parts.port or DEFAULT_PORT}{parts.path.rstrip('/')}/api/v2/alerts"
    settings = spec.settings(repeatable=frozenset({"header", "label"}))
    resend = as_float(settings, "resend", DEFAULT_RESEND)
    if not 1 <= resend <= 3600:
        raise SinkConfigError(f"resend={resend:g}: give seconds between 1 and 3600, below Alertmanager's "
                              "resolve_timeout (default 5 min)")
    alertname = str(settings.pop("alertname", DEFAULT_ALERTNAME))
    labels = labels_of(settings)
    options = http_options(target, settings)
    refuse_unknown(spec.url, settings, HTTP_KEYS + OWN_KEYS)
    return AlertmanagerSink(HttpPoster(options), context, resend=resend, alertname=alertname, labels=labels)
