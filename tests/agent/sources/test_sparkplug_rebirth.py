"""Sparkplug B rebirth requests: an agent started after the edge nodes asks them for their births.

Real mosquitto, real paho edge nodes written with the wire encoder (births
sent before the agent subscribed, then DDATA by alias only), the agent
itself (the CLI the docs' way, or in-process where a test needs its
counters), and the built-in simulator's Sparkplug outlet.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources import make_source
from edgewatch.agent.sources.base import SourceConfigError
from edgewatch.agent.sources.rebirth import RebirthRequests
from edgewatch.wire.sparkplug import BOOLEAN, decode_payload, encode_metric, encode_payload
from tests.conftest import free_port
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

FEATURES = ["a", "b", "c", "d"]
ROOT = Path(__file__).resolve().parents[3]


class EdgeNode:
    """A Sparkplug edge node with one device: births once, then DDATA by alias. It answers an NCMD rebirth
    (``answer``) as a real node does, with a new NBIRTH and DBIRTH (before its next data message: one
    thread publishes, so the births go out in order), and keeps every NCMD it got."""

    def __init__(self, broker, group: str, node: str, answer: bool = True) -> None:  # noqa: ANN001
        self.group, self.node, self.answer = group, node, answer
        self.commands: list[paho.MQTTMessage] = []
        self.asked = threading.Event()
        self.seq = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"node-{group}-{node}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"spBv1.0/{group}/NCMD/{node}", qos=0)
        time.sleep(0.2)  # the SUBACK

    def _send(self, kind: str, metrics: list[bytes], device: bool = True) -> None:
        self.seq = 0 if kind == "NBIRTH" else (self.seq + 1) % 256
        topic = f"spBv1.0/{self.group}/{kind}/{self.node}" + ("/pump" if device else "")
        # QoS 1 and its PUBACK: the broker has routed the message (a QoS 0 publish is "done" once paho has
        # it, and a birth still in paho's queue reached an agent that subscribed after it, now and then)
        self.client.publish(topic, encode_payload(metrics, timestamp=int(time.time() * 1000), seq=self.seq),
                            qos=1).wait_for_publish(5)

    def births(self) -> None:
        self._send("NBIRTH", [encode_metric("Node Control/Rebirth", False, datatype=BOOLEAN)], device=False)
        self._send("DBIRTH", [encode_metric(f, 0.5, alias=i + 1) for i, f in enumerate(FEATURES)])

    def data(self, value: float = 0.5) -> None:
        if self.asked.is_set():
            self.asked.clear()
            self.births()
        self._send("DDATA", [encode_metric(None, value, alias=i + 1) for i in range(len(FEATURES))])

    def _on_message(self, _client, _userdata, msg) -> None:  # noqa: ANN001
        self.commands.append(msg)
        if self.answer:
            self.asked.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


MARKER = "spBv1.0/marker/NCMD/m"  # a node nobody runs: only the tests publish there


class Listener:
    """Every message on a filter, as a broker's other client sees it."""

    def __init__(self, broker, topic_filter: str) -> None:  # noqa: ANN001
        self.got: list[paho.MQTTMessage] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{free_port()}")
        self.client.on_message = lambda _c, _u, msg: self.got.append(msg)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topic_filter, qos=1)
        time.sleep(0.2)

    def mark(self) -> None:
        """Publish a marker and wait for it: whatever the agent published before has then arrived here."""
        self.client.publish(MARKER, b"", qos=1).wait_for_publish(5)
        assert wait_until(lambda: any(m.topic == MARKER for m in self.got))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _agent(tmp_path: Path, agent_id: str, features: list[str] = FEATURES) -> Agent:
    model = ScoringModel(write_model(tmp_path / f"{agent_id}.onnx", make_card(window=5, features=features)))
    return Agent(model, [], AgentOptions(stride=1, drift_every=0, agent_id=agent_id))


def _run(agent: Agent) -> threading.Thread:
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    return t


