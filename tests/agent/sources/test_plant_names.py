"""A live feed spelled the way the plant spells it, against a model whose features are a historian's CSV headers
(agent/sources/feature_names.py, the name and no-row rules of agent/sources/rows.py): a real mosquitto, a real
websocket server, and stdin through the installed command."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sinks.memory import MemorySink
from edgewatch.agent.sources import make_source, rows as rows_module
from edgewatch.agent.sources.feature_names import FeatureNames
from edgewatch.agent.sources.parsing import BadReason
from edgewatch.agent.sources.rows import RowAssembler, cell_value
from tests.agent.sources.test_mqtt import Publisher
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

HEADERS = ["Volume Flow RateRMS", "Temperature", "Pressure (bar)", "FIT-101.PV", "Pump1/Flow"]


# -- the rules --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("wire", "feature"), [
    ("Volume Flow RateRMS", "Volume Flow RateRMS"), ("volume_flow_raterms", "Volume Flow RateRMS"),
    ("VOLUME-FLOW-RATERMS", "Volume Flow RateRMS"), ("Volume%20Flow%20RateRMS", "Volume Flow RateRMS"),
    ("temperature", "Temperature"), ("Temperature [degC]", "Temperature"), ("Pressure", "Pressure (bar)"),
    ("pressure_bar", "Pressure (bar)"), ("Pressure (bar)", "Pressure (bar)"), ("fit-101-pv", "FIT-101.PV"),
    ("FIT_101_PV", "FIT-101.PV"), ("pump1_flow", "Pump1/Flow"), ("Pump1%2FFlow", "Pump1/Flow"),
    ("Pump1/Flow", "Pump1/Flow")])
def test_a_name_stands_for_the_one_feature_it_matches(wire: str, feature: str) -> None:
    names = FeatureNames(HEADERS)
    assert names.resolve(wire) == HEADERS.index(feature)


@pytest.mark.parametrize("wire", ["Volume Flow", "Pressure2", "FIT-102.PV", "pump", ""])
def test_a_name_that_matches_no_feature_stands_for_none(wire: str) -> None:
    assert FeatureNames(HEADERS).resolve(wire) is None


def test_two_features_one_name_could_be_are_never_guessed(caplog: pytest.LogCaptureFixture) -> None:
    names = FeatureNames(["Flow A", "flow_a", "Pressure (bar)", "Pressure (psi)"], source="s")
    with caplog.at_level(logging.INFO, "edgewatch.agent.sources"):
        assert names.resolve("Flow A") == 0 and names.resolve("flow_a") == 1  # the exact names still work
        assert names.resolve("FLOW-A") is None
        assert names.resolve("pressure") is None
        assert names.resolve("FLOW-A") is None
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2  # once per name
    assert "'FLOW-A' could be any of the features ['Flow A', 'flow_a']" in said[0]
    assert "['Pressure (bar)', 'Pressure (psi)']" in said[1]


@pytest.mark.parametrize(("text", "value"), [("12,5", 12.5), (" -0,25 ", -0.25), ("1e3", 1000.0), ("12.5", 12.5)])
def test_a_decimal_comma_is_read(text: str, value: float) -> None:
    assert cell_value(text) == value


@pytest.mark.parametrize("text", ["1,234.5", "1,2,3", "12,5 bar", ","])
def test_other_commas_are_not_numbers(text: str) -> None:
    assert cell_value(text) is BadReason.NOT_NUMBER


def test_a_keyed_object_fills_features_from_matching_keys_and_keeps_exact_keys_first() -> None:
    rows = RowAssembler(HEADERS)
    obj = {"volume flow raterms": 1, "temperature": "2,5", "Pressure": 3, "fit-101.pv": 4, "pump1_flow": 5,
           "Pump1/Flow": 6, "Vibration": 7, "ts": 100}
    assert rows.keyed(obj, "p", 0.0).values == [1.0, 2.5, 3.0, 4.0, 6.0]


def test_a_stream_without_rows_is_explained(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setattr(rows_module, "NO_ROW_WARN_AFTER", 0.05)
    rows = RowAssembler(HEADERS, source="mqtt://b/plant/+/#")
    with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
        for _ in range(3):
            for name in HEADERS[:4]:
                rows.reading(b"1.5", "p1", name, time.time())
            rows.reading(b"1.5", "p1", "Pump1-Flw", time.time())  # a typo: Pump1/Flow never reports
            time.sleep(0.06)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1  # once a minute per stream
    assert "stream 'p1' has made no row" in said[0]
    assert "never received: ['Pump1/Flow']" in said[0] and "no feature of the model: ['Pump1-Flw']" in said[0]
    assert str(HEADERS) in said[0] and "Publish each under its name" in said[0]


def test_a_reading_of_bad_quality_is_counted_and_not_held() -> None:
    rows = RowAssembler(["a", "b"])
    assert rows.reading(b'{"value": 1, "quality": "good"}', "p", "a", 100.0) == []
    assert rows.reading(b'{"v": 2, "q": 192}', "p", "b", 100.0)[0].values == [1.0, 2.0]
    assert rows.reading(b'{"value": 7, "quality": "Bad_SensorFailure"}', "p", "a", 101.0) == [BadReason.BAD_STATUS]
    assert rows.reading(b"3", "p", "b", 101.0) == []
    assert rows.reading(b"4", "p", "b", 102.0) == [BadReason.MISSING_FEATURE]  # a is not held from before


def test_times_far_from_the_clock_are_said_once(caplog: pytest.LogCaptureFixture) -> None:
    rows = RowAssembler(["a"], source="s")
    now = float(int(time.time()))  # whole seconds: the naive text below has no fraction
    with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
        rows.reading(b'{"value": 1, "ts": 100}', "p", "a", 100.5)  # its own clock is fine
        for i in range(3):  # a local time one hour ahead of UTC, sent without an offset
            naive = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now + 3600 + i))
            rows.reading(json.dumps({"value": 1, "ts": naive}).encode(), "p", "a", now + i)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "3600 s ahead of this machine's clock (+1.00 h)" in said[0]
    assert "send an offset" in said[0]


def test_a_sensor_ten_times_slower_than_the_rows_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    rows = RowAssembler(["flow", "temperature"], source="s")
    with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
        made = []
        for i in range(120):
            made += rows.feature("p", "flow", 1.0, float(i))
            if i % 10 == 0:
                made += rows.feature("p", "temperature", 60.0, i + 0.5)
    assert sum(type(m) is not BadReason for m in made) > 100  # it is held between its readings
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "'temperature' reports every 10 s, rows are made every 1 s" in said[0]
    assert "--ignore 'temperature'" in said[0]


# -- on the sources ---------------------------------------------------------------------------------------------


def _agent(tmp_path: Path) -> Agent:
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=3, features=HEADERS)))
    return Agent(model, [MemorySink()], AgentOptions(stride=1, drift_every=0, agent_id="names"))


def _start(agent: Agent) -> threading.Thread:
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    return t


SPELLINGS = {  # stream -> how it names the model's features on its topics, and how it writes a value
    "lower": ([h.lower().replace(" ", "_") for h in HEADERS], lambda v, t: json.dumps(v)),
    "escaped": ([quote(h, safe="") for h in HEADERS], lambda v, t: json.dumps({"value": v, "quality": "good"})),
    "dashes": ([h.replace(" ", "-").replace("/", "-") for h in HEADERS],
               lambda v, t: json.dumps({"v": v, "q": 192, "t": int(t * 1000)})),
    "comma": (HEADERS, lambda v, t: f"{v}".replace(".", ",")),  # a bare text payload with a decimal comma
}


@pytest.mark.parametrize("query", ["", "?max_age=10s"])
def test_topics_spelled_as_the_plant_spells_them_make_rows(tmp_path: Path, make_broker, query: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    broker = make_broker().start()
    agent = _agent(tmp_path)
    src = make_source(f"mqtt://{broker.host}:{broker.port}/plant/{{stream}}/{{feature}}{query}", HEADERS,
                      agent_id="names")
    agent.add_source(src)
    runner = _start(agent)
    pub = Publisher(broker)
    try:
        with caplog.at_level(logging.INFO, "edgewatch.agent.sources"):
            assert wait_until(lambda: src.connects == 1 and src.connection.subscribed(src.topic_filter))  # the SUBACK
            for i in range(4):
                for stream, (names, payload) in SPELLINGS.items():
                    for name in names:  # "Pump1/Flow" is two topic levels on the "comma" stream
                        pub.send(f"plant/{stream}/{name}", payload(0.5, 1_700_000_000 + i))
            pub.send("plant/lower/vibration", b"0.5")  # a sensor the model does not know
            assert wait_until(lambda: agent.summary.messages == 4 * len(SPELLINGS) + 1)
    finally:
        agent.request_stop()
        runner.join(10)
        pub.close()
    assert sorted(agent.streams) == sorted(SPELLINGS)
    assert agent.summary.bad == {"unknown_feature": 1}
    assert agent.summary.windows == 2 * len(SPELLINGS)
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "'pressure_(bar)' taken as the feature 'Pressure (bar)'" in said
    assert "'Volume-Flow-RateRMS' taken as the feature 'Volume Flow RateRMS'" in said
    assert "'vibration' (stream 'lower') is no feature of the model" in said


def test_keyed_objects_with_other_spellings_on_a_websocket(tmp_path: Path) -> None:
    from websockets.sync.server import serve

    keys = ["volume flow raterms", "TEMPERATURE", "Pressure", "fit_101_pv", "Pump1 Flow"]
    frames = [json.dumps({**dict(zip(keys, ["0,5"] * 5)), "unit": "bar", "ts": 100 + i}) for i in range(4)]
    frames.append(json.dumps({"flow": 1, "temp": 2, "ts": 104}))  # nothing the model knows

    def handler(ws) -> None:  # noqa: ANN001
        for frame in frames:
            ws.send(frame)
        time.sleep(30)

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        agent = _agent(tmp_path)
        agent.add_source(make_source(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/feed", HEADERS))
        runner = _start(agent)
        try:
            assert wait_until(lambda: agent.summary.messages == 5)
        finally:
            agent.request_stop()
            runner.join(10)
            server.shutdown()
    assert agent.summary.bad == {"no_values": 1}
    assert agent.summary.windows == 2


def _edgewatch() -> str:
    return str(Path(sys.executable).parent / "edgewatch")


def test_keyed_objects_with_other_spellings_on_stdin_as_the_readme_runs_it(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=3, features=HEADERS))
    keys = ["volume_flow_raterms", "temperature", "pressure (bar)", "fit-101.pv", "pump1/flow"]
    lines = [{**dict(zip(keys, [0.5] * 5)), "ts": 100 + i} for i in range(3)]
    lines += [{**dict(zip(keys, ["3,0"] * 5)), "ts": 103 + i} for i in range(3)]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    run = subprocess.run([_edgewatch(), "agent", "run", "--model", str(model), "--source", "stdin"],
                         input=text, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "end"] and events[0]["ts"] == 103
    assert "'pump1/flow' taken as the feature 'Pump1/Flow'" in run.stderr and "bad 0," in run.stderr


@pytest.mark.slow
def test_a_feed_whose_names_all_miss_is_said_within_a_minute(tmp_path: Path) -> None:
    """The default form: stdin, no options, the default delay (NO_ROW_WARN_AFTER, 30 s)."""
    model = write_model(tmp_path / "m.onnx", make_card(window=3, features=HEADERS))
    proc = subprocess.Popen([_edgewatch(), "agent", "run", "--model", str(model), "--source", "stdin"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < rows_module.NO_ROW_WARN_AFTER + 3:
            proc.stdin.write(json.dumps({"Volume Flow Rate": 1, "Temp": 2, "PT-101": 3}) + "\n")
            proc.stdin.flush()
            time.sleep(0.5)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [ln for ln in err.splitlines() if "has made no row" in ln]
    assert len(lines) == 1, err
    assert "never received: " + str(HEADERS) in lines[0]
    assert "no feature of the model: ['Volume Flow Rate', 'Temp', 'PT-101']" in lines[0]
    assert "no_values" in err


def test_a_replay_takes_columns_by_the_name_rule(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv = tmp_path / "export.csv"
    header = "Time;FIT-101-PV;pump1_flow;VOLUME FLOW RATERMS;Temperature [C];pressure_bar;Volume Flow RateRMS"
    csv.write_text("\n".join([header] + [f"2024-05-01 08:00:{i:02d};0,5;0,5;9;0,5;0,5;0,5" for i in range(6)]) + "\n")
    agent = _agent(tmp_path)
    with caplog.at_level(logging.INFO, "edgewatch.agent.sources"):
        agent.add_source(make_source(f"replay:{csv}", HEADERS))  # the default form: no options
        summary = agent.run(duration=30)
    assert summary.messages == 6 and summary.bad == {} and summary.windows == 4
    assert all(e["event"] != "start" for e in agent.sinks[0].events)  # the exact column, 0.5, not the 9s
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "'pressure_bar' taken as the feature 'Pressure (bar)'" in said


def test_sensor_topics_under_a_plain_filter_get_the_template_advice(tmp_path: Path, make_broker,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    broker = make_broker().start()
    agent = _agent(tmp_path)
    src = make_source(f"mqtt://{broker.host}:{broker.port}/plant/%23", HEADERS, agent_id="names")
    agent.add_source(src)
    runner = _start(agent)
    pub = Publisher(broker)
    try:
        with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
            assert wait_until(lambda: src.connects == 1 and src.connection.subscribed(src.topic_filter))  # the SUBACK
            for name in HEADERS[:3]:
                pub.send(f"plant/pump-7/{name}", b"12.5")
            assert wait_until(lambda: agent.summary.messages == 3)
    finally:
        agent.request_stop()
        runner.join(10)
        pub.close()
    assert agent.summary.bad == {"wrong_arity": 3}
    said = [r.getMessage() for r in caplog.records if "carried" in r.getMessage()]
    assert len(said) == 1  # once a minute
    assert f'--source "mqtt://{broker.host}:{broker.port}/plant/{{stream}}/{{feature}}"' in said[0]



def test_sparkplug_metrics_named_as_the_gateway_names_them() -> None:
    from edgewatch.agent.sources.sparkplug import SparkplugDecoder
    from edgewatch.wire.sparkplug import encode_metric, encode_payload

    d = SparkplugDecoder(HEADERS)
    metrics = ["Volume_Flow_RateRMS", "temperature", "Pressure", "FIT-101/PV", "Pump1/Flow", "Node Control/Rebirth"]
    birth = encode_payload([encode_metric(m, 0.5 + i, alias=i + 1) for i, m in enumerate(metrics)], timestamp=1_000)
    (first,) = d.decode("spBv1.0/plant/DBIRTH/gw1/pump1", birth)
    assert first.values == [0.5, 1.5, 2.5, 3.5, 4.5]
    (changed,) = d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric(None, 9.0, alias=3)]))
    assert changed.values == [0.5, 1.5, 9.0, 3.5, 4.5]


# -- what must not be taken for what (a review of the rules above) -------------------------------------------------


@pytest.mark.parametrize(("features", "wire"), [
    (["Temp [°C]"], "Temp [°F]"), (["Pressure (bar)"], "Pressure (psi)"), (["Flow (Line 1)"], "Flow (Line 2)"),
    (["TT-1-10"], "TT-11-0"), (["TT_11_0"], "TT-1-10"), (["Level 1.5 m"], "Level 15 m")])
def test_another_unit_or_number_is_another_quantity(features: list[str], wire: str) -> None:
    """A reading in °F, psi, of line 2 or of tag 11-0 is never fed into the feature in °C, bar, line 1, 1-10."""
    assert FeatureNames(features).resolve(wire) is None


@pytest.mark.parametrize(("features", "wire"), [
    (["Temp"], "Temp [°F]"), (["Temp [°C]"], "temp"), (["Temp [°C]"], "temp_(°C)"), (["TT-1-10"], "tt_1_10"),
    (["Level 1.5 m"], "level_1_5_m")])
def test_a_unit_on_one_side_or_the_same_digits_still_match(features: list[str], wire: str) -> None:
    assert FeatureNames(features).resolve(wire) == 0


def test_another_unit_is_said(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "edgewatch.agent.sources"):
        assert FeatureNames(["Pressure (bar)"], source="s").resolve("Pressure (psi)") is None
    assert "'Pressure (psi)' differs from the feature 'Pressure (bar)' in its bracketed part" in caplog.text


@pytest.mark.parametrize("text", ["1,234", "-12,500", "+999,000", "1,000"])
def test_a_comma_that_may_separate_thousands_is_not_a_guess(text: str) -> None:
    """'1,234' is 1234 in an English export and 1.234 in a European one: refused, never 1000x off."""
    assert cell_value(text) is BadReason.NOT_NUMBER


@pytest.mark.parametrize(("text", "value"), [("0,125", 0.125), ("1,5", 1.5), ("12,50", 12.5), ("1234,5", 1234.5),
                                             ("1234,567", 1234.567), ("-0,001", -0.001)])
def test_a_comma_that_cannot_separate_thousands_is_decimal(text: str, value: float) -> None:
    assert cell_value(text) == value


@pytest.mark.parametrize("payload", [
    {"v": 1, "q": False},  # Kepware IoT Gateway
    {"value": 1, "quality": 0x80340000},  # OPC UA BadNodeIdUnknown as a status code
    {"value": 1, "quality": -2138308608},  # OPC UA BadSensorFailure (0x808C0000) read as a signed int32
    {"value": 1, "quality": "BAD"}, {"value": 1, "quality": "invalid"}, {"value": 1, "quality": "Offline"},
    {"value": 1, "quality": "schlecht"}, {"value": 1, "quality": "Ungültig"}, {"value": 1, "quality": "mauvaise"}])
def test_bad_quality_in_other_forms_is_bad_status(payload: dict) -> None:
    from edgewatch.agent.sources.parsing import parse_reading

    assert parse_reading(json.dumps(payload).encode()) is BadReason.BAD_STATUS


@pytest.mark.parametrize("quality", [True, 192, 0, 1, 64, 0x40000000, "good", "Good_LocalOverride", "uncertain",
                                     "gut", None, 1.5, [1]])
def test_good_or_ambiguous_quality_keeps_the_value(quality: object) -> None:
    from edgewatch.agent.sources.parsing import parse_reading

    assert parse_reading(json.dumps({"value": 1.5, "q": quality}).encode()) == (1.5, None)


def test_two_spellings_of_one_feature_on_a_stream_feed_neither(caplog: pytest.LogCaptureFixture) -> None:
    """A gateway publishing Temp [°C] and Temp [°F] beside each other: the feature Temp would take turns."""
    for first, second in (("Temp [°C]", "Temp [°F]"), ("Temp [°F]", "Temp [°C]")):  # order changes nothing
        rows = RowAssembler(["Temp", "Flow"], source="s")
        with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
            out = []
            for t in range(4):
                out += rows.reading(b"20", "p", first, 100.0 + t)
                out += rows.reading(b"68", "p", second, 100.0 + t)
                out += rows.reading(b"1", "p", "Flow", 100.0 + t)
        made = [m.values for m in out if type(m) is not BadReason]
        assert made == []  # the first spelling's value is dropped when the second comes
        assert out.count(BadReason.UNKNOWN_FEATURE) == 7
        assert f"{first!r} and {second!r} both match the feature 'Temp'" in caplog.text
        later = rows.reading(b"20", "p", "Temp", 200.0) + rows.reading(b"1", "p", "Flow", 200.0)
        assert [m.values for m in later if type(m) is not BadReason] == [[20.0, 1.0]]  # the exact name feeds it
        assert rows.reading(b"68", "p", second, 201.0) == [BadReason.UNKNOWN_FEATURE]
        caplog.clear()
    other = RowAssembler(["Temp", "Flow"])  # another stream's spelling is its own affair
    assert other.reading(b"20", "p1", "temp", 1.0) == [] and other.reading(b"21", "p2", "TEMP", 1.0) == []
    assert other.reading(b"1", "p1", "Flow", 1.0)[0].values == [20.0, 1.0]


def test_an_exact_topic_then_another_spelling_keeps_the_exact_one() -> None:
    rows = RowAssembler(["Temp", "Flow"])
    assert rows.reading(b"20", "p", "Temp", 1.0) == []
    assert rows.reading(b"68", "p", "temp", 1.0) == [BadReason.UNKNOWN_FEATURE]
    assert rows.reading(b"1", "p", "Flow", 1.0)[0].values == [20.0, 1.0]


def test_two_keys_of_one_feature_in_an_object_fill_neither() -> None:
    rows = RowAssembler(["Temp", "Flow"])
    assert rows.keyed({"Temp [°C]": 20, "Temp [°F]": 68, "Flow": 1}, "p", 0.0) is BadReason.MISSING_FEATURE
    assert rows.keyed({"Temp [°F]": 68, "Temp [°C]": 20, "Flow": 1}, "q", 0.0) is BadReason.MISSING_FEATURE
    assert rows.keyed({"Temp": 21, "Temp [°F]": 68, "Flow": 1}, "r", 0.0).values == [21.0, 1.0]


def test_two_sparkplug_metrics_of_one_feature_feed_neither() -> None:
    from edgewatch.agent.sources.sparkplug import SparkplugDecoder
    from edgewatch.wire.sparkplug import encode_metric, encode_payload

    d = SparkplugDecoder(["Temp", "Flow"])
    birth = encode_payload([encode_metric("Temp [°C]", 20.0, alias=1), encode_metric("Temp [°F]", 68.0, alias=2),
                            encode_metric("Flow", 1.0, alias=3)], timestamp=1_000)
    assert d.decode("spBv1.0/plant/DBIRTH/gw1/pump1", birth) == [BadReason.WRONG_ARITY]  # Temp fed by neither
    assert d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric(None, 69.0, alias=2)])) == [
    ]  # alias 2 is declared, and feeds no feature
    by_name = SparkplugDecoder(["Temp", "Flow"])  # data naming its metrics, no birth
    first = encode_payload([encode_metric("temp [°C]", 20.0), encode_metric("Flow", 1.0)])
    (m,) = by_name.decode("spBv1.0/plant/DDATA/gw1/pump2", first)
    assert m.values == [20.0, 1.0]
    both = encode_payload([encode_metric("temp [°F]", 68.0), encode_metric("Flow", 2.0)])
    assert by_name.decode("spBv1.0/plant/DDATA/gw1/pump2", both)[0].values == [20.0, 2.0]  # °F never fed Temp
    exact = encode_payload([encode_metric("Temp [°F]", 69.0), encode_metric("Temp", 21.0)])
    assert by_name.decode("spBv1.0/plant/DDATA/gw1/pump2", exact)[0].values == [21.0, 2.0]


def test_bad_quality_while_a_row_is_assembled_makes_no_row_with_a_hole() -> None:
    """a reports, then a bad quality for a, then b: the row lacks a (missing), it is not [NaN, b]."""
    rows = RowAssembler(["a", "b"])
    assert rows.reading(b"1", "p", "a", 100.0) == []
    assert rows.reading(b'{"value": 7, "quality": "bad"}', "p", "a", 100.5) == [BadReason.BAD_STATUS]
    out = rows.reading(b"2", "p", "b", 101.0) + rows.reading(b"3", "p", "b", 102.0)
    assert all(type(m) is BadReason for m in out), out


def test_a_template_with_a_wildcard_beside_the_stream_keeps_two_sites_apart(tmp_path: Path, make_broker) -> None:
    """site/+/{stream}/{feature}: pump-7 of site-a and pump-7 of site-b are two machines, not one stream."""
    broker = make_broker().start()
    agent = _agent(tmp_path)
    src = make_source(f"mqtt://{broker.host}:{broker.port}/site/+/{{stream}}/{{feature}}", HEADERS, agent_id="names")
    agent.add_source(src)
    runner = _start(agent)
    pub = Publisher(broker)
    try:
        assert wait_until(lambda: src.connects == 1 and src.connection.subscribed(src.topic_filter))  # the SUBACK
        for i in range(3):
            for site, value in (("site-a", "0.5"), ("site-b", "9.5")):
                for name in HEADERS:
                    pub.send(f"site/{site}/pump-7/{name}", value)
        assert wait_until(lambda: agent.summary.messages == 6)
    finally:
        agent.request_stop()
        runner.join(10)
        pub.close()
    assert sorted(agent.streams) == ["site-a/pump-7", "site-b/pump-7"]
    assert agent.summary.bad == {} and agent.summary.windows == 2


def test_template_levels_and_streams() -> None:
    from edgewatch.agent.sources.mqtt import TopicTemplate

    t = TopicTemplate.parse("s", "site/+/{stream}/{feature}")
    assert t.topic_filter("site/+/{stream}/{feature}") == "site/+/+/#"
    assert t.split("site/a/pump-7/Pump1/Flow") == ("a/pump-7", "Pump1/Flow")
    assert t.split("site/a/pump-7") is None and t.split("site/a/pump-7/") is None
    bare = TopicTemplate.parse("s", "plant/{stream}/{feature}")
    assert bare.split("plant/pump-7/Flow") == ("pump-7", "Flow")  # no wildcard: the stream level alone, as before
    inner = TopicTemplate.parse("s", "+/{feature}/{stream}")
    assert inner.topic_filter("+/{feature}/{stream}") == "+/+/+" and inner.split("a/Flow/p7") == ("a/p7", "Flow")


def test_a_flood_of_new_names_does_not_silence_or_slow_the_names_in_use(caplog: pytest.LogCaptureFixture,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A topic level carrying ids or times fills the name cache; a spelling seen after it is still logged once
    and matched once, not on every message."""
    from edgewatch.agent.sources import feature_names

    names = FeatureNames(HEADERS, source="s")
    for i in range(feature_names.MAX_CACHED + 10):
        assert names.resolve(f"event-{i}") is None
    calls = []
    match = names._match
    monkeypatch.setattr(names, "_match", lambda name, say: calls.append(name) or match(name, say))
    with caplog.at_level(logging.INFO, "edgewatch.agent.sources"):
        for _ in range(3):
            assert names.resolve("temperature") == 1
    assert calls == ["temperature"]
    assert "'temperature' taken as the feature 'Temperature'" in caplog.text


