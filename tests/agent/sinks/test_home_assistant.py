"""``--ha-discovery`` through a real mosquitto: configs checked against Home Assistant's documented keys.

The key lists below are written from Home Assistant's MQTT docs (MQTT
Binary Sensor, MQTT Sensor, "Discovery": the ``device`` block and the
``availability`` list); a config with a key outside them, or without a
required one, would be refused or ignored by Home Assistant.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgewatch.agent.sinks.home_assistant import HomeAssistantDiscovery
from edgewatch.mqtt.connection import BrokerConnection, BrokerOptions
from edgewatch.mqtt.payloads import status_state
from edgewatch.mqtt.topics import HomeAssistantTopics, Topics
from tests.agent.sinks.httpkit import FAULT, NORMAL, FedAgent
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
          "default_entity_id", "enabled_by_default", "encoding", "entity_category", "entity_picture",
          "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic", "name",
          "object_id", "payload_available", "payload_not_available", "platform", "qos", "state_topic",
          "unique_id", "value_template"}
ALLOWED = {
    "binary_sensor": COMMON | {"device_class", "off_delay", "payload_off", "payload_on"},
    "sensor": COMMON | {"device_class", "last_reset_value_template", "options", "state_class",
                        "suggested_display_precision", "unit_of_measurement"},
}
REQUIRED = {"binary_sensor": {"state_topic"}, "sensor": {"state_topic"}}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
               "name", "serial_number", "suggested_area", "sw_version", "via_device"}
AVAILABILITY_KEYS = {"payload_available", "payload_not_available", "topic", "value_template"}
BINARY_DEVICE_CLASSES = {"problem", "safety", "running", "connectivity"}  # those that fit; problem is ours


def check_config(component: str, config: dict) -> None:
    assert REQUIRED[component] <= set(config) <= ALLOWED[component], set(config) - ALLOWED[component]
    assert set(config["device"]) <= DEVICE_KEYS and config["device"]["identifiers"]
    for item in config["availability"]:
        assert "topic" in item and set(item) <= AVAILABILITY_KEYS
    assert config["unique_id"] and config["qos"] in (0, 1, 2)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=4, threshold=0.5, k=2, n=3))


def _retained(sub, topic: str) -> list[bytes]:
    return [p for t, p, _ in list(sub.messages) if t == topic]


def test_discovery_state_and_availability(model: Path, tmp_path: Path, broker, collector) -> None:
    sub = collector(broker, "#", client_id="c-ha", persistent=False)
    agent = FedAgent(model, "--sink", f"mqtt://{broker.host}:{broker.port}/plant", "--ha-discovery",
                     "--agent-id", "press-7", "--mqtt-keepalive", "1", cwd=tmp_path)
    binary = "homeassistant/binary_sensor/press-7/pump_1/config"
    sensor = "homeassistant/sensor/press-7/pump_1/config"
    try:
        agent.rows(NORMAL, 8, stream="pump/1")  # a stream id with a slash: ids made of [A-Za-z0-9_-]
        assert wait_until(lambda: _retained(sub, binary) and _retained(sub, sensor), 30), \
            sorted({t for t, _, _ in sub.messages})
        b, s = json.loads(_retained(sub, binary)[-1]), json.loads(_retained(sub, sensor)[-1])
        check_config("binary_sensor", b)
        check_config("sensor", s)
        assert b["device_class"] == "problem" and s["state_class"] == "measurement"
        assert b["state_topic"] == s["state_topic"] == "plant/press-7/streams/pump_1/state"
        assert b["availability"][0]["topic"] == "plant/press-7/status"
        assert b["device"] == s["device"] and b["unique_id"] != s["unique_id"]

        def states() -> list[dict]:
            return [json.loads(p) for p in _retained(sub, b["state_topic"])]

        def problems() -> list[str]:
            out: list[str] = []
            for st in states():
                if not out or out[-1] != st["problem"]:
                    out.append(st["problem"])
            return out

        assert wait_until(lambda: states() and states()[-1]["anomaly_score"] is not None, 10)
        assert problems() == ["OFF"] and states()[-1]["anomaly_score"] < 1
        agent.rows(FAULT, 6, stream="pump/1")
        assert wait_until(lambda: problems() == ["OFF", "ON"], 20), states()
        assert max(st["anomaly_score"] for st in states()) > 1
        agent.rows(NORMAL, 10, stream="pump/1")
        assert wait_until(lambda: problems() == ["OFF", "ON", "OFF"], 20), states()

        # availability: the agent's status, online now; killed, the broker's last will says offline
        assert wait_until(lambda: [status_state(p) for p in _retained(sub, "plant/press-7/status")][-1:]
                          == ["online"], 10)
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(10)
        assert wait_until(lambda: [status_state(p) for p in _retained(sub, "plant/press-7/status")][-1:]
                          == ["offline"], 20)
        # what Home Assistant's template reads from that payload
        assert json.loads(_retained(sub, "plant/press-7/status")[-1])["state"] == "offline"
    finally:
        agent.kill()
    # retained: a Home Assistant that starts later finds the configs and the last state
    late = collector(broker, "homeassistant/#", client_id="c-ha-late", persistent=False)
    assert wait_until(lambda: _retained(late, binary) and _retained(late, sensor), 10)


def test_a_prefix_of_its_own_on_the_fleet_broker(model: Path, tmp_path: Path, broker, collector) -> None:
    sub = collector(broker, "ha/#", client_id="c-ha2", persistent=False)
    agent = FedAgent(model, "--fleet-broker", f"mqtt://{broker.host}:{broker.port}/fleet", "--ha-discovery",
                     "--ha-discovery-prefix", "ha", "--agent-id", "press-8", cwd=tmp_path)
    try:
        agent.rows(NORMAL, 8)
        binary, sensor = "ha/binary_sensor/press-8/pump-1/config", "ha/sensor/press-8/pump-1/config"
        # both, as the other tests wait: the sensor's config is published right after the binary sensor's
        assert wait_until(lambda: _retained(sub, binary) and _retained(sub, sensor), 30)
        config = json.loads(_retained(sub, sensor)[-1])
        assert config["state_topic"] == "fleet/press-8/streams/pump-1/state"
        code, _out, err = agent.finish()
    finally:
        agent.kill()
    assert code == 0, err[-3000:]


def test_without_a_broker_it_is_a_usage_error(model: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source", "stdin",
                           "--ha-discovery"], input=b"", capture_output=True, cwd=tmp_path)
    assert proc.returncode == 2 and b"--ha-discovery needs an MQTT broker" in proc.stderr


def test_a_stream_the_agent_drops_is_no_longer_announced(model: Path, tmp_path: Path, broker, collector) -> None:
    sub = collector(broker, "#", client_id="c-ha-ttl", persistent=False)
    agent = FedAgent(model, "--sink", f"mqtt://{broker.host}:{broker.port}/ttl", "--ha-discovery",
                     "--agent-id", "press-9", "--stream-ttl", "3", cwd=tmp_path)
    config = "homeassistant/binary_sensor/press-9/{}/config".format

    try:
        agent.rows(NORMAL, 8, stream="pump-1")
        agent.rows(NORMAL, 8, stream="pump-2")
        assert agent.while_sending("pump-2", lambda: _retained(sub, config("pump-1"))
                                   and _retained(sub, config("pump-2")))

        def restarted_ha_hears_of_pump_2_alone() -> bool:
            """Home Assistant's birth makes the agent announce every stream it follows again: both until
            pump-1's TTL is up, pump-2 alone after."""
            sub.client.publish("homeassistant/status", b"online", qos=1)
            time.sleep(0.3)
            return len(_retained(sub, config("pump-2"))) >= len(_retained(sub, config("pump-1"))) + 2
        assert agent.while_sending("pump-2", restarted_ha_hears_of_pump_2_alone)
    finally:
        agent.kill()