def _metric(base: str, pattern: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{pattern} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_default_form_an_agent_started_after_the_edge_node_asks_for_a_rebirth_and_scores(
        tmp_path: Path, make_broker) -> None:
    """The docs' command with a plain Sparkplug source: one NCMD (QoS 0, not retained, timestamp, no seq,
    Node Control/Rebirth = true), the node's new births, windows scored, unknown_alias no longer rising."""
    broker = make_broker().start()  # its own broker: the default --agent-id's session is this test's alone
    node = EdgeNode(broker, "plant", "gw1")
    node.births()  # before the agent: it will never see these
    for _ in range(5):
        node.data()
    model = write_model(tmp_path / "m.onnx", make_card(window=5))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    source = f"mqtt://{broker.host}:{broker.port}/spBv1.0/%23"
    proc = subprocess.Popen([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                             "--source", source, "--metrics", f"127.0.0.1:{port}", "--summary-json", "summary.json"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        def scored() -> bool:
            node.data()
            time.sleep(0.02)
            try:
                return _metric(base, "edgewatch_windows_scored_total") > 0
            except OSError:
                return False
        assert wait_until(scored, timeout=60), proc.stderr.read() if proc.poll() is not None else "no window"
        unknown = _metric(base, r'edgewatch_bad_messages_total\{reason="unknown_alias"\}')
        assert unknown >= 1  # the data before the rebirth could not be read
        messages = _metric(base, "edgewatch_messages_total")
        for i in range(40):
            node.data(0.5 + i / 1000)
        assert wait_until(lambda: _metric(base, "edgewatch_messages_total") >= messages + 40, timeout=60)
        assert _metric(base, r'edgewatch_bad_messages_total\{reason="unknown_alias"\}') == unknown
        assert _metric(base, r'edgewatch_sparkplug_rebirths_total\{source="[^"]*"\}') == 1
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        node.close()
    assert proc.returncode == 0, err[-2000:]
    assert "Sparkplug rebirth requests sent 1" in err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sparkplug_rebirths"] == 1 and summary["bad"] == {"unknown_alias": unknown}
    assert len(node.commands) == 1  # the data that came while it was answering did not ask again
    ncmd = node.commands[0]
    assert ncmd.topic == "spBv1.0/plant/NCMD/gw1" and ncmd.qos == 0 and not ncmd.retain
    ts, seq, metrics = decode_payload(ncmd.payload)
    assert seq is None and ts is not None and abs(ts / 1000 - time.time()) < 600
    assert [(m.name, m.datatype, m.value) for m in metrics] == [("Node Control/Rebirth", BOOLEAN, True)]


def test_with_sparkplug_rebirth_0_the_agent_never_publishes(tmp_path: Path, broker) -> None:
    listener = Listener(broker, "spBv1.0/+/NCMD/#")
    node = EdgeNode(broker, "quiet", "gw1")
    node.births()
    agent = _agent(tmp_path, "rebirth-off")
    src = make_source(f"mqtt://{broker.host}:{broker.port}/spBv1.0/quiet/%23?sparkplug_rebirth=0", FEATURES,
                      agent_id="rebirth-off")
    agent.add_source(src)
    runner = _run(agent)
    try:
        assert wait_until(lambda: src.connects == 1 and src.connection.subscribed(src.topic_filter))  # the SUBACK
        for _ in range(30):
            node.data()
        assert wait_until(lambda: agent.summary.bad.get("unknown_alias") == 30)
        listener.mark()  # anything the agent had published would be before it
    finally:
        agent.request_stop()
        runner.join(10)
        node.close()
        listener.close()
    assert [m.topic for m in listener.got] == [MARKER]
    assert node.commands == [] and src.rebirths is None
    assert agent.summary.sparkplug_rebirths == 0 and agent.summary.windows == 0


def test_the_option_is_a_switch_and_a_misspelt_value_is_refused(broker) -> None:
    url = f"mqtt://{broker.host}:{broker.port}/spBv1.0/%23"
    assert make_source(url, FEATURES).rebirths is not None  # default on
    assert make_source(url + "?sparkplug_rebirth=off", FEATURES).rebirths is None
    assert make_source({"url": url, "sparkplug-rebirth": False}, FEATURES).rebirths is None  # a TOML table
    assert make_source(url + "?sparkplug_rebirth=1", FEATURES).rebirths is not None
    with pytest.raises(SourceConfigError, match="sparkplug_rebirth must be 1 or 0"):
        make_source(url + "?sparkplug_rebirth=maybe", FEATURES)


def test_a_node_that_ignores_the_request_is_asked_at_most_once_per_interval(tmp_path: Path, broker,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edgewatch.agent.sources")
    deaf = EdgeNode(broker, "deaf", "gw1", answer=False)
    deaf.births()
    agent = _agent(tmp_path, "rebirth-deaf")
    src = make_source(f"mqtt://{broker.host}:{broker.port}/spBv1.0/deaf/%23", FEATURES, agent_id="rebirth-deaf")
    agent.add_source(src)
    runner = _run(agent)
    fast = None
    try:
        assert wait_until(lambda: src.connects == 1 and src.connection.subscribed(src.topic_filter))  # the SUBACK
        start = time.monotonic()
        for _ in range(200):  # a stream of unknown aliases: one request per 30 s, not one per message
            deaf.data()
        assert wait_until(lambda: agent.summary.bad.get("unknown_alias") == 200), agent.summary
        assert wait_until(lambda: len(deaf.commands) >= 1)
        asked = len(deaf.commands)  # every one of these was sent before the span is read
        span = time.monotonic() - start
        assert asked <= 1 + int(span // 30)
        # the same bound at a short interval, over several intervals, for a node with no birth at all
        src.rebirths.interval = src.rebirths.max_interval = 0.5
        fast = EdgeNode(broker, "deaf", "gw2", answer=False)
        start = time.monotonic()

        def asked_thrice() -> bool:
            fast.data()
            time.sleep(0.02)
            return len(fast.commands) >= 3
        assert wait_until(asked_thrice, timeout=60)
        assert wait_until(lambda: agent.summary.sparkplug_rebirths == len(deaf.commands) + len(fast.commands))
        asked = len(fast.commands)
        span = time.monotonic() - start
    finally:
        agent.request_stop()
        runner.join(10)
        deaf.close()
        if fast is not None:
            fast.close()
    assert 3 <= asked <= 1 + int(span / 0.5), (asked, span)
    silent = [r.getMessage() for r in caplog.records if "sent no birth within" in r.getMessage()]
    assert len(silent) == 1 and "spBv1.0/deaf/gw2" in silent[0], silent  # once per node, naming the ACL
    assert "spBv1.0/+/NCMD/+" in silent[0] and "sparkplug_rebirth=0" in silent[0]
    assert agent.summary.windows == 0


def test_a_node_that_answers_but_still_sends_unknown_aliases_is_asked_less_and_less(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each rebirth restarts every window of the node's devices: asking every 30 s would keep a long-window
    model from ever scoring it. A failed publish is said once per node and never raises."""
    now = [0.0]
    sent: list[str] = []
    requests = RebirthRequests("src", lambda topic, _payload: sent.append(topic), clock=lambda: now[0])

    def ask_at(t: float) -> bool:
        now[0] = t
        return requests.ask("spBv1.0/g/n")
    assert ask_at(0) and not ask_at(29.9)
    requests.born("spBv1.0/g/n")
    assert ask_at(30)  # answered, yet unknown again: next after 60 s
    requests.born("spBv1.0/g/n")
    assert not ask_at(89) and ask_at(90)  # then 120 s
    requests.born("spBv1.0/g/n")
    assert not ask_at(209) and ask_at(210)
    requests.born("spBv1.0/g/n")
    assert ask_at(210 + 240 * 2 + 1)  # a quiet spell of twice the interval: back to 30 s
    requests.born("spBv1.0/g/n")
    assert ask_at(210 + 240 * 2 + 31)
    assert sent == ["spBv1.0/g/NCMD/n"] * 6 and requests.sent == 6
    now[0] += 2.5
    requests.lost()  # a connection lost long after the last request: not the broker refusing it
    assert not requests.denied
    assert ask_at(now[0] + 60)
    now[0] += 0.01
    requests.lost()  # right after one: the broker closed the connection over it
    assert requests.denied and not ask_at(now[0] + 3600) and requests.sent == 7
    caplog.set_level(logging.WARNING, logger="edgewatch.agent.sources")
    failing = RebirthRequests("src", lambda _t, _p: "the client is not currently connected", clock=lambda: now[0])
    for t in (0, 30, 60):
        now[0] = t
        assert not failing.ask("spBv1.0/g/n")
    said = [r.getMessage() for r in caplog.records if "could not ask" in r.getMessage()]
    assert len(said) == 1 and "not currently connected" in said[0] and failing.sent == 0


def test_the_simulator_answers_a_rebirth_so_an_agent_started_after_it_scores(tmp_path: Path, broker) -> None:
    from edgewatch.data.simulator_outlets import source_url_for
    from edgewatch.data.simulator_server import ServerConfig, SimulatorServer

    serve = f"mqtt://{broker.host}:{broker.port}/late/sim?format=sparkplug"
    with SimulatorServer(ServerConfig(rate=50, seed=3), serve=serve) as server:
        outlet = server._outlet
        assert wait_until(lambda: outlet.published >= 20)  # births and data out before any agent listens
        agent = _agent(tmp_path, "rebirth-sim", ["cpu", "memory", "traffic", "fan"])
        src = make_source(source_url_for(serve), ["cpu", "memory", "traffic", "fan"], agent_id="rebirth-sim")
        agent.add_source(src)
        runner = _run(agent)
        try:
            assert wait_until(lambda: agent.summary.windows > 0, timeout=60)
            unknown = agent.summary.bad.get("unknown_alias", 0)
            messages = agent.summary.messages
            assert wait_until(lambda: agent.summary.messages >= messages + 50, timeout=60)
            assert agent.summary.bad.get("unknown_alias", 0) == unknown
        finally:
            agent.request_stop()
            runner.join(10)
    assert unknown >= 1 and outlet.rebirths_asked == 1 and outlet.rebirths == 1
    assert agent.summary.sparkplug_rebirths == 1


def test_no_request_for_a_device_whose_birth_was_refused(tmp_path: Path, broker) -> None:
    """A birth past sparkplug_max_aliases would be refused again: asking would only restart every window of
    the node's devices. Its data is unknown_alias as before, and nothing is published."""
    listener = Listener(broker, "spBv1.0/+/NCMD/#")
    agent = _agent(tmp_path, "rebirth-refused")
    src = make_source(f"mqtt://{broker.host}:{broker.port}/spBv1.0/big/%23?sparkplug_max_aliases=3", FEATURES,
                      agent_id="rebirth-refused")
    agent.add_source(src)
    runner = _run(agent)
    node = EdgeNode(broker, "big", "gw1")
    try:
        assert wait_until(lambda: src.connects == 1 and src.connection.subscribed(src.topic_filter))  # the SUBACK
        node.births()  # seen, and its DBIRTH (4 aliases) refused
        for _ in range(10):
            node.data()
        assert wait_until(lambda: agent.summary.bad == {"too_many_aliases": 1, "unknown_alias": 10}), agent.summary
        listener.mark()
    finally:
        agent.request_stop()
        runner.join(10)
        node.close()
        listener.close()
    assert [m.topic for m in listener.got] == [MARKER] and node.commands == []
    assert agent.summary.sparkplug_rebirths == 0


def test_a_broker_that_denies_the_request_turns_requests_off_not_the_source(
        tmp_path: Path, make_broker, caplog: pytest.LogCaptureFixture) -> None:
    """mosquitto 2.0 with an ACL that lets clients read spBv1.0/# but not write NCMD closes the agent's
    connection at the request (MQTT 3.1.1): one reconnect, an error naming the ACL, no more requests (each
    would drop the connection the sink shares), and the source reads on."""
    acl = tmp_path / "acl"
    acl.write_text("topic read spBv1.0/#\n" + "".join(f"topic write spBv1.0/+/{kind}/#\n"
                                                       for kind in ("NBIRTH", "DBIRTH", "DDATA")))
    broker = make_broker([f"acl_file {acl}"]).start()
    caplog.set_level(logging.WARNING, logger="edgewatch.agent.sources")
    node = EdgeNode(broker, "acl", "gw1")  # would answer, but never hears the request
    node.births()
    agent = _agent(tmp_path, "rebirth-acl")
    src = make_source(f"mqtt://{broker.host}:{broker.port}/spBv1.0/%23", FEATURES, agent_id="rebirth-acl")
    src.rebirths.interval = src.rebirths.max_interval = 0.2
    agent.add_source(src)
    runner = _run(agent)
    try:
        assert wait_until(lambda: src.connects == 1)

        def denied() -> bool:
            node.data()
            time.sleep(0.02)
            return src.rebirths.denied and src.connects == 2
        assert wait_until(denied, timeout=60)
        seen = agent.summary.messages
        for _ in range(100):  # 2 s and more: ten intervals in which a request would have been due
            node.data()
            time.sleep(0.02)
        assert wait_until(lambda: agent.summary.messages >= seen + 100)  # the source reads on
    finally:
        agent.request_stop()
        runner.join(10)
        node.close()
    assert src.connects == 2 and agent.summary.sparkplug_rebirths == 1  # thrown off once, then no request
    assert node.commands == [] and agent.summary.windows == 0
    said = [r.getMessage() for r in caplog.records if "closed the connection within" in r.getMessage()]
    assert len(said) == 1 and "spBv1.0/+/NCMD/+" in said[0] and "sparkplug_rebirth=0" in said[0]
