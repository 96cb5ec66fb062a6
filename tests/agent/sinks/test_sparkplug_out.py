"""Sparkplug B out through a real mosquitto, read back with a decoder written here from the public schema.

The decoder below is deliberately not ``edgewatch.wire.sparkplug``: it is
a second, minimal reading of ``sparkplug_b.proto`` (Payload: timestamp 1,
metrics 2, seq 3; Metric: name 1, alias 2, timestamp 3, datatype 4,
is_null 7, int 10, long 11, float 12, double 13, boolean 14, string 15),
so an error shared by the agent's encoder and decoder cannot pass.
"""

from __future__ import annotations

import signal
import struct
from pathlib import Path

import pytest

from edgewatch.agent.sinks import SinkConfigError, SinkContext, make_sink
from tests.agent.sinks.httpkit import FAULT, NORMAL, FedAgent
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

BOOLEAN, DOUBLE, INT64 = 11, 10, 4  # Sparkplug B DataType values


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    out, i = [], 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        else:
            raise AssertionError(f"wire type {wire}")
        out.append((number, wire, value))
    return out


def decode(payload: bytes) -> dict:
    msg: dict = {"timestamp": None, "seq": None, "metrics": []}
    for number, _wire, value in _fields(payload):
        if number == 1:
            msg["timestamp"] = value
        elif number == 3:
            msg["seq"] = value
        elif number == 2:
            m: dict = {"name": None, "alias": None, "is_null": False, "value": None}
            for n, _w, v in _fields(value):  # type: ignore[arg-type]
                if n == 1:
                    m["name"] = v.decode()  # type: ignore[union-attr]
                elif n == 2:
                    m["alias"] = v
                elif n == 3:
                    m["timestamp"] = v
                elif n == 4:
                    m["datatype"] = v
                elif n == 7:
                    m["is_null"] = bool(v)
                elif n in (10, 11):
                    m["value"] = v
                elif n == 13:
                    m["value"] = struct.unpack("<d", v)[0]  # type: ignore[arg-type]
                elif n == 14:
                    m["value"] = bool(v)
            msg["metrics"].append(m)
    return msg


def rebirth_command() -> bytes:
    """An NCMD payload: one metric "Node Control/Rebirth", Boolean true, encoded by hand."""
    name = b"Node Control/Rebirth"
    metric = bytes([0x0A, len(name)]) + name + bytes([0x20, BOOLEAN, 0x70, 1])
    return bytes([0x12, len(metric)]) + metric


def node_messages(sub, node: str = "edge1") -> list[tuple[str, dict]]:
    """(message type[/device], decoded payload) of one edge node, in arrival order."""
    out = []
    for topic, payload, _ in list(sub.messages):
        parts = topic.split("/")
        if parts[0] == "spBv1.0" and parts[3] == node and parts[2] != "NCMD":
            out.append(("/".join([parts[2], *parts[4:]]), decode(payload)))
    return out


def kinds(msgs: list[tuple[str, dict]]) -> list[str]:
    return [k for k, _ in msgs]


def check_seq(msgs: list[tuple[str, dict]]) -> None:
    """seq: 0 in each NBIRTH, one more (mod 256) in each message after it; NDEATH has none."""
    expected = None
    for kind, msg in msgs:
        if kind == "NDEATH":
            assert msg["seq"] is None
            expected = None
            continue
        if kind == "NBIRTH":
            expected = 0
        assert msg["seq"] == expected, (kind, msg["seq"], expected, kinds(msgs))
        expected = (expected + 1) % 256


def metric(msg: dict, name: str) -> dict:
    return next(m for m in msg["metrics"] if m["name"] == name)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=4, threshold=0.5, k=2, n=3))


