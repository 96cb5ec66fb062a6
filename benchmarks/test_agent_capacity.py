"""How many 20 Hz streams one core holds below 50 % CPU.

From the CPU time per message of a 100-stream run: ``streams = 0.5 / (20 ×
cost)``; then a paced run feeds that many streams at 20 Hz in real time and
measures the CPU share the process actually used.
"""

from __future__ import annotations

from dataclasses import asdict

from edgewatch.bench.agent_load import paced_cpu_share, streams_per_core, throughput

from .conftest import QUICK


def test_streams_per_core(benchmark, s0) -> None:
    path = s0.shipped

    def measure() -> dict:
        cost = throughput(path, 100, 30_000 if QUICK else 60_000)
        streams = streams_per_core(cost.cpu_us_per_message, rate_hz=20.0, cpu_share=0.5)
        paced = paced_cpu_share(path, streams, rate_hz=20.0, seconds=3.0 if QUICK else 8.0)
        return {"cpu_us_per_message": cost.cpu_us_per_message, "streams": streams, "paced": asdict(paced)}

    result = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.group = "agent capacity"
    benchmark.extra_info.update({"suite": "agent_capacity", "rate_hz": 20.0, "cpu_target": 0.5, **result})
    assert result["streams"] > 0 and 0 < result["paced"]["cpu_share"] < 2.0
