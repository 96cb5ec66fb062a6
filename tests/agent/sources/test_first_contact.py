"""A plant engineer's first contact with the live side (issue 22): a model fitted on a historian's CSV
(``PUMP01.FLOW_M3H``, ...) pointed at the plant's own OPC UA server, Modbus device and MQTT broker, whose
tags are named otherwise. Everything through ``edgewatch fit`` and ``edgewatch agent run`` as commands,
against real servers: what the user sees, and that the way it names works when pasted.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
FEATURES = ["PUMP01.FLOW_M3H", "PUMP01.DISCH_PRESS_BAR", "PUMP01.MOTOR_A"]
TAGS = ["Flow", "DischargePressure", "MotorCurrent"]  # the same sensors as the plant's server names them
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _live(i: int) -> list[float]:
    """The pump running normally: in its training range, moving so a subscription notifies."""
    s = math.sin(i / 9.0)
    return [120.0 + 2.0 * s, 2.5 + 0.04 * s, 30.0 + 0.5 * s]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("first-contact")
    rng = np.random.default_rng(22)
    n = 1800
    load = 0.6 * np.sin(np.arange(n) / 90.0) + rng.normal(0, 0.3, n)
    x = np.stack([120 + 4 * load + rng.normal(0, 0.8, n), 2.5 + 0.08 * load + rng.normal(0, 0.02, n),
                  30 + load + rng.normal(0, 0.3, n)], axis=1)
    lines = ["timestamp," + ",".join(FEATURES)]
    lines += [f"2024-05-01 08:{i // 60 % 60:02d}:{i % 60:02d}," + ",".join(f"{v:.4f}" for v in row)
              for i, row in enumerate(x)]
    csv = folder / "pump01-normal.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = folder / "pump.onnx"
    fit = subprocess.run([sys.executable, "-m", "edgewatch.cli", "fit", str(csv), "-o", str(out)], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr
    return out


def _agent(model: Path, *args: str, until: str | None = None, seconds: float = 6.0) -> tuple[int, str]:
    """``edgewatch agent run --model M ARGS``: stopped (SIGTERM) once ``until`` is in its log or after ``seconds``."""
    cmd = [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), *args]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    if until is not None:
        wait_until(lambda: until in "".join(err) or proc.poll() is not None, seconds)
    else:
        time.sleep(seconds)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    reader.join(10)
    return proc.returncode, "".join(err)


def _refused(model: Path, *args: str) -> tuple[int, str]:
    """An agent that must stop at start: its exit code and log."""
    run = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), *args],
                         env=ENV, capture_output=True, text=True, timeout=60)
    return run.returncode, run.stderr


def _scored(err: str) -> int:
    m = re.search(r"windows scored (\d+)", err)
    return int(m.group(1)) if m else -1


# -- OPC UA ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def opc() -> Iterator[object]:
    pytest.importorskip("asyncua", reason="install edgewatch[opcua]")
    from tests.opcua_kit import OpcUaServer

    server = OpcUaServer(objects=("Pump01",))

    async def add() -> list:
        from asyncua import ua

        obj = await server.server.nodes.objects.get_child([f"{server.ns}:Pump01"])
        return [await obj.add_variable(ua.NodeId(f"Pump01/{t}", server.ns), ua.QualifiedName(t, server.ns), v)
                for t, v in zip(TAGS, _live(0))]
    variables = server.call(add())
    server.start()
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            for var, v in zip(variables, _live(i)):
                server.call(var.write_value(v))
            stop.wait(0.05)
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    yield server
    stop.set()
    writer.join(5)
    server.close()


def test_opcua_names_unlike_the_features_are_listed_with_node_ids_and_the_columns_to_fill(model: Path,
                                                                                          opc) -> None:
    """The README's form, browse path only: the log says the object's variables, their ids, and ?columns=."""
    url = f"opcua://127.0.0.1:{opc.port}/Objects/2:Pump01"
    _, err = _agent(model, "--source", url, until="?columns=", seconds=30)
    assert f"Flow = ns={opc.ns};s=Pump01/Flow, DischargePressure = ns={opc.ns};s=Pump01/DischargePressure" in err, err[-2000:]
    assert ("?columns=<name for PUMP01.FLOW_M3H>,<name for PUMP01.DISCH_PRESS_BAR>,<name for PUMP01.MOTOR_A>"
            in err), err[-2000:]
    assert err.count("has no variable(s) named") == 1  # said once, not at every retry


def test_opcua_columns_as_the_log_says_scores_the_pump(model: Path, opc) -> None:
    url = f"opcua://127.0.0.1:{opc.port}/Objects/2:Pump01?columns={','.join(TAGS)}&interval=0.1"
    rc, err = _agent(model, "--source", url, seconds=8)
    assert rc == 0 and _scored(err) > 10 and "bad 0," in err, err[-2000:]
    assert "drift" not in err  # the right tags: in the training range


def test_opcua_node_table_keyed_by_dotted_historian_names(model: Path, opc, tmp_path: Path) -> None:
    """``PUMP01.FLOW_M3H = "..."`` bare in TOML is a table PUMP01; it means the feature, and is read so."""
    ns = opc.ns
    table = ", ".join(f'{f} = "ns={ns};s=Pump01/{t}"' for f, t in zip(FEATURES, TAGS))
    config = tmp_path / "agent.toml"
    config.write_text(f'[[source]]\nurl = "opcua://127.0.0.1:{opc.port}"\nstream = "pump01"\ninterval = 0.1\n'
                      f"nodes = {{ {table} }}\n")
    rc, err = _agent(model, "--config", str(config), seconds=8)
    assert rc == 0 and _scored(err) > 10 and "bad 0," in err, err[-2000:]


def test_opcua_node_id_that_names_nothing_is_said_at_start(model: Path, opc, tmp_path: Path) -> None:
    ids = [f"ns={opc.ns};s=Pump01.Flow"] + [f"ns={opc.ns};s=Pump01/{t}" for t in TAGS[1:]]  # '.' for '/'
    table = ", ".join(f'"{f}" = "{i}"' for f, i in zip(FEATURES, ids))
    config = tmp_path / "agent.toml"
    config.write_text(f'[[source]]\nurl = "opcua://127.0.0.1:{opc.port}"\ninterval = 0.1\nnodes = {{ {table} }}\n')
    _, err = _agent(model, "--config", str(config), until="refused to watch", seconds=30)
    assert f"refused to watch 'PUMP01.FLOW_M3H' at ns={opc.ns};s=Pump01.Flow (BadNodeIdUnknown)" in err, err[-2000:]


# -- Modbus TCP ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def modbus() -> Iterator[object]:
    pytest.importorskip("pymodbus", reason="install edgewatch[modbus]")
    from edgewatch.data.modbus_server import ModbusServer, encode_value

    server = ModbusServer().start()
    stop = threading.Event()

    def write() -> None:  # flow x10 and pressure x100 as u16, the motor current an f32 over two registers
        i = 0
        while not stop.is_set():
            i += 1
            f, p, a = _live(i)
            server.set_registers(0, [round(f * 10), round(p * 100)] + encode_value(a, "f32"))
            stop.wait(0.05)
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    yield server
    stop.set()
    writer.join(5)
    server.stop()


def test_modbus_register_read_without_its_scale_is_said_with_the_scale_to_give(model: Path, modbus) -> None:
    url = f"{modbus.url}/1?registers=0:u16,1:u16:0.01,2:f32&interval=0.05"
    _, err = _agent(model, "--source", url, until="multiply its scale", seconds=30)
    assert ("PUMP01.FLOW_M3H reads 10 times its training values: is it sent without its scale (or in another "
            "unit)? Then multiply its scale by 0.1 (Modbus: ADDR:TYPE:SCALE in ?registers=)") in err, err[-2000:]


def test_modbus_scaled_registers_score_without_a_range_warning(model: Path, modbus) -> None:
    url = f"{modbus.url}/1?registers=0:u16:0.1,1:u16:0.01,2:f32&interval=0.05"
    rc, err = _agent(model, "--source", url, seconds=10)  # past the range check's 120 rows
    assert rc == 0 and _scored(err) > 120 and "bad 0," in err, err[-2000:]
    assert "not what the model was made for" not in err


def test_modbus_register_table_keyed_by_dotted_historian_names(model: Path, modbus, tmp_path: Path) -> None:
    specs = ["0:u16:0.1", "1:u16:0.01", "2:f32"]
    table = ", ".join(f'{f} = "{s}"' for f, s in zip(FEATURES, specs))
    config = tmp_path / "agent.toml"
    config.write_text(f'[[source]]\nurl = "{modbus.url}/1"\ninterval = 0.05\nregisters = {{ {table} }}\n')
    rc, err = _agent(model, "--config", str(config), seconds=6)
    assert rc == 0 and _scored(err) > 10 and "bad 0," in err, err[-2000:]
    config.write_text(f'[[source]]\nurl = "{modbus.url}/1"\nregisters = {{ FLOW = "0:u16" }}\n')
    rc, err = _refused(model, "--config", str(config))
    assert rc == 4 and "missing ['PUMP01.FLOW_M3H', 'PUMP01.DISCH_PRESS_BAR', 'PUMP01.MOTOR_A'], not features " \
        "of the model ['FLOW']. Write each feature's name in quotes" in err, err[-2000:]


# -- MQTT, one topic per tag -----------------------------------------------------------------------------


@pytest.fixture()
def tags_on_mqtt(broker) -> Iterator[tuple[object, str]]:  # noqa: ANN001
    import paho.mqtt.client as paho

    root = f"first-contact-{uuid.uuid4().hex[:8]}"  # other tests leave retained topics on the broker
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=root)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    stop = threading.Event()

    def publish() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            for tag, v in zip(TAGS, _live(i)):
                pub.publish(f"{root}/pump01/{tag}", f"{v:.4f}")
            stop.wait(0.05)
    writer = threading.Thread(target=publish, daemon=True)
    writer.start()
    yield broker, root
    stop.set()
    writer.join(5)
    pub.loop_stop()
    pub.disconnect()


def test_mqtt_topics_named_by_columns_score(model: Path, tags_on_mqtt) -> None:
    broker, root = tags_on_mqtt
    template = f"mqtt://{broker.host}:{broker.port}/{root}/{{stream}}/{{feature}}"
    _, err = _agent(model, "--source", template, "--agent-id", f"{root}-a", seconds=5)
    assert "'Flow' (stream 'pump01') is no feature of the model" in err and _scored(err) == 0, err[-2000:]
    assert "tags named otherwise than the features: name them for the features in the model's order, " \
        "?columns=A,B,...)" in err  # the README's form: the way out said at the first message
    rc, err = _agent(model, "--source", f"{template}?columns={','.join(TAGS)}", "--agent-id", f"{root}-b",
                     seconds=6)
    assert rc == 0 and _scored(err) > 10 and "bad 0," in err, err[-2000:]
    rc, err = _refused(model, "--source", f"mqtt://{broker.host}:{broker.port}/{root}/%23?columns=a,b,c")
    assert rc == 4 and "columns names the {feature} level of a topic template" in err, err[-2000:]


def test_modbus_registers_in_another_order_than_the_model_are_said_swapped(model: Path, modbus) -> None:
    url = f"{modbus.url}/1?registers=1:u16:0.01,0:u16:0.1,2:f32&interval=0.05"  # pressure's register first
    _, err = _agent(model, "--source", url, until="swapped", seconds=30)
    said = [line for line in err.splitlines() if "swapped" in line]
    assert said and "PUMP01.FLOW_M3H" in said[0] and "PUMP01.DISCH_PRESS_BAR" in said[0], err[-2000:]
    assert "each read values of the other's training range: are their inputs swapped? (Modbus ?registers=, " \
        "OPC UA and MQTT ?columns= are in the model's order.)" in said[0]
    assert "times its training values" not in said[0]  # a swap, not a scale


def test_agent_check_says_how_to_name_the_plants_tags(model: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "check", str(model)], env=ENV,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("  live tags"))
    assert "?columns=<name for PUMP01.FLOW_M3H>,<name for PUMP01.DISCH_PRESS_BAR>,<name for PUMP01.MOTOR_A> " \
        "on an OPC UA object or an MQTT topic template, ?registers=ADDR:TYPE[:SCALE],... on Modbus" in line


def test_mqtt_columns_as_a_list_in_a_config_table(model: Path, tags_on_mqtt, tmp_path: Path) -> None:
    broker, root = tags_on_mqtt
    config = tmp_path / "agent.toml"
    config.write_text(f'agent-id = "{root}-c"\n[[source]]\nurl = "mqtt://{broker.host}:{broker.port}/{root}/{{stream}}/'
                      f'{{feature}}"\ncolumns = {json.dumps(TAGS)}\n')
    rc, err = _agent(model, "--config", str(config), seconds=6)
    assert rc == 0 and _scored(err) > 10 and "bad 0," in err, err[-2000:]
