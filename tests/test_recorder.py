"""The run recorder: what the agent saw, written as JSONL and read back for plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.parsing import Measurement
from edgewatch.agent.recorder import RunRecorder
from edgewatch.agent.sources import Item, Kind
from edgewatch.data.faults import FEATURES, FaultSpec
from edgewatch.data.simulator import simulate_series
from edgewatch.errors import BadInput
from edgewatch.plot.run_file import read_run
from tests.modelkit import make_card, write_model

THRESHOLD = 0.15


@pytest.fixture
def model(tmp_path: Path) -> ScoringModel:
    card = make_card(window=10, features=list(FEATURES), threshold=THRESHOLD, stride=2, k=2, n=3)
    return ScoringModel(write_model(tmp_path / "square.onnx", card))


def feed(agent: Agent, values: np.ndarray, ts: np.ndarray, stream: str, batch: int = 37) -> None:
    """Push measurements through the agent's real loop body, in uneven batches."""
    items = [Item(Kind.MEASUREMENT, "test", Measurement(v.tolist(), float(t), stream), float(t))
             for v, t in zip(values, ts)]
    for lo in range(0, len(items), batch):
        agent.process(items[lo:lo + batch])


def test_recorded_run_reads_back_what_the_agent_saw(tmp_path: Path, model: ScoringModel) -> None:
    series = simulate_series(600, seed=3, faults=[FaultSpec.at("overload", 300)], start_ts=1000.0)
    agent = Agent(model, [], AgentOptions(drift_every=0, agent_id="rec"))
    seen: list = []

    class Collect:
        def on_batch(self, view) -> None:  # noqa: ANN001
            seen.extend(view.scored)

        def on_event(self, event) -> None:  # noqa: ANN001
            pass

    agent.observers.append(Collect())
    rec = RunRecorder.for_agent(agent, tmp_path / "run.jsonl")
    feed(agent, series.values, series.timestamps, "eq-0")
    rec.close()

    run = read_run(tmp_path / "run.jsonl")
    assert run.header["run"] == 1 and run.header["window"] == 10 and run.header["stride"] == 2
    assert run.features == list(FEATURES) and run.threshold == THRESHOLD
    s = run.streams["eq-0"]
    assert len(s.t) == 600 and s.seq.tolist() == list(range(600))
    np.testing.assert_allclose(s.values, series.values, atol=1e-5)
    np.testing.assert_allclose(s.t, series.timestamps, atol=1e-6)
    assert len(s.wt) == len(seen) == agent.summary.windows
    np.testing.assert_allclose(s.scores, [w.score for w in seen], rtol=1e-5)
    assert s.over.tolist() == [w.over for w in seen]
    # the overload is one alert episode, and it lies on the fault
    assert len(s.episodes) == 1
    fault = series.truth[0]
    ep = s.episodes[0]
    assert fault.start_ts <= ep.start < fault.end_ts and ep.end > fault.start_ts
    assert not s.over[s.wt < fault.start_ts].any()
    assert s.over[(s.wt > fault.start_ts + 0.5) & (s.wt < fault.end_ts)].all()


def test_threshold_changes_and_many_streams_are_kept(tmp_path: Path, model: ScoringModel) -> None:
    agent = Agent(model, [], AgentOptions(drift_every=0))
    rec = RunRecorder.for_agent(agent, tmp_path / "run.jsonl")
    rng = np.random.default_rng(0)
    values = rng.uniform(0.4, 0.6, size=(40, 4))
    ts = 10.0 + np.arange(40) / 20
    items = [Item(Kind.MEASUREMENT, "t", Measurement(v.tolist(), float(t), f"s{i % 3}"), float(t))
             for i, (v, t) in enumerate(zip(values, ts))]
    agent.process(items[:20])
    agent.threshold = 0.5
    agent.process(items[20:])
    rec.close()
    run = read_run(tmp_path / "run.jsonl")
    assert sorted(run.streams) == ["s0", "s1", "s2"]
    assert sum(len(s.t) for s in run.streams.values()) == 40
    assert [th for _, th in run.thresholds] == [THRESHOLD, 0.5]
    assert run.thresholds[1][0] > ts[19]


def test_record_is_flushed_while_running_and_survives_a_cut(tmp_path: Path, model: ScoringModel) -> None:
    path = tmp_path / "run.jsonl"
    agent = Agent(model, [], AgentOptions(drift_every=0))
    rec = RunRecorder.for_agent(agent, path, flush_seconds=0.0)
    series = simulate_series(50, seed=1, start_ts=5.0)
    feed(agent, series.values, series.timestamps, "x")
    # readable before close: the flush interval bounds what a hard kill loses
    assert len(read_run(path).streams["x"].t) == 50
    rec.close()
    with open(path, "a") as fh:
        fh.write('{"m":"x","t":7.0,"q":5')  # an agent killed mid-line
    run = read_run(path)
    assert run.skipped_lines == 1 and len(run.streams["x"].t) == 50
    lines = path.read_text().splitlines()
    assert all(len(line) < 200 for line in lines[1:-1])  # compact lines


def test_not_a_run_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    p.write_text(json.dumps({"event": "start"}) + "\n")
    with pytest.raises(BadInput, match="--record-run"):
        read_run(p)
