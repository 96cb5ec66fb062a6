"""What the agent's drift watch costs, relative to scoring the same messages.

Per batch of messages the agent calls ``DriftWatch.observe_many`` once and
``due_events`` once; a stream is KS-tested every ``check_every`` (512) of its
messages, so over many batches the timing includes the amortised checks.
Both sides are timed in one run, interleaved, in CPU time of the calling
thread (see :mod:`edgewatch.bench.engines`), and reported as a ratio:
``drift / scoring``. Target: under 5 % for the S0 model (LSTM autoencoder,
int8, what the agent runs).

Scoring is counted for every message (stride 1). At the agent's default
stride 3 only a third of the messages are scored while all are observed,
so the ratio there is three times the one reported here.
"""

from __future__ import annotations

import gc
import time

import numpy as np
import pytest

from edgewatch.agent.watch.drift_watch import DriftWatch
from edgewatch.agent.model import ScoringModel
from edgewatch.bench.engines import interleaved_medians
from edgewatch.bench.models import Engine
from edgewatch.contract.drift_reference import drift_reference_from

from .conftest import QUICK

ROUNDS = 5 if QUICK else 9


def _drift_step(n_streams: int, n_features: int, features: list[str]):  # noqa: ANN202 - a callable
    rng = np.random.default_rng(0)
    watch = DriftWatch(drift_reference_from(rng.random((10_000, n_features))), features,
                       sample_size=512, check_every=512)
    slots = np.arange(n_streams)
    batches = [rng.random((n_streams, n_features)) for _ in range(1024)]  # fresh rows: a nominal stream
    state = {"i": 0}

    def step() -> None:
        state["i"] = (state["i"] + 1) % len(batches)
        watch.observe_many(slots, batches[state["i"]])
        watch.due_events()

    for _ in range(600):  # fill the rings so that checks run at their full size
        step()
    return step, watch


@pytest.mark.parametrize("model_name", ["lstm-ae-w50", "lstm-ae-w10"])
@pytest.mark.parametrize("n_streams", [1, 16])
def test_drift_watch_overhead(benchmark, models, model_name: str, n_streams: int) -> None:  # noqa: ANN001
    model = models(model_name)
    scoring = ScoringModel(model.paths[Engine.ORT_INT8], threads=1)
    x = model.spec.samples(n_streams, seed=1)
    features = list(model.spec.features)
    drift_step, watch = _drift_step(n_streams, len(features), features)

    def score() -> None:
        scoring.score_many(x)

    timings = interleaved_medians({"score": score, "drift": drift_step}, rounds=ROUNDS)
    ratio = timings["drift"].median / timings["score"].median
    checks_before = watch.checks_run
    benchmark.pedantic(drift_step, rounds=50, iterations=20)
    benchmark.extra_info.update({
        "model": f"{model_name} int8", "streams_per_batch": n_streams,
        "score_us_per_batch": round(timings["score"].median * 1e6, 2),
        "drift_us_per_batch": round(timings["drift"].median * 1e6, 2),
        "drift_over_score": round(ratio, 4),
    })
    print(f"\n{model_name} int8, {n_streams} stream(s)/batch: scoring {timings['score'].median * 1e6:.1f} us, "
          f"drift watch {timings['drift'].median * 1e6:.1f} us per batch -> ratio {ratio:.2%}")
    assert watch.checks_run > checks_before  # the periodic KS checks were part of what was timed
    if model_name == "lstm-ae-w50":
        assert ratio < 0.05, f"drift watch costs {ratio:.1%} of scoring (target < 5 %)"


def test_agent_with_and_without_the_drift_watch(benchmark) -> None:  # noqa: ANN001
    """The end-to-end figure: the agent's own batching, 100 streams, stride 3, the shipped S0 model.

    The same 30,000 raw JSON messages go through ``Agent.process`` with the
    drift watch on (the agent's defaults) and off, interleaved batch by batch, CPU time.
    """
    import json
    from pathlib import Path

    from edgewatch.agent.engine import Agent, AgentOptions
    from edgewatch.agent.sources import Item, Kind
    from edgewatch.data.simulator import simulate_series

    path = Path(__file__).resolve().parents[1] / "models" / "equipment-lstm-ae.onnx"
    model = ScoringModel(path)
    values = simulate_series(10_000 if QUICK else 30_000, seed=7).values
    items = [Item(Kind.RAW, "s", json.dumps({"stream": f"eq-{i % 100}", "values": [round(v, 5) for v in row]}), 0.0)
             for i, row in enumerate(values)]

    def agent(drift: bool) -> Agent:
        return Agent(model, [], AgentOptions(drift_every=512 if drift else 0))

    def run(drift: bool):  # noqa: ANN202 - a whole pass, for pytest-benchmark's own figure
        def go() -> None:
            a = agent(drift)
            for lo in range(0, len(items), 1024):
                a.process(items[lo:lo + 1024])
        return go

    # Interleaved batch by batch (which agent goes first alternates): a change in the shared machine's
    # speed then hits both alike, where whole-run medians of a few rounds moved by +-8 % here
    agents = {"off": agent(False), "on": agent(True)}
    # The 30,000 messages held for the run are the benchmark's, not an agent's: frozen out of the garbage
    # collector's scans, whose cost otherwise lands on whichever agent triggers a collection. Unfrozen, the
    # ratio read -6 % on one commit and +8 % on the next with the drift watch's own cost unchanged (+2-3 % frozen)
    gc.collect()
    gc.freeze()
    cpu = {"off": 0.0, "on": 0.0}
    batches = [items[lo:lo + 1024] for lo in range(0, len(items), 1024)]
    for rnd in range(ROUNDS):
        for b, batch in enumerate(batches):
            order = ("off", "on") if (rnd + b) % 2 == 0 else ("on", "off")
            for name in order:
                c0 = time.process_time()
                agents[name].process(batch)
                if rnd > 0:  # the first pass creates the streams' state
                    cpu[name] += time.process_time() - c0
    gc.unfreeze()
    ratio = cpu["on"] / cpu["off"]
    benchmark.pedantic(run(True), rounds=3, iterations=1)
    benchmark.extra_info.update({"messages": len(items) * (ROUNDS - 1), "streams": 100, "stride": 3,
                                 "seconds_without_drift": round(cpu["off"], 4),
                                 "seconds_with_drift": round(cpu["on"], 4),
                                 "drift_slowdown": round(ratio - 1, 4)})
    print(f"\nagent, 100 streams, stride 3, shipped S0: {len(items) * (ROUNDS - 1)} messages in {cpu['off']:.3f} s "
          f"CPU without the drift watch, {cpu['on']:.3f} s with it -> {(ratio - 1):+.1%}")
    assert ratio < 1.05, f"the drift watch slows the agent by {ratio - 1:.1%} (target < 5 %)"
