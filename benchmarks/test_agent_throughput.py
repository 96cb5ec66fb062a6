"""Messages per second through the whole agent hot path, 1 and 100 streams.

Raw JSON text items go through :meth:`Agent.process` (parse, per-stream ring
windows, one batched ONNX Runtime call for the due windows, post-process,
k-of-n episodes, drift watch), window 10, stride 3. The trained S0 model in
its shipped form (``s0``: sentinel int8, stream-isolated), the fp32 form
the agent ran before it (``s0-fp32``), and a trivial one-node model: how
much of the time is the model and how much the Python around it.
"""

from __future__ import annotations

import cProfile
from dataclasses import asdict
from pathlib import Path

import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.bench.agent_load import CountingSink, raw_messages, throughput
from edgewatch.bench.models import Engine
from edgewatch.bench.profile_split import stage_shares, top_functions

from .conftest import QUICK

N_MESSAGES = 30_000 if QUICK else 90_000


@pytest.fixture(scope="module")
def trivial_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-operation model of the S0 shape: the agent's own cost without a network."""
    from tests.modelkit import make_card, write_model

    card = make_card(window=10, features=["cpu", "memory", "traffic", "fan"], threshold=0.2, stride=3)
    return write_model(tmp_path_factory.mktemp("trivial") / "trivial.onnx", card)


def _model_path(kind: str, s0, trivial_model: Path) -> Path:
    return {"s0": s0.shipped, "s0-fp32": s0.paths[Engine.ORT_FP32], "trivial": trivial_model}[kind]


@pytest.mark.parametrize("streams", [1, 100])
@pytest.mark.parametrize("kind", ["s0", "s0-fp32", "trivial"])
def test_agent_throughput(benchmark, s0, trivial_model: Path, kind: str, streams: int) -> None:
    path = _model_path(kind, s0, trivial_model)
    result = benchmark.pedantic(throughput, args=(path, streams, N_MESSAGES), rounds=1, iterations=1)
    benchmark.group = "agent throughput"
    benchmark.extra_info.update({"suite": "agent_throughput", "model": kind, **asdict(result)})
    assert result.windows == pytest.approx(N_MESSAGES / 3, rel=0.02)


def test_hot_path_profile(benchmark, s0) -> None:
    """Where the time of the 100-stream run goes (cProfile, own time per function)."""
    agent = Agent(ScoringModel(s0.shipped), [CountingSink()], AgentOptions(agent_id="bench"))
    warm = raw_messages(3000, 100, seed=1)
    items = raw_messages(N_MESSAGES // 3, 100, seed=2)
    for lo in range(0, len(warm), 1024):
        agent.process(warm[lo:lo + 1024])
    profile = cProfile.Profile()

    def run() -> None:
        profile.enable()
        for lo in range(0, len(items), 1024):
            agent.process(items[lo:lo + 1024])
        profile.disable()

    benchmark.pedantic(run, rounds=1, iterations=1)
    rows = top_functions(profile)
    stages = stage_shares(profile)
    benchmark.group = "agent profile"
    benchmark.extra_info.update({"suite": "agent_profile", "streams": 100, "messages": len(items),
                                 "top": rows, "stages": stages})
    assert abs(sum(stages.values()) - 1) < 1e-6 and stages["model"] > 0 and stages["parse"] > 0


@pytest.mark.parametrize("kind", ["trivial", "s0"])
def test_per_stream_metrics_cost(benchmark, s0, trivial_model: Path, kind: str) -> None:
    """What the per-stream Prometheus series cost the hot path, 100 streams, in alternating rounds:
    no --metrics (stand-ins), --metrics without and with the per-stream table (windows, last anomaly_score)."""
    from edgewatch.agent.ops.metrics import AgentMetrics, UnexportedStreams

    def metrics(variant: str) -> AgentMetrics:
        m = AgentMetrics(exported=variant != "off")
        if variant == "agent-wide":
            m.stream_series = UnexportedStreams()
        return m

    rounds = 5
    per_cpu_s: dict[str, list[float]] = {"off": [], "agent-wide": [], "per-stream": []}

    def run() -> None:
        for _ in range(rounds):
            for variant in per_cpu_s:
                t = throughput(_model_path(kind, s0, trivial_model), 100, N_MESSAGES // 3, metrics=metrics(variant))
                per_cpu_s[variant].append(1e6 / t.cpu_us_per_message)

    benchmark.pedantic(run, rounds=1, iterations=1)
    med = {k: sorted(v)[len(v) // 2] for k, v in per_cpu_s.items()}
    benchmark.group = "per-stream metrics cost"
    benchmark.extra_info.update({"suite": "per_stream_metrics_cost", "model": kind, "streams": 100,
                                 "rounds": rounds, "messages_per_cpu_s": med,
                                 "per_stream_vs_agent_wide": med["per-stream"] / med["agent-wide"],
                                 "per_stream_vs_off": med["per-stream"] / med["off"]})
    assert all(len(v) == rounds for v in per_cpu_s.values())
