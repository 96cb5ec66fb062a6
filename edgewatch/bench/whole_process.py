"""Whole processes: ``edgewatch agent run`` against a plain PyTorch script, same messages on stdin.

What a user compares when choosing: start the program, pipe the data in,
wait for it to finish. Both read the same JSON lines (``{"stream": ...,
"values": [...]}``, 100 streams) from standard input: the agent with its
defaults (``--source stdin``, alerts to a JSONL file), the script
(:mod:`edgewatch.bench.torch_loop` run as ``python -m``) with windows
scored in batches of 64. Each process's CPU time is counted whole, imports,
model loading and exit included (``getrusage(RUSAGE_CHILDREN)`` around it),
its peak resident memory is sampled from ``/proc`` (VmHWM). The two run in
alternating rounds, so a busy spell of the shared machine hits both;
medians are reported. Linux only.
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgewatch.bench.agent_load import edgewatch_command, run_watched
from edgewatch.bench.torch_loop import loop_command
from edgewatch.errors import EdgewatchError


@dataclass
class ProcessRun:
    cpu_seconds: float  # user + system of the whole process
    wall_seconds: float
    peak_rss_mib: float  # VmHWM, sampled until the end


@dataclass
class WholeProcess:
    messages: int
    streams: int
    loop_batch: int
    agent: list[ProcessRun] = field(default_factory=list)
    loop: list[ProcessRun] = field(default_factory=list)

    @property
    def agent_cpu_s(self) -> float:
        return statistics.median(r.cpu_seconds for r in self.agent)

    @property
    def loop_cpu_s(self) -> float:
        return statistics.median(r.cpu_seconds for r in self.loop)

    @property
    def ratio(self) -> float:
        """The agent's messages per CPU-second over the script's (same messages)."""
        return self.loop_cpu_s / self.agent_cpu_s


def run_process(cmd: list[str], stdin: Path, timeout: float) -> tuple[ProcessRun, str]:
    """Run ``cmd`` with ``stdin`` as its input; its whole CPU time, wall time, peak RSS and stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out, watch = run_watched(cmd, " ".join(cmd[:4]) + " ...", timeout, stdin=stdin)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ProcessRun(cpu, wall, max(watch.hwm_kib, watch.max_rss_kib) / 1024), out


def whole_processes(model: Path, checkpoint: Path, messages: Path, n_messages: int, streams: int,
                    rounds: int = 3, loop_batch: int = 64, timeout: float = 900.0) -> WholeProcess:
    """Agent and PyTorch script on the same ``messages`` file (JSONL), ``rounds`` alternating rounds each."""
    result = WholeProcess(n_messages, streams, loop_batch)
    with tempfile.TemporaryDirectory(prefix="edgewatch-whole-") as tmp:
        agent_cmd = edgewatch_command() + ["agent", "run", "--model", str(model), "--source", "stdin",
                                           "--sink", f"jsonl:{Path(tmp) / 'alerts.jsonl'}",
                                           "--spool-dir", str(Path(tmp) / "spool"),
                                           "--summary-json", str(Path(tmp) / "summary.json"), "-q"]
        for _ in range(rounds):
            run, _ = run_process(agent_cmd, messages, timeout)
            seen = json.loads((Path(tmp) / "summary.json").read_text())["messages"]
            if seen != n_messages:
                raise EdgewatchError(f"the agent read {seen} of {n_messages} messages")
            result.agent.append(run)
            run, out = run_process(loop_command(checkpoint, "-", loop_batch), messages, timeout)
            seen = json.loads(out.strip().splitlines()[-1])["messages"]
            if seen != n_messages:
                raise EdgewatchError(f"the PyTorch script read {seen} of {n_messages} messages")
            result.loop.append(run)
    return result
