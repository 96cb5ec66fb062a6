"""The agent's alternative: the same S0 network in a plain PyTorch eager loop, in the same run.

The loop (:mod:`edgewatch.bench.torch_loop`) reads the very messages the
agent throughput benchmark feeds the agent (same seed, same count, 1 and
100 streams), in its own process so that its peak resident memory is a
torch process's. The report divides the agent's figures by these.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from edgewatch.bench.agent_load import raw_messages
from edgewatch.bench.torch_loop import torch_loop, write_messages

from .test_agent_throughput import N_MESSAGES


@pytest.mark.parametrize("streams", [1, 100])
def test_torch_loop(benchmark, s0, tmp_path: Path, streams: int) -> None:
    messages = write_messages(tmp_path / "messages.jsonl", raw_messages(N_MESSAGES, streams, seed=2))
    result = benchmark.pedantic(torch_loop, args=(s0.checkpoint, messages), rounds=1, iterations=1)
    benchmark.group = "pytorch loop"
    benchmark.extra_info.update({"suite": "torch_loop", **asdict(result)})
    assert result.messages == N_MESSAGES and result.streams == streams
    assert result.windows == pytest.approx(N_MESSAGES / 3, rel=0.05)  # each stream's first window waits 10 rows
