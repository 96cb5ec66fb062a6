"""Prometheus metrics of one agent (its own registry, so several agents can live in a test).

Every metric is one row of :data:`METRICS`; :class:`AgentMetrics` builds
its attributes from that table, as Prometheus objects with ``--metrics``
or as stand-ins without. Why one table: the stand-ins were once a list of
names kept by hand, it missed three, and every default agent (no
``--metrics``) then died on the first stream eviction, overflowing score
or live-page client. Without ``--metrics`` nobody can scrape them: the
stand-ins count nothing and ``prometheus_client`` is never imported (about
5 MiB of resident memory with the ``http``/``email`` modules it pulls in;
see docs/platform.md).

Per-stream series (:data:`STREAM_SERIES`) are not updated per message:
the loop adds one batch's windows and anomaly scores to a
:class:`StreamSeries` (per stream slot), and :class:`StreamCollector`
reads it with the agent's stream table when Prometheus scrapes. At most
``--metrics-max-streams`` streams get their own ``stream`` label; the
others are folded into ``stream="_other"`` and counted, so a fleet of
sensor ids cannot blow up Prometheus's series count.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgewatch.agent.score_scale import SCORE_CAP

if TYPE_CHECKING:
    from edgewatch.agent.engine import Agent
    from edgewatch.agent.score_scale import ScoreScale

LATENCY_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class MetricKind(enum.Enum):
    COUNTER = "Counter"
    GAUGE = "Gauge"
    HISTOGRAM = "Histogram"


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its Prometheus name (a counter's ``_total`` is added by the client), kind, help, labels."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def build(self, registry: Any) -> Any:
        import prometheus_client

        cls = getattr(prometheus_client, self.kind.value)
        extra = {"buckets": self.buckets} if self.buckets else {}
        return cls(self.name, self.help, list(self.labels), registry=registry, **extra)

    def family(self) -> Any:
        """An empty metric family of this spec, for a collector to fill at scrape time."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        cls = CounterMetricFamily if self.kind is MetricKind.COUNTER else GaugeMetricFamily
        return cls(self.name, self.help, labels=list(self.labels))


_C, _G, _H = MetricKind.COUNTER, MetricKind.GAUGE, MetricKind.HISTOGRAM

# attribute of AgentMetrics -> its metric; the only list of the agent's metrics (docs/agent.md shows them)
METRICS: dict[str, MetricSpec] = {
    "messages": MetricSpec("edgewatch_messages", _C, "Messages received (good and bad)"),
    "bad_messages": MetricSpec("edgewatch_bad_messages", _C, "Messages skipped, by reason", ("reason",)),
    "windows": MetricSpec("edgewatch_windows_scored", _C, "Windows scored"),
    "alerts": MetricSpec("edgewatch_alerts", _C, "Alert events emitted, by kind", ("kind",)),
    "episodes_held": MetricSpec("edgewatch_episodes_held", _C, "Episodes not sent: their stream was in its "
                                "first --quiet-start seconds"),
    "drift": MetricSpec("edgewatch_drift_events", _C, "Drift events emitted"),
    "streams": MetricSpec("edgewatch_streams", _G, "Streams held now (at most --max-streams)"),
    "evicted_streams": MetricSpec("edgewatch_streams_evicted", _C, "Streams dropped after --stream-ttl idle"),
    "nonfinite_scores": MetricSpec("edgewatch_nonfinite_scores", _C, "Window scores that were NaN or infinite "
                                   "(reported as the float32 maximum, over the threshold)", ("kind",)),
    "ui_clients": MetricSpec("edgewatch_ui_clients", _G, "Live-page event streams open now"),
    "ui_refused": MetricSpec("edgewatch_ui_clients_refused", _C,
                             "Live-page event streams refused past --ui-max-clients"),
    "spool_depth": MetricSpec("edgewatch_spool_depth", _G, "Alerts waiting on disk for the broker or the HTTP "
                              "receiver (every sink's spool)"),
    "spool_dropped": MetricSpec("edgewatch_spool_dropped", _G, "Alerts dropped this run: the spool was full (the "
                                "oldest), or its disk refused writes and its memory queue was full (the newest)"),
    "sink_dropped": MetricSpec("edgewatch_sink_dropped", _C, "Events a sink could not keep (a JSONL file whose "
                               "disk refused the write, a standard output whose reader took none), by sink", ("sink",)),
    "sink_http_failures": MetricSpec("edgewatch_sink_http_failures", _C, "HTTP deliveries of the webhook and "
                                     "Alertmanager sinks that failed, by sink and status (an HTTP code, timeout, "
                                     "connection, tls)", ("sink", "status")),
    "sink_parked": MetricSpec("edgewatch_sink_parked", _C, "Events an HTTP sink's receiver refused for good (a 4xx "
                              "other than 408/429): kept in the sink's rejected.jsonl, not retried", ("sink",)),
    "publish_errors": MetricSpec("edgewatch_mqtt_publish_errors", _G,
                                 "MQTT publishes refused by paho or the broker"),
    "reconnects": MetricSpec("edgewatch_source_reconnects", _C, "Source reconnections", ("source",)),
    "source_restarts": MetricSpec("edgewatch_source_restarts", _C, "Source threads that died and were started "
                                  "again by the agent", ("source",)),
    "sparkplug_rebirths": MetricSpec("edgewatch_sparkplug_rebirths", _C, "Sparkplug rebirth requests (NCMD "
                                     "Node Control/Rebirth) sent to edge nodes whose births the source "
                                     "missed, by source", ("source",)),
    "sources_running": MetricSpec("edgewatch_sources_running", _G, "Sources running now (not ended, not waiting "
                             "for a restart)"),
    "model_swaps": MetricSpec("edgewatch_model_swaps", _C, "Model files swapped in (or refused)", ("result",)),
    "latency": MetricSpec("edgewatch_inference_seconds", _H, "Time of one batched ONNX Runtime call",
                          buckets=LATENCY_BUCKETS),
    "batch_size": MetricSpec("edgewatch_inference_batch", _H, "Windows per batched call", buckets=BATCH_BUCKETS),
}