def test_births_data_rebirth_and_the_will_of_a_killed_agent(model: Path, tmp_path: Path, broker, collector) -> None:
    sub = collector(broker, "spBv1.0/plant/#", client_id="c-spb", persistent=False)
    url = f"sparkplug://{broker.host}:{broker.port}/plant/edge1"
    agent = FedAgent(model, "--sink", url, "--agent-id", "press-7", cwd=tmp_path)
    try:
        agent.rows(NORMAL, 8)
        assert wait_until(lambda: "DBIRTH/pump-1" in kinds(node_messages(sub)), 30)
        nbirth = node_messages(sub)[0]
        assert nbirth[0] == "NBIRTH" and nbirth[1]["seq"] == 0
        bdseq = metric(nbirth[1], "bdSeq")
        assert bdseq["datatype"] == INT64 and bdseq["value"] == 0  # a first start
        rebirth = metric(nbirth[1], "Node Control/Rebirth")
        assert rebirth["datatype"] == BOOLEAN and rebirth["value"] is False
        dbirth = dict(node_messages(sub))["DBIRTH/pump-1"]
        by_name = {m["name"]: m for m in dbirth["metrics"]}
        assert {n: by_name[n]["datatype"] for n in by_name} == {"anomaly": BOOLEAN, "anomaly_score": DOUBLE,
                                                                "threshold": DOUBLE}
        aliases = {n: by_name[n]["alias"] for n in by_name}
        assert len(set(aliases.values()) | {rebirth["alias"]}) == 4  # unique in the edge node
        assert by_name["anomaly"]["value"] is False and by_name["threshold"]["value"] == 0.5

        agent.rows(FAULT, 6)
        anomaly_values = lambda: [m["value"] for k, msg in node_messages(sub) if k == "DDATA/pump-1"  # noqa: E731
                                  for m in msg["metrics"] if m["alias"] == aliases["anomaly"]]
        assert wait_until(lambda: anomaly_values() == [True], 20), kinds(node_messages(sub))
        scores = [m["value"] for k, msg in node_messages(sub) if k == "DDATA/pump-1" for m in msg["metrics"]
                  if m["alias"] == aliases["anomaly_score"]]
        assert scores and max(scores) > 1
        assert all(m["name"] is None for k, msg in node_messages(sub) if k.startswith("DDATA")
                   for m in msg["metrics"])  # data by alias only
        agent.rows(NORMAL, 10)
        assert wait_until(lambda: anomaly_values() == [True, False], 20)

        sub.client.publish("spBv1.0/plant/NCMD/edge1", rebirth_command(), qos=0)
        assert wait_until(lambda: kinds(node_messages(sub)).count("NBIRTH") == 2
                          and kinds(node_messages(sub)).count("DBIRTH/pump-1") == 2, 20)
        births = [msg for k, msg in node_messages(sub) if k == "NBIRTH"]
        assert metric(births[1], "bdSeq")["value"] == 0  # the same MQTT session: the same bdSeq
        check_seq(node_messages(sub))

        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(10)
        assert wait_until(lambda: "NDEATH" in kinds(node_messages(sub)), 20)  # the broker's will
        death = dict(node_messages(sub))["NDEATH"]
        assert metric(death, "bdSeq")["value"] == 0 and death["seq"] is None
    finally:
        agent.kill()

    # the next start is a new session: bdSeq one more, in its NBIRTH and, on a clean stop, its NDEATH
    seen = len(node_messages(sub))
    again = FedAgent(model, "--sink", url, "--agent-id", "press-7", cwd=tmp_path)
    try:
        again.rows(NORMAL, 8)
        assert wait_until(lambda: "NBIRTH" in kinds(node_messages(sub)[seen:]), 30)
        code, _out, err = again.finish()
    finally:
        again.kill()
    assert code == 0, err[-3000:]
    assert wait_until(lambda: "NDEATH" in kinds(node_messages(sub)[seen:]), 10)
    later = node_messages(sub)[seen:]
    assert metric(dict(later)["NBIRTH"], "bdSeq")["value"] == 1
    assert metric(dict(later)["NDEATH"], "bdSeq")["value"] == 1
    check_seq(later)


def test_seq_wraps_after_255_and_bdseq_after_255(tmp_path: Path, broker, collector) -> None:
    sub = collector(broker, "spBv1.0/wrap/#", client_id="c-wrap", persistent=False)
    state = tmp_path / "sparkplug-wrap-n1"
    state.mkdir()
    (state / "bdseq").write_text("255")  # the last session's
    sink = make_sink(f"sparkplug://{broker.host}:{broker.port}/wrap/n1", SinkContext(spool_dir=tmp_path))
    try:
        assert wait_until(lambda: "NBIRTH" in kinds(node_messages(sub, "n1")), 10)
        for i in range(300):
            sink.send({"event": "start" if i % 2 == 0 else "end", "stream": "s", "threshold": 0.5,
                       "anomaly_score": 2.0})
        assert wait_until(lambda: len(node_messages(sub, "n1")) >= 301, 20)  # NBIRTH, DBIRTH (the first), 299 DDATA
    finally:
        sink.close()
    msgs = node_messages(sub, "n1")
    assert metric(msgs[0][1], "bdSeq")["value"] == 0  # 255 + 1 wraps to 0
    seqs = [m["seq"] for k, m in msgs if k != "NDEATH"]
    assert seqs[:2] == [0, 1] and seqs[255:258] == [255, 0, 1]
    check_seq(msgs)