def test_a_long_name_is_not_kept_whole() -> None:
    rows = RowAssembler(["a"])
    rows.reading(b"1", "p", "x" * 60_000, 1.0)
    assert [len(n) for n in rows._streams["p"].strangers] == [rows_module.STRANGER_CHARS]
    assert "x" * 60_000 not in rows.names._cache


def test_a_clock_an_hour_off_is_said_for_rows_the_assembler_does_not_make(tmp_path: Path, make_broker,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """{"values": [...], "ts": local time without an offset} and Sparkplug payloads on MQTT: said as for topics."""
    from edgewatch.wire.sparkplug import encode_metric, encode_payload

    broker = make_broker().start()
    agent = _agent(tmp_path)
    src = make_source(f"mqtt://{broker.host}:{broker.port}/%23", HEADERS, agent_id="names")
    agent.add_source(src)
    runner = _start(agent)
    pub = Publisher(broker)
    try:
        with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
            assert wait_until(lambda: src.connects == 1 and src.connection.subscribed(src.topic_filter))  # the SUBACK
            naive = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 3600))
            for _ in range(3):
                pub.send("plant/pump-7", json.dumps({"values": [0.5] * 5, "ts": naive}))
            assert wait_until(lambda: agent.summary.messages == 3)
            said = [r.getMessage() for r in caplog.records if "this machine's clock" in r.getMessage()]
            assert len(said) == 1 and "'plant/pump-7' sends times" in said[0] and "ahead of" in said[0]
            src.rows._clock_warned_at = -float("inf")  # said at most every 10 minutes: here, again at once
            metrics = [encode_metric(h, 0.5, alias=i + 1) for i, h in enumerate(HEADERS)]
            late = int((time.time() - 7200) * 1000)
            pub.send("spBv1.0/plant/DBIRTH/gw1/pump1", encode_payload(metrics, timestamp=late))
            assert wait_until(lambda: agent.summary.messages == 4)
    finally:
        agent.request_stop()
        runner.join(10)
        pub.close()
    said = [r.getMessage() for r in caplog.records if "this machine's clock" in r.getMessage()]
    assert len(said) == 2 and "'spBv1.0/plant/gw1/pump1' sends times 7200 s behind" in said[1]