def _scored(*windows: tuple[str, float]) -> SimpleNamespace:
    """A scored batch as the agent hands it to on_batch: each window's stream and anomaly_score."""
    return SimpleNamespace(scored=[SimpleNamespace(stream=s, anomaly=a) for s, a in windows])


def test_a_stop_leaves_the_last_windows_score_retained(broker, collector) -> None:
    """States go out at most once a second; a stop within that second (a replay ends in less) still sends
    the last one, not the score of the batch before the episode's end."""
    conn = BrokerConnection(BrokerOptions(host=broker.host, port=broker.port, client_id="ha-flush",
                                          clean_session=True)).start()
    assert conn.wait_connected(10)
    ha = HomeAssistantDiscovery(conn, Topics("flush", "press-1"), HomeAssistantTopics(), "pca")
    try:
        ha.on_batch(_scored(("pump-1", 0.1)))
        ha.on_event({"event": "start", "stream": "pump-1", "anomaly_score": 150.0})
        ha.on_event({"event": "end", "stream": "pump-1", "anomaly_score": 150.0})
        ha.on_batch(_scored(("pump-1", 0.5), ("pump-1", 0.02)))
        ha.close()  # at once: the state loop's next turn is a second away
    finally:
        conn.close()
    state = "flush/press-1/streams/pump-1/state"
    late = collector(broker, state, client_id="c-ha-flush", persistent=False)
    assert wait_until(lambda: _retained(late, state), 10)
    assert json.loads(_retained(late, state)[-1]) == {"problem": "OFF", "anomaly_score": 0.02}


