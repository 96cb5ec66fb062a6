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

from edgewatch.bench.agent_load import raw_messages, throughput
from edgewatch.bench.models import Engine
from edgewatch.bench.torch_loop import torch_loop, write_messages

from .test_agent_throughput import N_MESSAGES


ROUNDS = 3


@pytest.mark.parametrize("streams", [1, 100])
def test_torch_loop(benchmark, s0, tmp_path: Path, streams: int) -> None:
    """The loop and the agent (shipped S0 file) in alternating rounds, so both see the same machine load."""
    messages = write_messages(tmp_path / "messages.jsonl", raw_messages(N_MESSAGES, streams, seed=2))
    loops, agents = [], []

    def run() -> None:
        for _ in range(ROUNDS):
            loops.append(torch_loop(s0.checkpoint, messages))
            agents.append(throughput(s0.paths[Engine.ORT_FP32], streams, N_MESSAGES))

    benchmark.pedantic(run, rounds=1, iterations=1)
    loop = sorted(loops, key=lambda r: r.cpu_us_per_message)[ROUNDS // 2]
    agent = sorted(agents, key=lambda a: a.cpu_us_per_message)[ROUNDS // 2]
    benchmark.group = "pytorch loop"
    benchmark.extra_info.update({"suite": "torch_loop", **asdict(loop), "rounds": ROUNDS,
                                 "agent_cpu_us_per_message": agent.cpu_us_per_message,
                                 "agent_model_cpu_us_per_window": agent.model_cpu_us_per_window,
                                 "agent_windows_per_message": agent.windows / agent.messages})
    assert loop.messages == N_MESSAGES and loop.streams == streams
    assert loop.windows == pytest.approx(N_MESSAGES / 3, rel=0.05)  # each stream's first window waits 10 rows
    assert 0 < loop.model_cpu_us_per_window and 0 < agent.model_cpu_us_per_window < agent.cpu_us_per_message * 3.5
