"""Resident memory of ``edgewatch agent run`` with the S0 model on a CSV replay (from /proc)."""

from __future__ import annotations

from dataclasses import asdict

from edgewatch.bench.agent_load import agent_rss, stream_memory
from edgewatch.bench.models import Engine

from .conftest import QUICK


def test_agent_rss(benchmark, s0) -> None:
    rows = 8_000 if QUICK else 20_000
    result = benchmark.pedantic(agent_rss, args=(s0.paths[Engine.ORT_FP32],), kwargs={"rows": rows},
                                rounds=1, iterations=1)
    benchmark.group = "agent memory"
    benchmark.extra_info.update({"suite": "agent_rss", **asdict(result)})
    assert result.messages == rows
    assert not result.torch_mapped, "the agent process loaded libtorch"


def test_memory_per_stream(benchmark, s0) -> None:
    """What one more stream costs with the S0 model (window, drift sample): sizes --max-streams."""
    streams = 2_000 if QUICK else 9_800
    result = benchmark.pedantic(stream_memory, args=(s0.paths[Engine.ORT_INT8],), kwargs={"streams": streams},
                                rounds=1, iterations=1)
    benchmark.group = "agent memory"
    benchmark.extra_info.update({"suite": "stream_memory", **asdict(result)})
    assert result.streams == streams and result.kib_per_stream > 0
