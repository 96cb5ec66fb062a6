"""The row assembler (agent/sources/rows.py) by its rules, and on the sources as plants feed them: one topic per
sensor on a real mosquitto, objects keyed by feature name on stdin (the installed command), a real websocket
server, MQTT and a replayed CSV."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sinks.memory import MemorySink
from edgewatch.agent.sources import SourceConfigError, make_source
from edgewatch.agent.sources.parsing import BadReason, Measurement
from edgewatch.agent.sources.rows import HOLD_STEPS, RowAssembler, parse_max_age
from tests.agent.sources.test_mqtt import Publisher
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

FEATURES = ["a", "b", "c", "d"]


def _tick(rows: RowAssembler, t: float, names: str = "abcd", stream: str = "p", value: float = 0.5
          ) -> list[Measurement | BadReason]:
    out: list[Measurement | BadReason] = []
    for i, name in enumerate(names):
        out += rows.feature(stream, name, value + 0.01 * i, t + 0.001 * i)
    return out


# -- the rules --------------------------------------------------------------------------------------------------


def test_a_row_is_made_as_soon_as_every_feature_has_reported() -> None:
    rows = RowAssembler(FEATURES)
    assert rows.feature("p", "a", 1.0, 10.0) == []
    assert rows.feature("p", "c", "3", 10.1, ts=10.1) == []  # a number as text
    assert rows.feature("p", "b", 2, 10.2) == []
    assert rows.feature("p", "d", 4.0, 10.3) == [Measurement([1.0, 2.0, 3.0, 4.0], 10.1, "p")]
    assert rows.feature("q", "a", 1.0, 10.0) == []  # streams are apart


def test_a_lost_message_is_held_and_the_row_made_when_a_feature_repeats() -> None:
    rows = RowAssembler(FEATURES)
    for t in range(5):
        assert len(_tick(rows, float(t))) == 1
    assert _tick(rows, 5.0, "abc") == []  # d lost: nothing yet
    out = _tick(rows, 6.0, "a")  # a again: the row of t=5 is made, d held from t=4
    assert len(out) == 1 and type(out[0]) is Measurement
    assert out[0].values == pytest.approx([0.5, 0.51, 0.52, 0.53])


def test_a_sensor_that_stops_is_held_for_three_of_its_intervals_then_stale() -> None:
    rows = RowAssembler(FEATURES)
    for t in range(5):
        _tick(rows, float(t))
    got = []
    for t in range(5, 12):
        got += _tick(rows, float(t), "abc")
    # rows of t=5..10 are made by the repeats at t=6..11; d's last value is from t=4, its interval 1 s
    assert [type(g) is Measurement for g in got] == [True, True, True, False, False, False]
    assert got[3:] == [BadReason.STALE_FEATURE] * 3
    assert HOLD_STEPS == 3.0


def _plant(rows: RowAssembler, times: list[float]) -> list[Measurement | BadReason]:
    """pressure/flow every tick, temperature every fifth (a slow sensor), each timed by its arrival."""
    out: list[Measurement | BadReason] = []
    for i, t in enumerate(times):
        if i % 5 == 0:
            out += rows.feature("p", "temperature", 20.0, t)
        out += rows.feature("p", "pressure", 1.0, t + 0.0001)
        out += rows.feature("p", "flow", 2.0, t + 0.0002)
    return out


def test_a_backlog_delivered_at_once_does_not_shrink_the_interval_a_value_is_held_for() -> None:
    rows = RowAssembler(["pressure", "flow", "temperature"])
    _plant(rows, [float(t) for t in range(60)])  # a tick a second, temperature every 5 s
    # the link is down for an hour; the broker then delivers the hour's 3,600 ticks within 0.4 s
    burst = _plant(rows, [3660.0 + i * 0.0001 for i in range(3600)])
    after = _plant(rows, [3661.0 + t for t in range(60)])  # live again
    assert (len(burst), len(after)) == (3600, 60)  # a row a tick
    assert BadReason.STALE_FEATURE not in burst + after
    assert rows.limit("p", 2) == pytest.approx(15.0, rel=0.01)  # 3 of temperature's 5 s
    # the rule still holds after it: temperature stops, and the row 16 s after its last value is stale
    got = [r for t in range(3721, 3740) for r in rows.feature("p", "pressure", 1.0, float(t))
           + rows.feature("p", "flow", 2.0, t + 0.0002)]
    assert got.index(BadReason.STALE_FEATURE) > 0 and got[-1] is BadReason.STALE_FEATURE


def test_a_sensor_that_reports_faster_is_taken_at_its_new_interval() -> None:
    rows = RowAssembler(["pressure", "flow", "temperature"])
    _plant(rows, [float(t) for t in range(60)])
    assert rows.limit("p", 2) == 15.0
    for t in range(60, 400):  # temperature now comes every second, like the others
        rows.feature("p", "temperature", 20.0, float(t))
        rows.feature("p", "pressure", 1.0, t + 0.0001)
        rows.feature("p", "flow", 2.0, t + 0.0002)
    assert rows.limit("p", 2) == pytest.approx(3.0, rel=0.01)


def test_a_tag_republished_with_the_time_it_last_changed_keeps_its_order() -> None:
    """A bridge from OPC UA sends a steady tag again and again with the time it last changed (hours ago). That is
    no clock set back (its own times never go back): with the documented max_age it is held, rows are made."""
    rows = RowAssembler(["flow", "pressure", "valve"], max_age=parse_max_age("24h"))
    t0 = 1_700_000_000.0
    got = []
    for i in range(20):
        got += rows.feature("p", "valve", 1.0, t0 - 7200, t0 - 7200)
        got += rows.feature("p", "flow", 0.5 + i, t0 + i, t0 + i)
        if i % 2 == 0:  # held in between
            got += rows.feature("p", "pressure", 2.0, t0 + i, t0 + i)
    assert all(type(g) is Measurement for g in got), got
    assert [g.values[0] for g in got] == [0.5 + i for i in range(19)]  # the last row waits for a repeat


def test_a_feature_never_seen_is_missing_and_an_unknown_one_counted() -> None:
    rows = RowAssembler(FEATURES)
    _tick(rows, 0.0, "abc")
    assert _tick(rows, 1.0, "a") == [BadReason.MISSING_FEATURE]
    assert rows.feature("p", "Pressure", 1.0, 1.0) == [BadReason.UNKNOWN_FEATURE]
    assert rows.feature("p", "a", True, 1.0) == [BadReason.NOT_NUMBER]
    assert rows.feature("p", "a", math.inf, 1.0) == [BadReason.NON_FINITE]


def test_a_value_older_than_the_one_held_is_stale() -> None:
    rows = RowAssembler(FEATURES)
    _tick(rows, 10.0)
    assert rows.feature("p", "a", 0.5, 9.0) == [BadReason.STALE_FEATURE]


def test_max_age_set_on_the_source_applies_to_every_feature() -> None:
    rows = RowAssembler(FEATURES, max_age=parse_max_age("500ms"))
    _tick(rows, 0.0)
    _tick(rows, 1.0, "abc")
    assert _tick(rows, 2.0, "a") == [BadReason.STALE_FEATURE]  # d is 1 s old at the row of t=1
    assert [parse_max_age(v) for v in ("10s", "2m", "1h", 7, "auto", None)] == [10.0, 120.0, 3600.0, 7.0, None, None]
    for bad in ("ten", "-1s", "0", "1d"):
        with pytest.raises(ValueError, match="max_age"):
            parse_max_age(bad)


@pytest.mark.parametrize("missing", [None, "", "NaN", "nan", "null", math.nan])
def test_a_keyed_row_holds_a_missing_value_from_the_streams_last(missing: object) -> None:
    rows = RowAssembler(FEATURES)
    assert rows.keyed({"a": 1, "b": 2, "c": 3, "d": 4}, "p", 0.0) == Measurement([1.0, 2.0, 3.0, 4.0], None, "p")
    assert rows.keyed({"d": 8, "c": 7, "b": missing, "a": 5, "unit": "bar"}, "p", 1.0) == Measurement(
        [5.0, 2.0, 7.0, 8.0], None, "p")
    assert rows.keyed({"a": 5, "c": 7, "d": 8}, "p", 2.0).values == [5.0, 2.0, 7.0, 8.0]  # a missing key
    assert rows.keyed({"a": 5, "c": 7, "d": 8}, "q", 2.0) is BadReason.MISSING_FEATURE  # nothing held on q


def test_source_settings_are_checked() -> None:
    with pytest.raises(SourceConfigError, match="max_age"):
        make_source("mqtt://127.0.0.1:1883/plant/{stream}/{feature}?max_age=soon", FEATURES)
    with pytest.raises(SourceConfigError, match="one whole level"):
        make_source("mqtt://127.0.0.1:1883/plant/{stream}/x{feature}", FEATURES)
    with pytest.raises(SourceConfigError, match="one whole level"):
        make_source("mqtt://127.0.0.1:1883/plant/{stream}", FEATURES)
    src = make_source("mqtt://127.0.0.1:1883/plant/{stream}/{feature}", FEATURES)
    assert src.topic_filter == "plant/+/#" and src.rows.max_age is None
    assert make_source({"url": "stdin", "max_age": "10s"}, FEATURES).rows.max_age == 10.0
    ws = make_source("ws://127.0.0.1:9/feed?max_age=2s&x=1", FEATURES)
    assert ws.url == "ws://127.0.0.1:9/feed?x=1" and ws.rows.max_age == 2.0


# -- the sources ------------------------------------------------------------------------------------------------


def _agent(tmp_path: Path, window: int = 3) -> tuple[Agent, MemorySink]:
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=window, features=FEATURES)))
    sink = MemorySink()
    return Agent(model, [sink], AgentOptions(stride=1, drift_every=0, agent_id="rows")), sink


def _start(agent: Agent) -> threading.Thread:
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("max_age", [None, "30s"])
def test_one_topic_per_sensor_with_a_topic_template(tmp_path: Path, make_broker, max_age: str | None) -> None:
    broker = make_broker().start()  # its own: another test's retained status on plant/... would be a reading here
    agent, _ = _agent(tmp_path)
    query = f"?max_age={max_age}" if max_age else ""  # the default form, and the limit set on the URL
    src = make_source(f"mqtt://{broker.host}:{broker.port}/plant/{{stream}}/{{feature}}{query}", FEATURES,
                      agent_id="rows")
    agent.add_source(src)
    runner = _start(agent)
    pub = Publisher(broker)
    try:
        assert wait_until(lambda: src.connects == 1 and src.connection.subscribed(src.topic_filter))  # the SUBACK
        t0 = 1_700_000_000.0
        for i in range(5):
            for j, f in enumerate(FEATURES):
                pub.send(f"plant/pump-1/{f}", json.dumps(0.5 + 0.01 * j))  # bare numbers
                pub.send(f"plant/pump-2/{f}", json.dumps({"value": str(0.5), "ts": t0 + i}) if j % 2 else
                         json.dumps({"timestamp": t0 + i + 0.01 * j, "value": 0.5}))
        pub.send("plant/pump-1/Pressure", b"2.5")  # a sensor the model does not know
        pub.send("plant/pump-1/extra/level", b"1")  # a deeper topic: the feature "extra/level", also unknown
        for f in "abc":  # pump-2 loses d's message at t0+5 ...
            pub.send(f"plant/pump-2/{f}", json.dumps({"value": 0.5, "ts": t0 + 5}))
        pub.send("plant/pump-2/a", json.dumps({"value": 0.5, "ts": t0 + 6}))  # ... its row is made, d held
        for f in "abc":  # pump-3 never sends d
            pub.send(f"plant/pump-3/{f}", b"0.5")
        pub.send("plant/pump-3/a", b"0.5")
        assert wait_until(lambda: agent.summary.messages == 5 + 6 + 2 + 1)
    finally:
        agent.request_stop()
        runner.join(10)
        pub.close()
    assert sorted(agent.streams) == ["pump-1", "pump-2"]
    assert agent.summary.bad == {"unknown_feature": 2, "missing_feature": 1}
    assert agent.summary.windows == 3 + 4  # 5 and 6 rows, window 3
    assert agent.table.last_ts[agent.table.slots["pump-2"]] == pytest.approx(t0 + 5)


def test_a_feature_that_stops_is_counted_stale_on_mqtt(tmp_path: Path, make_broker) -> None:
    broker = make_broker().start()
    agent, _ = _agent(tmp_path)
    src = make_source(f"mqtt://{broker.host}:{broker.port}/site/{{stream}}/{{feature}}", FEATURES, agent_id="rows")
    agent.add_source(src)
    runner = _start(agent)
    pub = Publisher(broker)
    try:
        assert wait_until(lambda: src.connects == 1 and src.connection.subscribed(src.topic_filter))  # the SUBACK
        for i in range(12):
            for f in (FEATURES if i < 4 else "abc"):  # d stops after the fourth tick
                pub.send(f"site/m1/{f}", json.dumps({"value": 0.5, "ts": 1_700_000_000 + i}))
        assert wait_until(lambda: agent.summary.messages == 4 + 7)
    finally:
        agent.request_stop()
        runner.join(10)
        pub.close()
    # d last at +3, interval 1 s: rows of +4..+6 hold it, +7..+10 are stale (the +11 row waits for a repeat)
    assert agent.summary.bad == {"stale_feature": 4}


def test_objects_keyed_by_feature_on_stdin_as_the_readme_runs_it(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=3, features=FEATURES))
    lines = [{"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5, "ts": 100}, {"d": 0.5, "c": 0.5, "b": None, "a": 0.5, "ts": 101},
             {"a": 0.5, "b": "", "c": "NaN", "d": 0.5, "unit": "bar", "ts": 102}, {"a": 0.5, "ts": 103},
             [0.5, 0.5, 0.5, 0.5], {"values": [0.5, 0.5, 0.5]}, {"x": 1}]
    lines += [{"a": 3, "b": 3, "c": 3, "d": 3, "ts": 105 + i} for i in range(3)]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    run = subprocess.run([str(Path(sys.executable).parent / "edgewatch"), "agent", "run", "--model", str(model),
                          "--source", "stdin"], input=text, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "end"] and events[0]["ts"] == 105
    assert "bad 2," in run.stderr and "wrong_arity 1" in run.stderr and "no_values 1" in run.stderr


def test_an_infinity_as_pythons_json_writes_it_is_non_finite_and_not_held(tmp_path: Path) -> None:
    """``json.dumps(float("inf"))`` is ``Infinity``, which the decoder used to turn into a NaN: a missing value,
    so an overrange sensor stood for its last value; ``"inf"`` as text was ``non_finite`` all along."""
    rows = RowAssembler(FEATURES)
    _tick(rows, 0.0)
    for raw in (b"Infinity", b"-Infinity", b'"inf"', b'{"value": Infinity}'):
        assert rows.reading(raw, "p", "a", 1.0) == [BadReason.NON_FINITE]
    assert rows.reading(b"NaN", "p", "a", 1.0) == []  # a NaN is "no value": held
    model = write_model(tmp_path / "m.onnx", make_card(window=3, features=FEATURES))
    lines = [{"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5, "ts": 100 + i} for i in range(3)]
    lines += [{"a": math.inf, "b": 0.5, "c": 0.5, "d": 0.5, "ts": 103}, {"a": -math.inf, "b": 0.5, "ts": 104},
              {"a": math.nan, "b": 0.5, "c": 0.5, "d": 0.5, "ts": 105}]
    text = "".join(json.dumps(line) + "\n" for line in lines)  # Infinity, -Infinity, NaN: Python's words
    assert "Infinity" in text
    run = subprocess.run([str(Path(sys.executable).parent / "edgewatch"), "agent", "run", "--model", str(model),
                          "--source", "stdin"], input=text, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "messages 6 " in run.stderr and "bad 2," in run.stderr and "non_finite 2" in run.stderr
    assert "windows scored 2" in run.stderr  # the rows of 100..102 and 105 (a held from 102)


def test_objects_keyed_by_feature_on_a_websocket(tmp_path: Path) -> None:
    from websockets.sync.server import serve

    # each object carries its time: c is held on the messages' clock (1 and 2 s old, within 3 of the 1 s rows),
    # not on arrival times microseconds apart, which a loaded machine stretches past 3 such intervals
    frames = [json.dumps({"b": 0.5, "a": 0.5, "d": 0.5, "c": 0.5, "quality": "good", "ts": 100}),
              json.dumps({"a": 0.5, "b": 0.5, "c": None, "d": 0.5, "ts": 101}),
              json.dumps({"a": 0.5, "b": 0.5, "d": 0.5, "ts": 102}),
              json.dumps([0.5, 0.5, 0.5, 0.5]), json.dumps({"values": [0.5, 0.5]}), json.dumps({"other": 1})]

    def handler(ws) -> None:  # noqa: ANN001
        for frame in frames:
            ws.send(frame)
        time.sleep(30)

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        agent, _ = _agent(tmp_path)
        agent.add_source(make_source(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/feed", FEATURES))
        runner = _start(agent)
        try:
            assert wait_until(lambda: agent.summary.messages == 6)
        finally:
            agent.request_stop()
            runner.join(10)
            server.shutdown()
    assert agent.summary.bad == {"wrong_arity": 1, "no_values": 1}  # the old forms keep their reasons
    assert agent.summary.windows == 2


def test_replay_holds_blank_cells_from_the_column_above(tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    lines = ["ts,d,c,b,a,note"] + [f"{100 + i},0.5,0.5,0.5,0.5,ok" for i in range(10)]
    lines[3] = "102,0.5,,0.5,0.5,ok"
    lines[4] = "103,0.5,0.5,null,NaN,ok"
    lines[5] = "104,0.5,0.5,0.5,high,ok"
    csv.write_text("\n".join(lines) + "\n")
    agent, _ = _agent(tmp_path)
    agent.add_source(make_source(f"replay:{csv}", FEATURES))
    summary = agent.run(duration=30)
    assert summary.messages == 10 and summary.bad == {"not_number": 1} and summary.windows == 9 - 2
