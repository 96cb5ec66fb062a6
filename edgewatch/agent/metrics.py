"""Prometheus metrics of one agent (its own registry, so several agents can live in a test).

Without ``--metrics`` nobody can scrape them: the agent then uses stand-ins
that count nothing and never imports ``prometheus_client`` (about 5 MiB of
resident memory with the ``http``/``email`` modules it pulls in; see
docs/platform.md).
"""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


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
    """The agent's counters; ``exported=False`` (no ``--metrics``) makes them :class:`Unexported`."""

    def __init__(self, exported: bool = True) -> None:
        self.exported = exported
        self.registry: Any = None
        if not exported:
            for name in ("messages", "bad_messages", "windows", "alerts", "drift", "streams", "spool_depth",
                         "reconnects", "model_swaps", "latency", "batch_size"):
                setattr(self, name, Unexported())
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter("edgewatch_messages", "Messages received (good and bad)", registry=r)
        self.bad_messages = Counter("edgewatch_bad_messages", "Messages skipped, by reason", ["reason"], registry=r)
        self.windows = Counter("edgewatch_windows_scored", "Windows scored", registry=r)
        self.alerts = Counter("edgewatch_alerts", "Alert events emitted, by kind", ["kind"], registry=r)
        self.drift = Counter("edgewatch_drift_events", "Drift events emitted", registry=r)
        self.streams = Gauge("edgewatch_streams", "Streams held now (at most --max-streams)", registry=r)
        self.evicted_streams = Counter("edgewatch_streams_evicted", "Streams dropped after --stream-ttl idle",
                                       registry=r)
        self.nonfinite_scores = Counter("edgewatch_nonfinite_scores", "Window scores that were NaN or infinite "
                                        "(reported as the float32 maximum, over the threshold)", ["kind"],
                                        registry=r)
        self.ui_clients = Gauge("edgewatch_ui_clients", "Live-page event streams open now", registry=r)
        self.ui_refused = Counter("edgewatch_ui_clients_refused", "Live-page event streams refused past "
                                  "--ui-max-clients", registry=r)
        self.spool_depth = Gauge("edgewatch_spool_depth", "Alerts waiting on disk for the broker", registry=r)
        self.reconnects = Counter("edgewatch_source_reconnects", "Source reconnections", ["source"], registry=r)
        self.model_swaps = Counter("edgewatch_model_swaps", "Model files swapped in (or refused)", ["result"],
                                   registry=r)
        self.latency = Histogram("edgewatch_inference_seconds", "Time of one batched ONNX Runtime call",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("edgewatch_inference_batch", "Windows per batched call",
                                    buckets=BATCH_BUCKETS, registry=r)
