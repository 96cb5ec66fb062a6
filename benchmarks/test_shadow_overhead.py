"""What a model in shadow costs the agent: one more batched ONNX Runtime call on the same windows.

The same raw JSON messages (100 streams, stride 3, the shipped S0 model)
go through ``Agent.process`` with no shadow and with the same model file in
shadow (its own post-processor, episode tracker and comparison
bookkeeping), interleaved, in CPU time, reported as a ratio. Scoring is
most of the agent's work at stride 3, so a shadow costs close to one more
scoring pass; the target only bounds the bookkeeping (under 2.2x).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.lifecycle.accept import Candidate, Gate, Origin
from edgewatch.agent.lifecycle.shadow import ShadowScorer
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources import Item, Kind
from edgewatch.bench.engines import interleaved_medians
from edgewatch.data.simulator import simulate_series

from .conftest import QUICK

ROUNDS = 5 if QUICK else 9
MODEL = Path(__file__).resolve().parents[1] / "models" / "equipment-lstm-ae.onnx"


def test_agent_with_and_without_a_shadow_model(benchmark) -> None:  # noqa: ANN001
    model = ScoringModel(MODEL)
    values = simulate_series(10_000 if QUICK else 30_000, seed=7).values
    items = [Item(Kind.RAW, "s", json.dumps({"stream": f"eq-{i % 100}", "values": [round(v, 5) for v in row]}), 0.0)
             for i, row in enumerate(values)]
    shadows: list[ShadowScorer] = []

    def run(shadow: bool):  # noqa: ANN202
        def go() -> None:
            agent = Agent(model, [], AgentOptions(drift_every=0))
            if shadow:
                runtime = Gate.for_agent(agent).admit(Candidate(MODEL, Origin.FILE), agent.runtime).runtime
                scorer = ShadowScorer(runtime, agent.threshold, note="bench")
                agent.queue_shadow(scorer)
                shadows.append(scorer)
            for lo in range(0, len(items), 1024):
                agent.process(items[lo:lo + 1024])
        return go

    timings = interleaved_medians({"off": run(False), "on": run(True)}, rounds=ROUNDS)
    ratio = timings["on"].median / timings["off"].median
    benchmark.pedantic(run(True), rounds=3, iterations=1)
    scorer = shadows[-1]
    report = scorer.report(model.sha256)
    benchmark.extra_info.update({"messages": len(items), "streams": 100, "stride": 3,
                                 "seconds_without_shadow": round(timings["off"].median, 4),
                                 "seconds_with_shadow": round(timings["on"].median, 4),
                                 "shadow_slowdown": round(ratio - 1, 4),
                                 "shadow_windows": report["windows"]})
    print(f"\nagent, 100 streams, stride 3, S0: {len(items)} messages in {timings['off'].median:.3f} s without "
          f"a shadow model, {timings['on'].median:.3f} s with one -> x{ratio:.2f} "
          f"({report['windows']} windows scored twice, correlation {report['score_correlation']})")
    assert report["windows"] > 0 and report["alerts_differ"] == 0  # the same file: no difference
    assert report["score_correlation"] is None or report["score_correlation"] > 0.999
    assert ratio < 2.2, f"a shadow model slows the agent x{ratio:.2f} (target < 2.2)"
