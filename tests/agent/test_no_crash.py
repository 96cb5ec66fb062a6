"""No crash and no lost event on any data (issue 12 item 4), each failure of the issue reproduced.

Absurd timestamps are bad input; values beyond float32 are bad input; a
score that overflows still gives a start AND an end that serialise as
strict JSON on every sink and on the live page; NaN/inf replay cells are
counted like live ones; a property test drives parser and engine with
arbitrary JSON.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgewatch.agent.engine import SCORE_CAP, Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources.parsing import Measurement, parse_message
from edgewatch.agent.sinks import JsonlSink, MemorySink, StdoutSink
from edgewatch.agent.sources import Item, Kind, ReplaySource
from edgewatch.agent.ui.server import LiveView
from tests.modelkit import make_card, write_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ScoringModel:
    path = write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=4, threshold=0.5, k=2, n=3))
    return ScoringModel(path)


def _raw(values: list, ts: object = None, stream: str = "s") -> Item:
    obj = {"values": values, "stream": stream}
    if ts is not None:
        obj["ts"] = ts
    return Item(Kind.RAW, "src", json.dumps(obj), time.time())


def _strict(events: list[dict]) -> None:
    for e in events:
        json.dumps(e, allow_nan=False)


def _starts_have_ends(kinds_by_stream: dict[str, list[str]]) -> None:
    for stream, kinds in kinds_by_stream.items():
        assert kinds == ["start", "end"] * (len(kinds) // 2), (stream, kinds)



@pytest.mark.parametrize("ts", [1e300, -1e300, "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", 1e20])
def test_absurd_timestamps_on_a_faults_first_rows_are_bad_input(model: ScoringModel, ts: object) -> None:
    sink = MemorySink()
    agent = Agent(model, [sink], AgentOptions(drift_every=0))
    normal = [_raw([0.5] * 4, 1000.0 + i) for i in range(10)]
    fault = [_raw([3.0] * 4, ts)] * 3 + [_raw([3.0] * 4, 1020.0 + i) for i in range(5)]
    agent.process(normal + fault + [_raw([0.5] * 4, 1030.0 + i) for i in range(10)])
    agent.close_episodes("end of test")
    assert agent.summary.bad == {"bad_timestamp": 3}
    assert [e["event"] for e in sink.events] == ["start", "end"]
    _strict(sink.events)
    assert all(e["time"] is not None for e in sink.events)


def test_overflowing_score_still_makes_a_sendable_start_and_end_everywhere(model: ScoringModel,
                                                                             tmp_path: Path) -> None:
    out = io.StringIO()
    jsonl = tmp_path / "alerts.jsonl"
    view = LiveView(model.card.features, 0.5)
    agent = Agent(model, [StdoutSink(out), JsonlSink(jsonl, fsync=False)], AgentOptions(drift_every=0))
    agent.subscribe(view.on_event, view.on_batch)
    rows = [[0.5] * 4] * 8 + [[1e20, 0.5, 0.5, 0.5]] * 6 + [[0.5] * 4] * 8  # (1e20)^2 is inf in float32
    agent.process([_raw(r) for r in rows] + [_raw([1e39, 0, 0, 0])])
    agent.close()
    assert agent.summary.bad == {"overflow": 1}  # 1e39 does not fit the model's float32 input
    assert agent.summary.nonfinite_scores["inf"] > 0
    assert agent.metrics.nonfinite_scores.labels("inf")._value.get() == agent.summary.nonfinite_scores["inf"]
    for text in (out.getvalue(), jsonl.read_text()):
        events = [json.loads(line) for line in text.splitlines()]
        assert [e["event"] for e in events] == ["start", "end"]
        assert events[0]["score"] == pytest.approx(SCORE_CAP) and events[1]["episode"]["peak_score"] > 1e38
    frame, _ = view.frame("s", (0, 0, -1))
    json.dumps(frame, allow_nan=False)  # the live page's frame endpoint survives
    assert max(frame["w"]["s"]) > 1e38


def test_inf_replay_cells_are_counted_like_live_input_and_a_nan_cell_is_held(model: ScoringModel,
                                                                            tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    lines = ["a,b,c,d,ts"] + [f"0.5,0.5,0.5,0.5,{100 + i}" for i in range(20)]
    lines[5] = "nan,0.5,0.5,0.5,105"
    lines[6] = "0.5,inf,0.5,0.5,106"
    lines[7] = "0.5,0.5,-Infinity,0.5,107"
    lines[8] = "0.5,0.5,0.5,0.5,1e300"
    lines[9] = "0.5,0.5,0.5,1e39,109"
    csv.write_text("\n".join(lines) + "\n")
    sink = MemorySink()
    agent = Agent(model, [sink], AgentOptions(drift_every=0))
    agent.add_source(ReplaySource(csv, ["a", "b", "c", "d"]))
    summary = agent.run(duration=30)
    # nan is a missing cell (held from row 4), inf and -Infinity are not numbers the model can take
    assert summary.bad == {"non_finite": 2, "bad_timestamp": 1, "overflow": 1}
    assert summary.messages == 20 and sum(summary.bad.values()) == 4 and sink.events == []  # no false episode


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=5),
                                                         st.dictionaries(st.text(max_size=6), c, max_size=4)),
                          max_leaves=12)
number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-2.0, 3.0),
                   st.integers(min_value=-(10**40), max_value=10**40))
timestamp = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                      st.integers(min_value=-(10**30), max_value=10**30), st.text(max_size=30),
                      st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))
measurement = st.fixed_dictionaries({"values": st.lists(number, min_size=3, max_size=5)},
                                    optional={"ts": timestamp, "stream": st.sampled_from(["p", "q", "r"])})
message = st.one_of(measurement.map(lambda m: json.dumps(m)), json_value.map(lambda v: json.dumps(v)),
                    st.lists(number, min_size=4, max_size=4).map(json.dumps), st.binary(max_size=20))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(st.lists(message, min_size=1, max_size=120), st.integers(1, 40))
def test_property_any_json_any_number_the_agent_runs_on(model: ScoringModel, msgs: list, batch: int) -> None:
    sink = MemorySink()
    agent = Agent(model, [sink], AgentOptions(drift_every=0, stride=1))
    items = [Item(Kind.RAW, "src", m, time.time()) for m in msgs]
    for lo in range(0, len(items), batch):
        agent.process(items[lo:lo + batch])
    agent.close_episodes("end of test")
    valid = sum(1 for m in msgs if type(parse_message(m, 4)) is Measurement)
    assert agent.summary.messages == len(msgs)
    assert agent.summary.messages - sum(agent.summary.bad.values()) == valid
    by_stream: dict[str, list[str]] = {}
    for e in sink.events:
        json.dumps(e, allow_nan=False)
        assert e["ts"] is None or math.isfinite(e["ts"])
        by_stream.setdefault(e["stream"], []).append(e["event"])
    _starts_have_ends(by_stream)


def test_a_sink_or_subscriber_that_raises_on_everything_stops_nothing_and_is_logged_once(
        model: ScoringModel, caplog: pytest.LogCaptureFixture) -> None:
    """A sink whose every send raises and subscribers whose every call raises (a plug-in's bug, a disk
    error): before, a raising subscriber ended the agent's run at its first batch, and a raising sink logged
    a traceback per event. Now the other sinks get every event, the run goes to its end, and each callee's
    failure is logged once (with its count) in the minute."""

    class Broken:
        def send(self, event: dict) -> None:
            raise OSError("the sink's disk is gone")

        def close(self) -> None:
            pass

    def broken(_arg: object) -> None:
        raise RuntimeError("a subscriber's bug")

    memory = MemorySink()
    agent = Agent(model, [Broken(), memory], AgentOptions(drift_every=0, stream_ttl=30.0))
    agent.subscribe(broken, broken, broken)
    hot = [_raw([3.0] * 4, stream=f"s{i % 3}") for i in range(30)]
    cool = [_raw([0.5] * 4, stream=f"s{i % 3}") for i in range(30)]
    for _ in range(4):
        agent.process(hot)
        agent.process(cool)
    assert agent.evict_idle(now=time.monotonic() + 31) == 3  # on_forget raises too
    by_stream: dict[str, list[str]] = {}
    for e in memory.events:
        by_stream.setdefault(e["stream"], []).append(e["event"])
    assert sorted(by_stream) == ["s0", "s1", "s2"] and all(len(k) == 8 for k in by_stream.values()), by_stream
    _starts_have_ends(by_stream)
    assert agent.summary.messages == 240
    failed = [r for r in caplog.records if "failed (" in r.getMessage()]
    assert len(failed) == 2, [r.getMessage() for r in failed]  # Broken.send and broken, once each
    assert all(r.exc_info for r in failed)
