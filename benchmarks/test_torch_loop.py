"""The agent against what a user would run instead: the same S0 network in a plain PyTorch eager loop.

One set of alternating rounds, all on the very messages the agent
throughput benchmark feeds (100 streams, same seed and count): the loop
(:mod:`edgewatch.bench.torch_loop`, its own process) with the agent's
windows per call and with 64, then the agent with the shipped sentinel int8
file and the fp32 agent as it ran before issue 28 (fp32 file, 16 windows a
call), these two taking turns batch by batch in one process. The report
divides these figures, and the network alone (timed inside each engine's
calls) by each other.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from edgewatch.agent.engine import SCORE_BATCH
from edgewatch.bench.agent_load import interleaved_agents, raw_messages
from edgewatch.bench.models import Engine
from edgewatch.bench.torch_loop import torch_loop, write_messages

from .test_agent_throughput import N_MESSAGES

ROUNDS = 3
STREAMS = 100
FP32_BEFORE = 16  # windows per call of the fp32 agent before issue 28


def test_agent_vs_torch_loop(benchmark, s0, tmp_path: Path) -> None:
    messages = write_messages(tmp_path / "messages.jsonl", raw_messages(N_MESSAGES, STREAMS, seed=2))
    runs: dict[str, list] = {"loop_agent_batch": [], "loop_64": [], "agent": [], "agent_fp32": []}

    def run() -> None:
        for _ in range(ROUNDS):
            runs["loop_agent_batch"].append(torch_loop(s0.checkpoint, messages, batch=SCORE_BATCH))
            agents = interleaved_agents({"agent": (s0.shipped, None),
                                         "agent_fp32": (s0.paths[Engine.ORT_FP32], FP32_BEFORE)},
                                        STREAMS, N_MESSAGES)
            runs["agent"].append(agents["agent"])
            runs["agent_fp32"].append(agents["agent_fp32"])
            runs["loop_64"].append(torch_loop(s0.checkpoint, messages, batch=64))

    benchmark.pedantic(run, rounds=1, iterations=1)
    med = {k: {f: statistics.median(getattr(r, f) for r in v)
               for f in ("cpu_us_per_message", "model_cpu_us_per_window")} for k, v in runs.items()}
    loop = runs["loop_64"][0]
    agent = runs["agent"][0]
    benchmark.group = "pytorch loop"
    benchmark.extra_info.update({
        "suite": "agent_vs_loop", "streams": STREAMS, "messages": N_MESSAGES, "rounds": ROUNDS,
        "agent_batch": SCORE_BATCH, "fp32_batch": FP32_BEFORE, "windows": loop.windows,
        "agent_windows_per_message": agent.windows / agent.messages,
        "loop_max_rss_mib": max(r.max_rss_mib for r in runs["loop_64"]), "cpu_us_per_message": {
            k: v["cpu_us_per_message"] for k, v in med.items()},
        "model_us_per_window": {k: v["model_cpu_us_per_window"] for k, v in med.items()},
        "rounds_cpu_us_per_message": {k: [r.cpu_us_per_message for r in v] for k, v in runs.items()}})
    assert all(len(v) == ROUNDS for v in runs.values())
    assert [r.messages for r in runs["loop_64"]] == [N_MESSAGES] * ROUNDS and loop.streams == STREAMS
    assert loop.windows == pytest.approx(N_MESSAGES / 3, rel=0.05)  # each stream's first window waits 10 rows
    assert all(0 < v["model_cpu_us_per_window"] for v in med.values())
