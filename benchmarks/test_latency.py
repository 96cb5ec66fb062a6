"""Message-to-alert delay at 1,000 messages/s over a loopback websocket.

The simulator (``edgewatch simulate --with-time``) and the agent (``edgewatch
agent run --sink stdout``) run as two processes; alert lines are timestamped
when they arrive here and compared with the send time in the message.
"""

from __future__ import annotations

from dataclasses import asdict

from edgewatch.bench.agent_load import alert_latency

from .conftest import QUICK


def test_alert_latency(benchmark, s0) -> None:
    result = benchmark.pedantic(alert_latency, args=(s0.shipped,),
                                kwargs={"rate": 1000.0, "seconds": 5.0 if QUICK else 20.0},
                                rounds=1, iterations=1)
    benchmark.group = "alert latency"
    benchmark.extra_info.update({"suite": "alert_latency", **asdict(result)})
    assert result.events > 0 and result.p50_ms > 0
