"""Many streams in one agent, scored in batched ONNX Runtime calls; alerts carry what operators need."""

from __future__ import annotations

import io
import json
import math
import threading
import time
from pathlib import Path

import numpy as np

from edgewatch.agent.engine import SCORE_BATCH, Agent, AgentOptions
from edgewatch.agent.events import BatchView
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sinks import StdoutSink
from edgewatch.agent.sources import Item, Kind, WebSocketSource
from edgewatch.data.faults import FaultSpec
from edgewatch.data.simulator_server import ServerConfig, SimulatorServer
from tests.modelkit import make_card, write_model


class BatchSizes:
    def __init__(self) -> None:
        self.scored: list[int] = []
        self.streams_per_batch: list[int] = []

    def on_batch(self, view: BatchView) -> None:
        self.scored.append(len(view.scored))
        self.streams_per_batch.append(len({w.stream for w in view.scored}))

    def on_event(self, event: dict) -> None:
        pass


def test_120_streams_in_one_agent_are_scored_in_batched_calls(tmp_path: Path) -> None:
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=5, threshold=10.0)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0))
    seen = BatchSizes()
    agent.subscribe(seen.on_event, seen.on_batch)
    with SimulatorServer(ServerConfig(rate=25, streams=120, seed=1)) as server:
        src = WebSocketSource(server.url)
        agent.add_source(src)
        runner = threading.Thread(target=agent.run)
        runner.start()
        deadline = time.monotonic() + 20
        while agent.summary.windows < 120 * 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        agent.request_stop()
        runner.join(20)
    assert len(agent.streams) == 120 and sorted(agent.streams) == sorted(f"eq-{i}" for i in range(120))
    assert agent.summary.bad == {} and agent.summary.windows >= 120 * 20
    calls = agent.metrics.batch_size._sum.get(), sum(s.get() for s in agent.metrics.batch_size._buckets)
    windows_in_calls, n_calls = calls
    # one ORT call per processed batch (per max_batch windows of it), and those calls span many streams
    assert windows_in_calls == agent.summary.windows
    step = min(agent.options.max_batch, SCORE_BATCH)
    assert n_calls == sum(math.ceil(s / step) for s in seen.scored if s)
    # how many windows share a call over a live socket depends on how fast frames arrive against how
    # fast the loop drains them (a clean CI run on an idle machine averaged 2.7 windows per call; runs
    # here reached 118-120 streams in one call); the exact property is the next test's
    assert max(seen.streams_per_batch) >= 60


def test_the_due_windows_of_all_streams_in_a_batch_go_to_one_call(tmp_path: Path) -> None:
    from edgewatch.agent.sources.parsing import Measurement
    from edgewatch.agent.sources import Item, Kind

    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=5, threshold=10.0)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0))
    seen = BatchSizes()
    agent.subscribe(seen.on_event, seen.on_batch)
    fill = [Item(Kind.MEASUREMENT, "src", Measurement([0.5] * 4, stream=f"eq-{i}"), 0.0)
            for _ in range(4) for i in range(120)]
    agent.process(fill)  # four rows per stream: no window is due yet
    assert agent.summary.windows == 0
    agent.process([Item(Kind.MEASUREMENT, "src", Measurement([0.5] * 4, stream=f"eq-{i}"), 0.0)
                   for i in range(120)])
    step = min(agent.options.max_batch, SCORE_BATCH)
    assert agent.summary.windows == 120 and seen.streams_per_batch[-1] == 120
    assert sum(s.get() for s in agent.metrics.batch_size._buckets) == math.ceil(120 / step)


def test_several_sources_are_several_streams(tmp_path: Path) -> None:
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=5, threshold=10.0)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0))
    with SimulatorServer(ServerConfig(rate=400, seed=1)) as a, SimulatorServer(ServerConfig(rate=400, seed=2)) as b:
        for s in (a, b):
            agent.add_source(WebSocketSource(s.url))
        agent.run(duration=1.5)
    assert sorted(agent.streams) == sorted([a.url, b.url])
    assert agent.summary.windows > 500