@pytest.mark.parametrize(("features", "wire"), [(["Flow"], "Flow (2)"), (["Flow"], "Flow [2]"), (["Flow (2)"], "flow"),
                                                (["Pump [1]"], "Pump")])
def test_a_number_in_brackets_is_an_index_not_a_unit(features: list[str], wire: str) -> None:
    """Flow (2), the second flow meter, is not the model's Flow; the model's Flow (2) is not a plant's Flow."""
    assert FeatureNames(features).resolve(wire) is None


def test_a_number_in_brackets_still_matches_its_own_spellings() -> None:
    names = FeatureNames(["Flow (2)", "Flow (1)", "Temp (%)"])
    assert [names.resolve(w) for w in ("flow_2", "FLOW [1]", "temp", "Temp")] == [0, 1, 2, 2]


def test_the_no_row_line_is_bounded_per_source_over_many_streams(caplog: pytest.LogCaptureFixture) -> None:
    """200 machines sending a name the model lacks for 3 minutes: 10 lines a minute at most, every minute."""
    rows = RowAssembler(["a", "b"], source="s")
    with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
        for second in range(180):
            for k in range(200):
                rows.reading(b"1", f"m{k}", "c", 1_000.0 + second)
    said = [r for r in caplog.records if "has made no row" in r.getMessage()]
    per_minute = [sum(1 for r in said if f"for {s}" in r.getMessage()) for s in ("30 s", "90 s", "150 s")]
    assert 20 <= len(said) <= 30 and per_minute[0] == 10, per_minute