OTHER_STREAMS = "_other"  # the stream label of the streams past --metrics-max-streams
DEFAULT_METRICS_MAX_STREAMS = 100
MODEL_LABELS = ("sha256", "family", "quantization", "window", "stride", "threshold", "sensitivity")

# read at scrape time by StreamCollector; names as Prometheus shows them (a counter's ``_total`` added)
STREAM_SERIES: dict[str, MetricSpec] = {
    "anomaly_score": MetricSpec("edgewatch_anomaly_score", _G, "anomaly_score of the stream's last scored window "
                                "(1 = the model's threshold, times --sensitivity; _other: the largest)", ("stream",)),
    "alerting": MetricSpec("edgewatch_stream_alerting", _G, "1 while the stream is in an alert episode, else 0 "
                           "(_other: 1 when any of them is)", ("stream",)),
    "age": MetricSpec("edgewatch_stream_last_message_age_seconds", _G, "Seconds since the stream's last message "
                      "(_other: the longest)", ("stream",)),
    "windows": MetricSpec("edgewatch_stream_windows", _C, "Windows of the stream scored (_other: their sum, which "
                          "falls when a stream is dropped)", ("stream",)),
    "aggregated": MetricSpec("edgewatch_streams_aggregated", _G, "Streams held now whose series are folded into "
                             'stream="_other" (past --metrics-max-streams)'),
    "model_info": MetricSpec("edgewatch_model_info", _G, "The model that scores: always 1, its identity in the "
                             "labels (threshold: the score it alerts above)", MODEL_LABELS),
}


class StreamSeries:
    """Windows scored and the last anomaly_score per stream slot, updated once per scored batch.

    Plain lists and float arithmetic: a batch holds at most a few dozen
    windows, and NumPy's per-call cost (``np.add.at``, a clip) was most of
    the update; measured in benchmarks/test_agent_throughput.py. The loop
    writes and a scrape reads without a lock: a scrape may see one batch
    half added, never a broken number.
    """

    def __init__(self) -> None:
        self.windows: list[int] = []
        self.anomaly: list[float] = []

    def scored(self, slots: list[int], scores: list[float], scale: ScoreScale) -> None:
        """Count one batch's windows of ``slots`` (in order) and keep each slot's last anomaly_score."""
        if not slots:
            return
        windows, last = self.windows, self.anomaly
        grow = max(slots) + 1 - len(windows)
        if grow > 0:
            windows.extend([0] * grow)
            last.extend([math.nan] * grow)
        origin, factor = scale.origin, scale.sensitivity / scale.span
        for slot, score in zip(slots, scores):
            windows[slot] += 1
            last[slot] = (score - origin) * factor

    def forget(self, slot: int) -> None:
        """The stream of ``slot`` was dropped: its slot starts again from nothing for the next stream."""
        if slot < len(self.windows):
            self.windows[slot] = 0
            self.anomaly[slot] = math.nan

    def read(self, slot: int) -> tuple[int, float]:
        """(windows scored, last anomaly_score within +-SCORE_CAP, or NaN) of ``slot``."""
        if slot < min(len(self.windows), len(self.anomaly)):
            value = self.anomaly[slot]
            return self.windows[slot], value if value != value else max(-SCORE_CAP, min(SCORE_CAP, value))
        return 0, math.nan