def test_alert_carries_stream_time_score_threshold_features_and_model_sha(tmp_path: Path) -> None:
    """A simulated level shift on one metric of one stream becomes one start/end pair that says where and why."""
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=10, threshold=0.5, offset=0.5,
                                                                     scale=2.0, k=3, n=4)))
    out = io.StringIO()
    agent = Agent(model, [StdoutSink(out)], AgentOptions(stride=1, drift_every=0, agent_id="edge-1"))
    fault = FaultSpec.at("overload", 200, 150)
    cfg = ServerConfig(rate=1000, count=500, with_time=True, faults="schedule", schedule=(fault,), seed=4)
    with SimulatorServer(cfg) as server:
        agent.add_source(WebSocketSource(server.url))
        runner = threading.Thread(target=agent.run, kwargs={"duration": 15})
        runner.start()
        server.wait(15)
        time.sleep(0.3)
        agent.request_stop()
        runner.join(20)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    alerts = [e for e in events if e["event"] in ("start", "end")]
    assert alerts, "the fault raised no alert"
    start = alerts[0]
    assert start["event"] == "start" and start["stream"] == server.url and start["agent"] == "edge-1"
    assert start["score"] > start["threshold"] == 0.5
    assert start["model"]["sha256"] == model.sha256 and len(start["id"]) == 20
    assert start["time"].endswith("+00:00") and start["ts"] > 1e9
    assert [f["feature"] for f in start["top_features"]][:1] and len(start["top_features"]) == 3
    ends = [e for e in alerts if e["event"] == "end"]
    assert ends and ends[0]["episode"]["duration_s"] >= 0
    assert len({e["id"] for e in alerts}) == len(alerts)


def test_a_reconnect_resets_the_state_of_a_learned_streams_own_model(tmp_path: Path) -> None:
    """--learn: a stream scored by the model it learned forgets its past on a reconnect, as every stream does.

    The reconnect used to reset the template model's state for that slot, so the learned model's
    episode tracker still counted the window over the threshold from before the reconnect: k = 2 of
    n = 3 were then met by one window before and one after it, and an episode opened across the gap.
    """
    from edgewatch.agent.learn import StreamLearner

    template = ScoringModel(write_model(tmp_path / "t.onnx", make_card(window=5, threshold=0.1)))
    options = AgentOptions(stride=1, k=2, n=3, drift_every=0)
    learner = StreamLearner(tmp_path / "learned", template.card, 60, options.overrides())
    events: list[dict] = []
    agent = Agent(template, [], options, learner=learner)
    agent.subscribe(on_event=events.append)
    rng = np.random.default_rng(0)
    normal = [0.5, 0.5, 0.5, 0.5]

    def rows(values: list[list[float]]) -> list[Item]:
        return [Item(Kind.RAW, "src", json.dumps({"stream": "s", "values": v}), 0.0) for v in values]

    agent.process(rows((0.5 + 0.01 * rng.standard_normal((60, 4))).tolist()))  # learns its own pca
    agent.process(rows([normal] * 5))
    slot = agent.table.slots["s"]
    own = agent.table.runtimes[slot]
    assert own is not agent.runtime and own.tracker.k == 2 and own.tracker.n == 3
    agent.process(rows([[50.0, 50.0, 50.0, 50.0]]))  # one window over the threshold: 1 of 3, no episode yet
    assert own.tracker._tracks[slot].history != 0 and events == []
    agent.process([Item(Kind.RESET, "src", None, 0.0)])  # the source reconnected
    assert own.tracker._tracks[slot].history == 0 and agent.windows.count[slot] == 0
    agent.process(rows([normal] * 5 + [[50.0, 50.0, 50.0, 50.0]]))  # a full window again, then one over
    assert [e["event"] for e in events] == [], "the window over before the reconnect still counted"
    agent.process(rows([[50.0, 50.0, 50.0, 50.0]]))  # a second one after it: now 2 of 3
    assert [e["event"] for e in events] == ["start"]