@pytest.mark.parametrize("url, says", [
    ("sparkplug://127.0.0.1:1883", "GROUP/NODE"),
    ("sparkplug://127.0.0.1:1883/g/n/extra", "GROUP/NODE"),
    ("sparkplug://127.0.0.1:1883/g/n?interval=0", "interval"),
    ("sparkplug://127.0.0.1:1883/g/n?qos=1", "unknown setting"),
])
def test_bad_urls_are_refused(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(SinkConfigError, match=says):
        make_sink(url, SinkContext(spool_dir=tmp_path))


def test_a_table_with_interval_and_deadband_limits_the_score_updates(tmp_path: Path, broker, collector) -> None:
    from edgewatch.agent.events import BatchView, ScoredWindow

    sub = collector(broker, "spBv1.0/db/#", client_id="c-db", persistent=False)
    sink = make_sink({"url": f"sparkplug://{broker.host}:{broker.port}/db/n2", "interval": 0.1, "deadband": 0.5},
                     SinkContext(spool_dir=tmp_path))

    def scored(value: float) -> None:
        sink.on_batch(BatchView(["s"], [0.0], [1], None, [ScoredWindow(0, "s", 0.0, 1, value, value > 1, value)],
                                threshold=0.5))

    def score_updates() -> list[float]:
        return [m["value"] for k, msg in node_messages(sub, "n2") if k == "DDATA/s" for m in msg["metrics"]]

    try:
        scored(0.2)
        assert wait_until(lambda: "DBIRTH/s" in kinds(node_messages(sub, "n2")), 10)
        assert metric(dict(node_messages(sub, "n2"))["DBIRTH/s"], "anomaly_score")["value"] == 0.2
        for value in (0.3, 0.5, 0.69):  # within the deadband of 0.2: no DDATA
            scored(value)
            assert not wait_until(lambda: score_updates(), 0.3)
        scored(0.8)
        assert wait_until(lambda: score_updates() == [0.8], 5)
    finally:
        sink.close()


def test_a_stream_the_agent_drops_gets_a_ddeath_and_a_new_birth_when_it_sends_again(
        model: Path, tmp_path: Path, broker, collector) -> None:
    sub = collector(broker, "spBv1.0/ttl/#", client_id="c-ttl", persistent=False)
    url = f"sparkplug://{broker.host}:{broker.port}/ttl/edge3"
    agent = FedAgent(model, "--sink", url, "--stream-ttl", "3", cwd=tmp_path)  # margin for a loaded CI
    seen = lambda: kinds(node_messages(sub, "edge3"))  # noqa: E731

    try:
        agent.rows(NORMAL, 8, stream="pump-1")
        agent.rows(NORMAL, 8, stream="pump-2")
        assert agent.while_sending("pump-2", lambda: {"DBIRTH/pump-1", "DBIRTH/pump-2"} <= set(seen()))
        assert agent.while_sending("pump-2", lambda: "DDEATH/pump-1" in seen())  # pump-1 silent past its TTL
        assert "DDEATH/pump-2" not in seen()
        death = dict(node_messages(sub, "edge3"))["DDEATH/pump-1"]
        assert death["metrics"] == [] and death["timestamp"]

        agent.rows(NORMAL, 8, stream="pump-1")  # back: born again, with its metrics
        assert agent.while_sending("pump-2", lambda: seen().count("DBIRTH/pump-1") == 2)
        assert "DDEATH/pump-2" not in seen()
        code, _out, err = agent.finish()
    finally:
        agent.kill()
    assert code == 0, err[-3000:]
    check_seq(node_messages(sub, "edge3"))


def test_two_streams_that_map_to_one_device_id_are_two_devices(tmp_path: Path, broker, collector) -> None:
    """``line/1`` and ``line_1`` were both the device ``line_1``: the end of one's episode set the other's
    ``anomaly`` false while its fault went on. The first keeps the plain id, the second gets a suffix of its own;
    dropping the first (``--stream-ttl``) sends its DDEATH, not one for the second."""
    sub = collector(broker, "spBv1.0/clash/#", client_id="c-clash", persistent=False)
    sink = make_sink(f"sparkplug://{broker.host}:{broker.port}/clash/n3", SinkContext(spool_dir=tmp_path))
    try:
        assert wait_until(lambda: "NBIRTH" in kinds(node_messages(sub, "n3")), 10)
        sink.send({"event": "start", "stream": "line/1", "threshold": 0.5, "anomaly_score": 3.0})
        sink.send({"event": "start", "stream": "line_1", "threshold": 0.5, "anomaly_score": 2.0})
        sink.send({"event": "end", "stream": "line_1", "threshold": 0.5, "anomaly_score": 2.0})
        sink.on_forget(["line_1"])
        assert wait_until(lambda: len(node_messages(sub, "n3")) >= 5, 10)
    finally:
        sink.close()
    msgs = [(k, m) for k, m in node_messages(sub, "n3") if k not in ("NBIRTH", "NDEATH")]
    devices = sorted({k.split("/", 1)[1] for k, _ in msgs})
    assert len(devices) == 2 and devices[0] == "line_1" and devices[1].startswith("line_1_"), devices
    other = devices[1]
    assert kinds(msgs) == ["DBIRTH/line_1", f"DBIRTH/{other}", f"DDATA/{other}", f"DDEATH/{other}"]
    assert metric(msgs[0][1], "anomaly")["value"] is True  # line/1's alarm stays on