def test_a_thousands_like_comma_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    rows = RowAssembler(["a", "b"], source="s")
    with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
        assert rows.reading(b"1,234", "p", "a", 1.0) == [BadReason.NOT_NUMBER]
        assert rows.reading(b'"12,500"', "p", "b", 1.0) == [BadReason.NOT_NUMBER]
        assert rows.keyed({"a": "1,000", "b": 1}, "q", 2.0) is BadReason.NOT_NUMBER
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "'1,234' for 'a' could be 1.234 or 1234" in said[0]


_PIECES = st.sampled_from(["Temp", "temp", " [°C]", " [°F]", "(2)", "_", "-", ".", "/", "%2F", "%", "1", "10", ",",
                           "Flow", "Pressure (bar)", "(psi)", "[", ")", "\u00a0", "ß", "İ", "q", "ts"])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(names=st.lists(st.lists(_PIECES, max_size=5).map("".join), min_size=1, max_size=6),
       payload=st.one_of(st.binary(max_size=30), st.sampled_from([b"1,234", b"12,5", b'{"v": 1, "q": false}',
                                                                   b'{"value": "0,5", "quality": -1}', b"null"])))
def test_any_name_and_payload_gives_a_reason_or_a_row_never_an_error(names: list[str], payload: bytes) -> None:
    features = ["Temp [°C]", "Temp", "Flow (2)", "Pressure (bar)", "TT-1-10"]
    rows = RowAssembler(features, source="s")
    for i, name in enumerate(names):
        for m in rows.reading(payload, "p", name, 100.0 + i):
            assert type(m) is BadReason or len(m.values) == len(features)
    assert rows.keyed_message(json.dumps({n: payload.decode("latin-1") for n in names}), "p", 200.0) is not None
    j = FeatureNames(features).resolve(names[0])
    assert j is None or 0 <= j < len(features)


