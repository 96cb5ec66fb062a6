"""Resident memory of ``edgewatch agent run`` with the S0 model on a CSV replay (from /proc)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from edgewatch.bench.agent_load import agent_rss, stream_memory
from edgewatch.bench.memory import agent_memory, first_score_latency

from .conftest import QUICK


def test_agent_rss(benchmark, s0) -> None:
    rows = 8_000 if QUICK else 20_000
    result = benchmark.pedantic(agent_rss, args=(s0.shipped,), kwargs={"rows": rows},
                                rounds=1, iterations=1)
    benchmark.group = "agent memory"
    benchmark.extra_info.update({"suite": "agent_rss", **asdict(result)})
    assert result.messages == rows
    assert not result.torch_mapped, "the agent process loaded libtorch"


def test_memory_per_stream(benchmark, s0) -> None:
    """What one more stream costs with the S0 model (window, drift sample): sizes --max-streams."""
    streams = 2_000 if QUICK else 9_800
    result = benchmark.pedantic(stream_memory, args=(s0.shipped,), kwargs={"streams": streams},
                                rounds=1, iterations=1)
    benchmark.group = "agent memory"
    benchmark.extra_info.update({"suite": "stream_memory", **asdict(result)})
    assert result.streams == streams and result.kib_per_stream > 0


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "equipment-lstm-ae.onnx"


def test_agent_memory_shipped_model(benchmark) -> None:
    """The issue's figure: peak RSS (VmHWM, as /usr/bin/time -v) on 200,000 replayed rows with the
    shipped model, beside 20,000 rows, where it goes by mapping, and the first score after start."""
    long_rows = 50_000 if QUICK else 200_000
    short = agent_memory(SHIPPED, 20_000)
    first = min(first_score_latency(SHIPPED) for _ in range(3))
    result = benchmark.pedantic(agent_memory, args=(SHIPPED, long_rows), rounds=1, iterations=1)
    benchmark.group = "agent memory"
    benchmark.extra_info.update({
        "suite": "agent_memory", "rows": long_rows, "peak_rss_mib": round(result.peak_rss_mib, 1),
        "rows_short": short.rows, "peak_rss_mib_short": round(short.peak_rss_mib, 1),
        "first_score_s": round(first, 3), "file_backed_mib": round(result.file_backed_mib, 1),
        "anonymous_mib": round(result.anonymous_mib, 1), "by_mapping_mib": result.by_mapping_mib,
        "large_folio_mib": None if result.large_folio_mib is None else round(result.large_folio_mib, 1),
        "libraries_cached_mib": round(result.libraries_cached_mib, 1),
        "libraries_mib": round(result.libraries_mib, 1),
        "messages_per_s": round(result.messages / result.seconds)})
    assert result.messages == long_rows and short.messages == short.rows
