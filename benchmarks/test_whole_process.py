"""Whole processes on 200,000 JSON messages over 100 streams on stdin: the agent against a PyTorch script.

``edgewatch agent run --model S0 --source stdin`` (the shipped sentinel
int8 form, its defaults otherwise) and the plain PyTorch script with
batches of 64 (:mod:`edgewatch.bench.torch_loop` run whole), each timed as
a whole process, imports included, in alternating rounds
(:mod:`edgewatch.bench.whole_process`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from edgewatch.bench.agent_load import raw_messages
from edgewatch.bench.torch_loop import write_messages
from edgewatch.bench.whole_process import whole_processes

from .conftest import QUICK

MESSAGES = 200_000
STREAMS = 100


def test_whole_processes(benchmark, s0, tmp_path: Path) -> None:
    messages = write_messages(tmp_path / "messages.jsonl", raw_messages(MESSAGES, STREAMS, seed=5))
    result = benchmark.pedantic(whole_processes, args=(s0.shipped, s0.checkpoint, messages, MESSAGES, STREAMS),
                                kwargs={"rounds": 2 if QUICK else 3}, rounds=1, iterations=1)
    benchmark.group = "whole processes"
    benchmark.extra_info.update({"suite": "whole_process", **asdict(result), "agent_cpu_s": result.agent_cpu_s,
                                 "loop_cpu_s": result.loop_cpu_s, "ratio": result.ratio})
    assert result.agent_cpu_s > 0 and result.loop_cpu_s > 0 and len(result.agent) == len(result.loop)
