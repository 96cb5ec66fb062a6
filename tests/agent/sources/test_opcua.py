"""The OPC UA source against a real asyncua server on loopback: browse path, notification sets,
bad values, and 20 server restarts with a resubscription each time."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("asyncua", reason="install edgewatch[opcua]")

from edgewatch.agent.engine import Agent, AgentOptions  # noqa: E402
from edgewatch.agent.model import ScoringModel  # noqa: E402
from edgewatch.agent.sources import make_source  # noqa: E402
from tests.modelkit import make_card, write_model  # noqa: E402
from tests.opcua_kit import FEATURES, OpcUaServer, make_certificates  # noqa: E402
from tests.waiting import wait_until

WINDOW = 3


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_certificates(tmp_path_factory.mktemp("opcua-certs"))


@pytest.fixture(scope="module")
def opc(certs: dict[str, str]) -> Iterator[OpcUaServer]:
    """One server for the module (building asyncua's address space takes seconds): no security,
    Basic256Sha256 Sign and SignAndEncrypt, anonymous or user ``edge`` with password ``secret``."""
    server = OpcUaServer(objects=("Pump1", "Pump2"), users={"edge": "secret"},
                         certificate=certs["server_cert"], private_key=certs["server_key"]).start()
    yield server
    server.close()


def _agent(tmp_path: Path, url: str) -> tuple[Agent, object, threading.Thread]:
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=WINDOW, features=FEATURES)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0, agent_id="opc"))
    src = make_source(url, FEATURES)
    agent.add_source(src)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    return agent, src, runner


def test_notification_sets_and_bad_values(tmp_path: Path, opc: OpcUaServer) -> None:
    agent, src, runner = _agent(tmp_path, f"{opc.url}/Objects/2:Pump2?interval=0.1")
    try:
        assert wait_until(lambda: src.measurements == 1)  # the initial values: one set, one measurement
        opc.write("Pump2", {"cpu": 0.1, "memory": 0.2, "traffic": 0.3, "fan": 0.4})
        assert wait_until(lambda: src.measurements == 2)
        opc.write("Pump2", {"traffic": 0.9})  # report by exception: the others keep their values
        assert wait_until(lambda: src.measurements == 3)
        opc.write("Pump2", {"cpu": 0.5}, status="BadSensorFailure")
        assert wait_until(lambda: agent.summary.bad.get("bad_status") == 1)
        opc.write("Pump2", {"cpu": 0.6})
        assert wait_until(lambda: src.measurements == 4)
        opc.write("Pump2", {"memory": "high"})
        assert wait_until(lambda: agent.summary.bad.get("not_number") == 1)
        opc.write("Pump2", {"memory": math.nan})  # a missing value: held from 0.2 (the row assembler's rule)
        assert wait_until(lambda: src.measurements == 5)
        opc.write("Pump2", {"memory": math.inf})
        assert wait_until(lambda: agent.summary.bad.get("non_finite") == 1)
    finally:
        agent.request_stop()
        runner.join(10)
    assert src.bad_status_by_name == {"BadSensorFailure": 1}
    assert src.channel_security == "None,None"
    assert agent.streams == [f"{opc.url}/Objects/2:Pump2"]
    assert agent.summary.messages == 5 + 3
    assert agent.summary.windows == 5 - WINDOW + 1


def test_twenty_server_restarts_resubscribe_every_time(tmp_path: Path, opc: OpcUaServer) -> None:
    agent, src, runner = _agent(tmp_path, f"{opc.url}/Objects/2:Pump1?interval=0.05")
    try:
        for restart in range(21):
            assert wait_until(lambda: src.connects == restart + 1), f"no session {restart + 1}: {src.last_error}"
            for i in range(WINDOW + restart % 3):  # sessions of different lengths
                seen = src.measurements
                opc.write("Pump1", {"cpu": 0.4 + 0.01 * i, "fan": 0.5 + 0.01 * restart})
                assert wait_until(lambda: src.measurements > seen)
            if restart < 20:
                opc.restart()
    finally:
        agent.request_stop()
        runner.join(10)
    assert src.connects == 21
    assert agent.metrics.reconnects.labels(src.name)._value.get() == 20
    assert agent.summary.messages == src.measurements == sum(src.per_session)
    # windows start again after every gap: each session scores only its own rows
    assert agent.summary.windows == sum(max(0, n - WINDOW + 1) for n in src.per_session)
    assert agent.summary.bad == {}


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
def test_basic256sha256_with_certificate_and_login(tmp_path: Path, opc: OpcUaServer, certs: dict[str, str],
                                                   mode: str) -> None:
    table = {"url": f"opcua://edge:secret@127.0.0.1:{opc.port}/Objects/2:Pump1", "interval": 0.1,
             "security": f"Basic256Sha256,{mode}", "certificate": certs["client_cert"],
             "private-key": certs["client_key"], "server-certificate": certs["server_cert"]}
    agent, src, runner = _agent(tmp_path, table)
    try:
        assert wait_until(lambda: src.measurements >= 1), src.last_error
        assert src.username == "edge" and "secret" not in src.name
        assert src.channel_security == f"Basic256Sha256,{mode}"
    finally:
        agent.request_stop()
        runner.join(10)
    assert src.connects == 1 and agent.summary.bad == {}


def test_a_wrong_password_is_said_and_retried_not_fatal(tmp_path: Path, opc: OpcUaServer) -> None:
    agent, src, runner = _agent(tmp_path, f"opcua://edge:wrong@127.0.0.1:{opc.port}/Objects/2:Pump2?interval=0.1")
    try:
        assert wait_until(lambda: src.last_error is not None)
        time.sleep(0.5)
        assert src.connects == 0 and runner.is_alive()
    finally:
        agent.request_stop()
        runner.join(10)
    assert not runner.is_alive() and agent.summary.messages == 0


def test_a_silent_server_times_out_and_is_retried(tmp_path: Path) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts (the kernel does), never answers the OPC UA hello
    port = listener.getsockname()[1]
    try:
        agent, src, runner = _agent(tmp_path, {"url": f"opcua://127.0.0.1:{port}/Objects/2:Pump1", "timeout": 0.5,
                                               "interval": 0.1})
        assert wait_until(lambda: src.last_error is not None, timeout=15)
        agent.request_stop()
        runner.join(10)
        assert not runner.is_alive() and src.connects == 0
    finally:
        listener.close()



def test_an_explicit_node_map_from_the_config(tmp_path: Path, opc: OpcUaServer) -> None:
    # another layout: each feature names its node; here cpu reads Pump1's fan and fan reads Pump1's cpu
    ids = {f: opc.vars[("Pump1", f)].nodeid.to_string() for f in FEATURES}
    nodes = {"cpu": ids["fan"], "memory": ids["memory"], "traffic": ids["traffic"], "fan": ids["cpu"]}
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=WINDOW, features=FEATURES)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0, agent_id="map"))
    src = make_source({"url": f"opcua://127.0.0.1:{opc.port}", "nodes": nodes, "stream": "mapped",
                       "interval": 0.1}, FEATURES)
    seen: list[list[float]] = []

    class Rows:
        def on_batch(self, view) -> None:  # noqa: ANN001
            seen.extend(view.values.tolist())

        def on_event(self, event: dict) -> None:
            pass

    observer = Rows()
    agent.subscribe(observer.on_event, observer.on_batch)
    agent.add_source(src)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: src.measurements >= 1), src.last_error
        opc.write("Pump1", {"cpu": 0.11, "memory": 0.22, "traffic": 0.33, "fan": 0.44})
        assert wait_until(lambda: seen and seen[-1] == pytest.approx([0.44, 0.22, 0.33, 0.11]))
    finally:
        agent.request_stop()
        runner.join(10)
    assert agent.streams == ["mapped"] and src.name == f"opcua://127.0.0.1:{opc.port}/mapped"
    with pytest.raises(Exception, match="nodes must map every feature"):
        make_source({"url": f"opcua://127.0.0.1:{opc.port}", "nodes": {"cpu": "ns=2;i=1"}}, FEATURES)


def test_browse_names_spelled_otherwise_than_the_features(tmp_path: Path, opc: OpcUaServer) -> None:
    """The server's variables are cpu, memory, traffic, fan; the model was fitted on a historian's headers."""
    headers = ["CPU", "Memory (MB)", "Traffic", "FAN"]
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=WINDOW, features=headers)))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0, agent_id="opc"))
    src = make_source(f"{opc.url}/Objects/2:Pump1?interval=0.1", headers)  # the default form otherwise
    agent.add_source(src)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: src.measurements == 1)
        opc.write("Pump1", {"cpu": 0.2, "memory": 0.2, "traffic": 0.2, "fan": 0.2})
        assert wait_until(lambda: src.measurements >= 2)
        opc.write("Pump1", {"cpu": 0.1, "memory": 0.7, "traffic": 0.3, "fan": 0.4})  # the window is full now
        slot = agent.table.slots[f"{opc.url}/Objects/2:Pump1"]
        # each variable in the feature it matches (CPU, Memory (MB), Traffic, FAN)
        assert wait_until(lambda: agent.table.windows.latest(slot)[-1].tolist() == pytest.approx([0.1, 0.7, 0.3, 0.4]))
    finally:
        agent.request_stop()
        runner.join(10)
    assert agent.summary.bad == {}



def test_two_variables_matching_one_feature_are_refused_not_taken_in_browse_order(tmp_path: Path,
                                                                                   opc: OpcUaServer) -> None:
    """An object with Temp [°C] and Temp [°F] for a model fitted with Temp: which one is a guess, so neither."""
    async def add() -> None:
        obj = await opc.server.nodes.objects.add_object(opc.ns, "Twins")
        for name, value in (("Temp [°C]", 20.0), ("Temp [°F]", 68.0), ("cpu", 0.5)):
            await obj.add_variable(opc.ns, name, value)

    opc.call(add())
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=WINDOW, features=["Temp", "CPU"])))
    agent = Agent(model, [], AgentOptions(stride=1, drift_every=0, agent_id="opc"))
    src = make_source(f"{opc.url}/Objects/2:Twins?interval=0.1", ["Temp", "CPU"])
    agent.add_source(src)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: src.last_error is not None or src.measurements > 0)
    finally:
        agent.request_stop()
        runner.join(10)
    assert src.measurements == 0
    assert "{'Temp': ['Temp [°C]', 'Temp [°F]']} each match more than one variable" in str(src.last_error)


def test_a_server_clock_two_hours_behind_is_said(tmp_path: Path, opc: OpcUaServer,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    import logging
    from datetime import datetime, timedelta, timezone

    from asyncua import ua

    agent, src, runner = _agent(tmp_path, f"{opc.url}/Objects/2:Pump1?interval=0.1")
    try:
        with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
            assert wait_until(lambda: src.measurements == 1)  # the first set: its times are when values changed
            assert "this machine's clock" not in caplog.text

            async def write_late() -> None:
                late = datetime.now(timezone.utc) - timedelta(hours=2)
                for f in FEATURES:
                    dv = ua.DataValue(ua.Variant(0.3, ua.VariantType.Double), SourceTimestamp=late)
                    await opc.server.write_attribute_value(opc.vars[("Pump1", f)].nodeid, dv)
            opc.call(write_late())
            assert wait_until(lambda: "this machine's clock" in caplog.text)
    finally:
        agent.request_stop()
        runner.join(10)
    assert "sends times 7200 s behind this machine's clock (-2.00 h)" in caplog.text


def test_a_variable_that_changes_rarely_is_no_slow_sensor(tmp_path: Path, opc: OpcUaServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """OPC UA notifies changes only: fan, changed every 4th set, is held exactly, not sampled slowly."""
    import logging

    agent, src, runner = _agent(tmp_path, f"{opc.url}/Objects/2:Pump1?interval=0.05")
    try:
        with caplog.at_level(logging.WARNING, "edgewatch.agent.sources"):
            assert wait_until(lambda: src.measurements == 1)
            for i in range(48):
                values = {"cpu": 0.1 + i / 100, "memory": 0.2, "traffic": 0.3 + i / 100}
                if i % 4 == 0:
                    values["fan"] = 0.4 + i / 100
                n = src.measurements
                opc.write("Pump1", values)
                assert wait_until(lambda: src.measurements > n)
    finally:
        agent.request_stop()
        runner.join(10)
    assert "reports every" not in caplog.text
    assert src.rows._rate_checked == set()  # not compared at all