def test_after_a_fault_and_the_end_of_input_the_retained_state_is_normal(model: Path, tmp_path: Path, broker,
                                                                         collector) -> None:
    """The default form: rows, a fault, normal rows, end of input; Home Assistant is left with OFF and the
    last window's anomaly_score, below 1."""
    agent = FedAgent(model, "--sink", "stdout", "--sink", f"mqtt://{broker.host}:{broker.port}/eoi",
                     "--ha-discovery", "--agent-id", "press-5", cwd=tmp_path)
    try:
        agent.rows(NORMAL, 8)
        agent.rows(FAULT, 6)
        agent.rows(NORMAL, 10)
        code, out, err = agent.finish()
    finally:
        agent.kill()
    assert code == 0, err[-3000:]
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["start", "end"]
    state = "eoi/press-5/streams/pump-1/state"
    late = collector(broker, state, client_id="c-ha-eoi", persistent=False)
    assert wait_until(lambda: _retained(late, state), 10)
    last = json.loads(_retained(late, state)[-1])
    assert last["problem"] == "OFF" and last["anomaly_score"] < 1, last


def test_two_streams_that_map_to_one_entity_id_are_two_entities(broker, collector) -> None:
    """``Pumpe-Ö1`` and ``Pumpe-Ä1`` were both the entity ``Pumpe-_1`` (one config, one state topic): the second
    pump's OFF overwrote the first's ON. Now two entities, two states; the first keeps the id it had."""
    conn = BrokerConnection(BrokerOptions(host=broker.host, port=broker.port, client_id="ha-clash",
                                          clean_session=True)).start()
    assert conn.wait_connected(10)
    ha = HomeAssistantDiscovery(conn, Topics("clash", "press-9"), HomeAssistantTopics(), "pca")
    try:
        ha.on_event({"event": "start", "stream": "Pumpe-Ö1", "anomaly_score": 4.0})
        ha.on_event({"event": "end", "stream": "Pumpe-Ä1", "anomaly_score": 0.2})
        first, second = ha.configs("Pumpe-Ö1"), ha.configs("Pumpe-Ä1")
        ha.close()
    finally:
        conn.close()
    assert set(first).isdisjoint(second)
    for config_topic, config in {**first, **second}.items():  # homeassistant/COMPONENT/NODE/OBJECT/config
        check_config(config_topic.split("/")[1], config)
    assert {c["state_topic"] for c in first.values()} == {"clash/press-9/streams/Pumpe-_1/state"}
    (topic,) = {c["state_topic"] for c in second.values()}
    late = collector(broker, "clash/press-9/streams/+/state", client_id="c-ha-clash", persistent=False)
    assert wait_until(lambda: _retained(late, topic) and _retained(late, "clash/press-9/streams/Pumpe-_1/state"), 10)
    assert json.loads(_retained(late, "clash/press-9/streams/Pumpe-_1/state")[-1])["problem"] == "ON"
    assert json.loads(_retained(late, topic)[-1])["problem"] == "OFF"
