"""A state feature's text (the card's ``states``: ``Run``=1, ``Stop``=0) on every live form: objects keyed by
feature, arrays, one topic per sensor, a replay, and the MQTT source against a real mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources import make_source
from edgewatch.agent.sources.parsing import BadReason, Measurement, StateCells, parse_message
from edgewatch.agent.sources.rows import RowAssembler
from tests.agent.sources.test_mqtt import running_with
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

FEATURES = ["flow", "amps", "Pump State"]
STATES = {"Pump State": {"Run": 1, "Stop": 0}}


def test_keyed_objects_read_the_state_in_any_case_and_a_bool_and_refuse_an_unknown_state() -> None:
    rows = RowAssembler(FEATURES, max_age=60.0, states=STATES)
    got = [rows.keyed({"flow": 1.0, "amps": 2.0, "Pump State": s}, "p", float(i)) for i, s in
           enumerate(["Run", "STOP", " run", True, False])]
    assert [m.values[2] for m in got] == [1.0, 0.0, 1.0, 1.0, 0.0]  # type: ignore[union-attr]
    assert rows.keyed({"flow": 1.0, "amps": 2.0, "Pump State": "Fault"}, "p", 5.0) is BadReason.UNKNOWN_STATE
    # the held state is dropped with it: a row without the key does not stand on the state before the fault
    assert rows.keyed({"flow": 1.0, "amps": 2.0}, "p", 6.0) is BadReason.MISSING_FEATURE
    m = rows.keyed({"flow": 1.0, "amps": 2.0, "pump_state": "Stop"}, "p", 7.0)  # another spelling of the name
    assert type(m) is Measurement and m.values == [1.0, 2.0, 0.0]
    assert rows.keyed({"flow": 1.0, "amps": 2.0, "Pump State": 1}, "p", 8.0).values[2] == 1.0  # a number: the code
    assert rows.keyed({"flow": 1.0, "amps": 2.0, "Pump State": ""}, "p", 9.0).values[2] == 1.0  # a blank: held
    assert rows.keyed({"flow": "Run", "amps": 2.0, "Pump State": "Run"}, "p", 10.0) is BadReason.NOT_NUMBER


def test_one_topic_per_sensor_reads_the_state_topic() -> None:
    rows = RowAssembler(FEATURES, max_age=60.0, states=STATES)
    assert rows.reading(b"1.5", "pump-1", "flow", 0.0) == []
    assert rows.reading(b"20", "pump-1", "amps", 0.0) == []
    out = rows.reading(b'{"value": "Run", "ts": 1700000000}', "pump-1", "Pump State", 1.7e9)
    assert len(out) == 1 and out[0].values == [1.5, 20.0, 1.0]  # type: ignore[union-attr]
    assert rows.reading(b"Stop", "pump-1", "Pump State", 1.7e9 + 1) == []  # a bare word, not JSON: taken, waits
    assert rows.reading(b"1.6", "pump-1", "flow", 1.7e9 + 1) == []
    out = rows.reading(b"21", "pump-1", "amps", 1.7e9 + 1)
    assert len(out) == 1 and out[0].values == [1.6, 21.0, 0.0]  # type: ignore[union-attr]
    assert rows.reading(b'"Tripped"', "pump-1", "Pump State", 1.7e9 + 2) == [BadReason.UNKNOWN_STATE]


def test_arrays_and_the_values_form_read_state_texts_and_a_model_without_states_is_unchanged() -> None:
    states = StateCells.of(FEATURES, STATES)
    m = parse_message(b'[1.5, 20, "Run"]', 3, states=states)
    assert type(m) is Measurement and m.values == [1.5, 20.0, 1.0]
    m = parse_message(b'{"values": [1.5, 20, "stop"], "stream": "p2", "ts": 1700000000}', 3, states=states)
    assert type(m) is Measurement and m.values == [1.5, 20.0, 0.0] and m.stream == "p2" and m.ts == 1.7e9
    assert parse_message(b'[1.5, 20, "Fault"]', 3, states=states) is BadReason.UNKNOWN_STATE
    assert parse_message(b'["Run", 20, "Run"]', 3, states=states) is BadReason.NOT_NUMBER  # flow is no state
    assert parse_message(b'[1.5, 20, "Run", 4]', 3, states=states) is BadReason.WRONG_ARITY
    assert parse_message(b'[1.5, 20, "Run"]', 3) is BadReason.NOT_NUMBER  # as before: no codes, no text
    assert StateCells.of(FEATURES, None) is None and StateCells.of(FEATURES, {}) is None


def test_the_mqtt_source_reads_run_and_stop_through_mosquitto_and_counts_an_unknown_state(tmp_path: Path,
                                                                                          broker) -> None:
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=5, features=FEATURES, states=STATES)))
    assert model.card.states == STATES
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0, agent_id="states"))
    keyed = make_source(f"mqtt://{broker.host}:{broker.port}/plant/+/row?max_age=60s", FEATURES,
                        agent_id="states-keyed", states=STATES)
    per_topic = make_source(f"mqtt://{broker.host}:{broker.port}/site/{{stream}}/{{feature}}?max_age=60s",
                            FEATURES, agent_id="states-topics", states=STATES)
    with running_with(agent, broker, keyed, per_topic) as pub:
        rng = np.random.default_rng(3)
        for i in range(8):
            pub.send("plant/p1/row", json.dumps({"flow": float(rng.normal(1, 0.1)), "amps": 20.0,
                                                 "Pump State": "Run" if i < 4 else "Stop"}))
            pub.send("site/p2/flow", json.dumps(float(rng.normal(1, 0.1))))
            pub.send("site/p2/amps", "20")
            pub.send("site/p2/Pump State", "RUN")
        pub.send("plant/p1/row", json.dumps({"flow": 1.0, "amps": 20.0, "Pump State": "Fault"}))
        pub.send("plant/p1/row", json.dumps([1.0, 20.0, "Run"]))
        assert wait_until(lambda: agent.summary.messages == 8 + 8 + 2)
    assert agent.summary.bad == {"unknown_state": 1}
    assert sorted(agent.streams) == ["p2", "plant/p1/row"]
    assert agent.summary.windows == (9 - 4) + (8 - 4)  # 9 and 8 rows, window 5, stride 1
    assert agent.metrics.bad_messages.labels("unknown_state")._value.get() == 1


def test_sparkplug_string_metrics_of_a_state_feature_are_read_by_their_codes(tmp_path: Path, broker) -> None:
    from edgewatch.wire.sparkplug import encode_metric, encode_payload

    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=5, features=FEATURES, states=STATES)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0, agent_id="states-spb"))
    src = make_source(f"mqtt://{broker.host}:{broker.port}/spBv1.0/plant/%23", FEATURES, agent_id="states-spb",
                      states=STATES)
    with running_with(agent, broker, src) as pub:
        pub.send("spBv1.0/plant/NBIRTH/gw1", encode_payload([encode_metric("uptime", 5, alias=100)], seq=0))
        pub.send("spBv1.0/plant/DBIRTH/gw1/pump", encode_payload(
            [encode_metric("flow", 1.0, alias=1), encode_metric("amps", 20.0, alias=2),
             encode_metric("Pump State", "Run", alias=3)], timestamp=1_700_000_000_000, seq=1))
        for i in range(5):
            pub.send("spBv1.0/plant/DDATA/gw1/pump", encode_payload(
                [encode_metric(None, "STOP" if i % 2 else "Run", alias=3)], timestamp=1_700_000_001_000 + i,
                seq=2 + i))
        pub.send("spBv1.0/plant/DDATA/gw1/pump", encode_payload([encode_metric(None, "Fault", alias=3)], seq=7))
        pub.send("spBv1.0/plant/DDATA/gw1/pump", encode_payload([encode_metric(None, 1.1, alias=1)], seq=8))
        assert wait_until(lambda: agent.summary.messages == 8)
    # birth + 5 data rows make 6 rows (window 5: 2 windows); Fault is counted and drops the held state, so the
    # flow after it makes no row (wrong_arity: a feature without a value, as after a bad Quality)
    assert agent.summary.bad == {"unknown_state": 1, "wrong_arity": 1}, agent.summary.bad
    assert agent.summary.windows == 2


def test_sparkplug_reads_a_state_metric_as_every_source_does_a_boolean_of_a_three_word_state_is_unknown(
        tmp_path: Path, broker) -> None:
    """The Sparkplug decoder reads a state feature's metric through the row assembler's ``state_code``, the path
    of every other source: a Boolean for ``Mode`` (Auto/Manual/Off, no on/off pair) is ``unknown_state`` as a
    JSON ``true`` is, not the code 1 (``Manual``) that the decoder's own String-only lookup made of it; the held
    ``Mode`` goes with it (the next data of another metric makes no row), and a word in any case is its code."""
    from edgewatch.wire.sparkplug import encode_metric, encode_payload

    features, states = ["flow", "amps", "Mode"], {"Mode": {"Auto": 0, "Manual": 1, "Off": 2}}
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=3, features=features, states=states)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0, agent_id="states-spb-mode"))
    src = make_source(f"mqtt://{broker.host}:{broker.port}/spBv1.0/modes/%23", features,
                      agent_id="states-spb-mode", states=states)
    with running_with(agent, broker, src) as pub:
        pub.send("spBv1.0/modes/NBIRTH/gw1", encode_payload([encode_metric("uptime", 5, alias=100)], seq=0))
        pub.send("spBv1.0/modes/DBIRTH/gw1/press", encode_payload(
            [encode_metric("flow", 1.0, alias=1), encode_metric("amps", 20.0, alias=2),
             encode_metric("Mode", "auto", alias=3)], seq=1))
        pub.send("spBv1.0/modes/DDATA/gw1/press", encode_payload([encode_metric(None, " MANUAL", alias=3)], seq=2))
        pub.send("spBv1.0/modes/DDATA/gw1/press", encode_payload([encode_metric(None, True, alias=3)], seq=3))
        pub.send("spBv1.0/modes/DDATA/gw1/press", encode_payload([encode_metric(None, 1.2, alias=1)], seq=4))
        pub.send("spBv1.0/modes/DDATA/gw1/press", encode_payload([encode_metric(None, "Off", alias=3)], seq=5))
        assert wait_until(lambda: agent.summary.messages == 5)
    assert agent.summary.bad == {"unknown_state": 1, "wrong_arity": 1}, agent.summary.bad
    assert agent.metrics.bad_messages.labels("unknown_state")._value.get() == 1
    assert agent.summary.windows == 1  # three rows: auto, MANUAL, Off (window 3)
    window = agent.windows.latest(agent.table.slots["spBv1.0/modes/gw1/press"])
    assert window[:, 2].tolist() == [0.0, 1.0, 2.0] and window[:, 0].tolist() == pytest.approx([1.0, 1.0, 1.2])
