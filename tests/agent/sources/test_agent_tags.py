"""``edgewatch agent tags`` (issue 22): a real asyncua server and the session's mosquitto, browsed by the command;
what it prints is the tags beside the model's features, and the ``?columns=`` its name rule suggests.

The model's features are spelt as a historian might (``CPU [%]``, ``Fan (rpm)``) for tags named ``cpu`` and
``fan``: the rule matches those; ``traffic_rate`` is another word than ``traffic`` and is left to fill in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgewatch.cli import main
from tests.conftest import free_port
from tests.modelkit import make_card, write_model

FEATURES = ["CPU [%]", "Memory", "traffic_rate", "Fan (rpm)"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("tags") / "m.onnx", make_card(features=FEATURES))


def _tags(model: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["agent", "tags", "--model", str(model), *args])
    return res.exit_code, res.output


# -- OPC UA ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def opc() -> Iterator[object]:
    pytest.importorskip("asyncua", reason="install edgewatch[opcua]")
    from tests.opcua_kit import OpcUaServer

    server = OpcUaServer(objects=("Pump1",)).start()
    server.write("Pump1", {"cpu": 0.25, "memory": 0.75, "traffic": 12.5, "fan": 0.125})
    yield server
    server.close()


def test_opcua_object_variables_beside_the_features_with_columns_and_nodes(model: Path, opc) -> None:
    url = f"opcua://127.0.0.1:{opc.port}/Objects/2:Pump1"
    rc, out = _tags(model, "--source", url)
    assert rc == 0, out
    ids = {f: opc.vars[("Pump1", f)].nodeid.to_string() for f in ("cpu", "memory", "traffic", "fan")}
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    assert rows["cpu"][1:] == [ids["cpu"], "Double", "0.25"], out
    assert rows["traffic"][1:] == [ids["traffic"], "Double", "12.5"], out
    assert rows["serial"][1].startswith(f"ns={opc.ns};") and rows["serial"][2:] == ["String", "'X1'"], out
    assert "the object 0:Objects/2:Pump1 has 5 variable(s)" in out
    assert "  CPU [%]       cpu\n" in out and "  traffic_rate  no tag matches: name it yourself\n" in out, out
    assert "1 feature(s) unmatched: traffic_rate" in out
    assert f'--source "{url}?columns=cpu,memory,<name for traffic_rate>,fan"' in out, out
    assert (f'nodes = {{ "CPU [%]" = "{ids["cpu"]}", "Memory" = "{ids["memory"]}", "traffic_rate" = "<node id>", '
            f'"Fan (rpm)" = "{ids["fan"]}" }}') in out, out


def test_opcua_tags_run_as_the_program_with_torch_blocked(model: Path, opc) -> None:
    """The base install (no torch, no onnx): the command imports only what the agent does."""
    from tests.agent.test_without_torch import BLOCKER, ROOT

    url = f"opcua://127.0.0.1:{opc.port}/Objects/2:Pump1"
    proc = subprocess.run([sys.executable, "-c", BLOCKER, "agent", "tags", "--model", str(model), "--source", url],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and "HEAVY=\n" in proc.stderr, proc.stderr
    assert f'--source "{url}?columns=cpu,memory,<name for traffic_rate>,fan"' in proc.stdout, proc.stdout


def test_opcua_object_not_there_names_what_objects_holds(model: Path, opc) -> None:
    rc, out = _tags(model, "--source", f"opcua://127.0.0.1:{opc.port}/Objects/2:Pump9", "--timeout", "3")
    assert rc == 4 and "no object at 0:Objects/2:Pump9; Objects holds" in out and "2:Pump1" in out, out


def test_opcua_server_unreachable_is_one_line_exit_1(model: Path) -> None:
    port = free_port()
    rc, out = _tags(model, "--source", f"opcua://127.0.0.1:{port}/Objects/2:Pump1", "--timeout", "2")
    assert rc == 1, out
    assert out.startswith(f"Error: cannot reach the OPC UA server opc.tcp://127.0.0.1:{port} within 2 s"), out
    assert len(out.strip().splitlines()) == 1, out


# -- MQTT -----------------------------------------------------------------------------------------------


@pytest.fixture()
def tags_on_mqtt(broker) -> Iterator[tuple[object, str]]:  # noqa: ANN001
    import paho.mqtt.client as paho

    root = f"agent-tags-{uuid.uuid4().hex[:8]}"  # other tests leave retained topics on the broker
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=root)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    pub.publish(f"{root}/pump01/serial", "X1", qos=1, retain=True).wait_for_publish(5)
    stop = threading.Event()

    def publish() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            for tag, v in (("cpu", 0.25), ("memory", 0.75), ("traffic", 12.5), ("fan", 0.125)):
                pub.publish(f"{root}/pump01/{tag}", f"{v}")
            stop.wait(0.1)
    writer = threading.Thread(target=publish, daemon=True)
    writer.start()
    yield broker, root
    stop.set()
    writer.join(5)
    pub.publish(f"{root}/pump01/serial", b"", qos=1, retain=True).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()


def test_mqtt_template_topics_seen_with_the_suggested_columns(model: Path, tags_on_mqtt) -> None:
    """The default form: --listen left at 10 s."""
    broker, root = tags_on_mqtt
    template = f"mqtt://{broker.host}:{broker.port}/{root}/{{stream}}/{{feature}}"
    rc, out = _tags(model, "--source", template)
    assert rc == 0, out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    assert rows["cpu"][1] == f"{root}/pump01/cpu" and rows["cpu"][3] == "0.25", out
    assert int(rows["cpu"][2]) >= 50, out  # about 10 a second for 10 s
    assert rows["serial"][1:] == [f"{root}/pump01/serial", "1", "X1"], out  # retained: once
    assert "5 topic(s) within 10 s" in out
    assert f'--source "{template}?columns=cpu,memory,<name for traffic_rate>,fan"' in out, out


def test_mqtt_plain_filter_says_columns_need_a_template(model: Path, tags_on_mqtt) -> None:
    broker, root = tags_on_mqtt
    rc, out = _tags(model, "--source", f"mqtt://{broker.host}:{broker.port}/{root}/%23", "--listen", "1.5")
    assert rc == 0, out
    assert f"{root}/pump01/fan" in out and "a plain filter takes whole rows" in out, out
    assert "  with a topic template: ?columns=cpu,memory,<name for traffic_rate>,fan" in out, out
    assert "--source" not in out.split("suggested")[1]  # no URL that agent run would refuse


def test_mqtt_broker_unreachable_is_one_line_exit_1(model: Path) -> None:
    port = free_port()
    rc, out = _tags(model, "--source", f"mqtt://127.0.0.1:{port}/plant/{{stream}}/{{feature}}", "--timeout", "1")
    assert rc == 1, out
    assert out.startswith(f"Error: cannot reach the MQTT broker mqtt://127.0.0.1:{port} within 1 s"), out
    assert len(out.strip().splitlines()) == 1, out


# -- Modbus, and what cannot be browsed --------------------------------------------------------------------


def test_modbus_has_no_names_the_registers_skeleton_in_model_order(model: Path) -> None:
    rc, out = _tags(model, "--source", "modbus://10.0.0.9:502/1")
    assert rc == 0, out
    assert "Modbus registers have no names to list" in out
    assert ("?registers=<ADDR:TYPE[:SCALE] of CPU [%]>,<ADDR:TYPE[:SCALE] of Memory>,<ADDR:TYPE[:SCALE] of "
            "traffic_rate>,<ADDR:TYPE[:SCALE] of Fan (rpm)>") in out, out
    assert "live tags     named as the features" in out  # agent check's line, the same words


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8765/", "replay:data.csv", "stdin"])
def test_a_source_without_tags_to_browse_is_refused(model: Path, url: str) -> None:
    rc, out = _tags(model, "--source", url)
    assert rc == 4 and "sources have no tags to browse" in out, out


def test_an_opcua_url_without_an_object_is_refused_as_agent_run_refuses_it(model: Path) -> None:
    pytest.importorskip("asyncua", reason="install edgewatch[opcua]")
    rc, out = _tags(model, "--source", "opcua://127.0.0.1:9")
    assert rc == 4 and "names no object: use opcua://host:port/Objects/2:Name" in out, out


def test_mqtt_plain_filter_of_json_rows_lists_their_keys_as_the_tags(model: Path, broker) -> None:  # noqa: ANN001
    import paho.mqtt.client as paho

    root = f"agent-tags-json-{uuid.uuid4().hex[:8]}"
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=root)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    row = '{"CPU": 0.3, "Memory [MB]": 0.7, "traffic": 5, "ts": 1700000000}'
    pub.publish(f"{root}/pump02", row, qos=1, retain=True).wait_for_publish(5)
    try:
        rc, out = _tags(model, "--source", f"mqtt://{broker.host}:{broker.port}/{root}/%23", "--listen", "1")
    finally:
        pub.publish(f"{root}/pump02", b"", qos=1, retain=True).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
    assert rc == 0, out
    listed = out.split("the model's features")[0]
    rows = {line.split()[0]: line.split() for line in listed.splitlines() if line.startswith("  ")}
    assert rows["CPU"][1:] == [f"{root}/pump02", "1", "0.3"] and "ts" not in rows, out
    assert "  CPU [%]       CPU\n" in out and "  Memory        Memory [MB]\n" in out, out
    assert "  Fan (rpm)     no tag matches" in out and "  traffic_rate  no tag matches" in out, out
    assert "a plain filter has no ?columns=" in out and "?columns=CPU" not in out, out
