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
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

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


_C, _G, _H = MetricKind.COUNTER, MetricKind.GAUGE, MetricKind.HISTOGRAM

# attribute of AgentMetrics -> its metric; the only list of the agent's metrics (docs/agent.md shows them)
METRICS: dict[str, MetricSpec] = {
    "messages": MetricSpec("edgewatch_messages", _C, "Messages received (good and bad)"),
    "bad_messages": MetricSpec("edgewatch_bad_messages", _C, "Messages skipped, by reason", ("reason",)),
    "windows": MetricSpec("edgewatch_windows_scored", _C, "Windows scored"),
    "alerts": MetricSpec("edgewatch_alerts", _C, "Alert events emitted, by kind", ("kind",)),
    "drift": MetricSpec("edgewatch_drift_events", _C, "Drift events emitted"),
    "streams": MetricSpec("edgewatch_streams", _G, "Streams held now (at most --max-streams)"),
    "evicted_streams": MetricSpec("edgewatch_streams_evicted", _C, "Streams dropped after --stream-ttl idle"),
    "nonfinite_scores": MetricSpec("edgewatch_nonfinite_scores", _C, "Window scores that were NaN or infinite "
                                   "(reported as the float32 maximum, over the threshold)", ("kind",)),
    "ui_clients": MetricSpec("edgewatch_ui_clients", _G, "Live-page event streams open now"),
    "ui_refused": MetricSpec("edgewatch_ui_clients_refused", _C,
                             "Live-page event streams refused past --ui-max-clients"),
    "spool_depth": MetricSpec("edgewatch_spool_depth", _G, "Alerts waiting on disk for the broker"),
    "spool_dropped": MetricSpec("edgewatch_spool_dropped", _G, "Alerts dropped this run: the spool was full (the "
                                "oldest), or its disk refused writes and its memory queue was full (the newest)"),
    "publish_errors": MetricSpec("edgewatch_mqtt_publish_errors", _G,
                                 "MQTT publishes refused by paho or the broker"),
    "reconnects": MetricSpec("edgewatch_source_reconnects", _C, "Source reconnections", ("source",)),
    "source_restarts": MetricSpec("edgewatch_source_restarts", _C, "Source threads that died and were started "
                                  "again by the agent", ("source",)),
    "sources_running": MetricSpec("edgewatch_sources_running", _G, "Sources running now (not ended, not waiting "
                             "for a restart)"),
    "model_swaps": MetricSpec("edgewatch_model_swaps", _C, "Model files swapped in (or refused)", ("result",)),
    "latency": MetricSpec("edgewatch_inference_seconds", _H, "Time of one batched ONNX Runtime call",
                          buckets=LATENCY_BUCKETS),
    "batch_size": MetricSpec("edgewatch_inference_batch", _H, "Windows per batched call", buckets=BATCH_BUCKETS),
}


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

    def __getattr__(self, name: str) -> Any:
        """Reached only for a name missing from METRICS (also tells type checkers the table's names exist)."""
        raise AttributeError(f"the agent has no metric {name!r}: add it to METRICS in {__name__}")