def test_a_streams_own_numbers_tell_what_its_commas_are() -> None:
    """A European gateway writing three decimals ('4,215') was refused for good; a value only a decimal comma can
    be ('0,125') tells, and from then on its stream reads '4,215' as 4.215. An English one ('1,234,567') tells
    thousands. Each stream learns its own: one broker carries gateways of both kinds."""
    rows = RowAssembler(["a", "b"], source="s")
    assert rows.reading(b'"4,215"', "eu", "a", 1.0) == [BadReason.NOT_NUMBER]  # not yet known
    assert rows.reading(b'"0,125"', "eu", "b", 1.0) == []  # a decimal comma, the only reading
    assert [list(m.values) for m in rows.reading(b'"4,215"', "eu", "a", 2.0)] == [[4.215, 0.125]]
    assert rows.keyed({"a": "1,234,567", "b": 1}, "us", 3.0).values == [1234567.0, 1.0]
    assert rows.keyed({"a": "4,215", "b": 1}, "us", 4.0).values == [4215.0, 1.0]
    assert rows.keyed({"a": "1,234.5", "b": "2,000"}, "us2", 5.0).values == [1234.5, 2000.0]
    # a stream that never told stays refused, whatever the others said
    assert rows.keyed({"a": "4,215", "b": 1}, "other", 6.0) is BadReason.NOT_NUMBER
    # what a stream learnt first holds: a later "1,234,567" on the European one is read as thousands (the only
    # reading), without turning its "4,215" into 4215
    assert rows.keyed({"a": "1,234,567", "b": "4,215"}, "eu", 7.0).values == [1234567.0, 4.215]


def test_a_clock_an_hour_off_is_said_for_arrays_on_stdin(tmp_path: Path) -> None:
    """``{"values": [...], "ts": local time}`` lines on stdin, as the README pipes them: said once, like MQTT's."""
    model = write_model(tmp_path / "m.onnx", make_card(window=2, features=HEADERS, threshold=1e9))
    naive = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 3600))
    lines = [json.dumps({"stream": "pump-7", "values": [0.5] * 5, "ts": naive}) for _ in range(5)]
    run = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source",
                          "stdin", "-q"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    said = [line for line in run.stderr.splitlines() if "this machine's clock" in line]
    assert len(said) == 1 and "'pump-7' sends times" in said[0] and "ahead of" in said[0], run.stderr