class UnexportedStreams:
    """The per-stream series when nobody scrapes them: the loop's calls do nothing."""

    def scored(self, slots: list[int], scores: list[float], scale: ScoreScale) -> None:
        pass

    def forget(self, slot: int) -> None:
        pass


class StreamCollector:
    """A Prometheus collector of :data:`STREAM_SERIES`, read from ``agent`` when scraped."""

    def __init__(self, agent: Agent, max_streams: int = DEFAULT_METRICS_MAX_STREAMS) -> None:
        self.agent = agent
        self.max_streams = max_streams

    def describe(self) -> Iterator[Any]:
        for spec in STREAM_SERIES.values():
            yield spec.family()

    def collect(self) -> Iterator[Any]:
        agent = self.agent
        series = agent.metrics.stream_series
        fam = {key: spec.family() for key, spec in STREAM_SERIES.items()}
        other: list[tuple[float, bool, float, int]] = []
        for st in agent.stream_states():
            windows, anomaly = series.read(st.slot)
            if st.slot >= self.max_streams:
                other.append((anomaly, st.alerting, st.age, windows))
                continue
            _add_stream(fam, st.name, anomaly, st.alerting, st.age, windows)
        if other:
            anomalies = [a for a, *_ in other if a == a]
            _add_stream(fam, OTHER_STREAMS, max(anomalies) if anomalies else float("nan"),
                        any(o[1] for o in other), max(o[2] for o in other), sum(o[3] for o in other))
        fam["aggregated"].add_metric([], len(other))
        rt = agent.runtime
        card = rt.card
        fam["model_info"].add_metric([rt.sha256, card.family, card.quantization.value, str(rt.window),
                                      str(rt.stride), f"{rt.threshold:.6g}", f"{rt.scale.sensitivity:g}"], 1)
        yield from fam.values()


def _add_stream(fam: dict[str, Any], name: str, anomaly: float, alerting: bool, age: float, windows: int) -> None:
    if anomaly == anomaly:  # no series before the stream's first scored window
        fam["anomaly_score"].add_metric([name], anomaly)
    fam["alerting"].add_metric([name], 1.0 if alerting else 0.0)
    fam["age"].add_metric([name], round(age, 3))
    fam["windows"].add_metric([name], windows)


class Unexported:
    """A metric nobody scrapes: takes every update of a Counter, Gauge or Histogram and keeps none."""

    def labels(self, *_values: Any, **_named: Any) -> Unexported:
        return self

    def inc(self, amount: float = 1.0) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass

    def set_function(self, f: Any) -> None:
        pass


class AgentMetrics:
    """The agent's metrics, one attribute per row of :data:`METRICS`; :class:`Unexported` without ``--metrics``."""

    def __init__(self, exported: bool = True) -> None:
        self.exported = exported
        self.registry: Any = None
        if exported:
            from prometheus_client import CollectorRegistry

            self.registry = CollectorRegistry(auto_describe=True)
        stand_in = Unexported()
        for attr, spec in METRICS.items():
            setattr(self, attr, spec.build(self.registry) if exported else stand_in)
        self.stream_series: StreamSeries | UnexportedStreams = StreamSeries() if exported else UnexportedStreams()

    def watch_streams(self, agent: Agent, max_streams: int = DEFAULT_METRICS_MAX_STREAMS) -> None:
        """Export ``agent``'s per-stream series (at most ``max_streams`` labelled); nothing when not exported."""
        if self.registry is not None:
            self.registry.register(StreamCollector(agent, max_streams))

    def __getattr__(self, name: str) -> Any:
        """Reached only for a name missing from METRICS (also tells type checkers the table's names exist)."""
        raise AttributeError(f"the agent has no metric {name!r}: add it to METRICS in {__name__}")
