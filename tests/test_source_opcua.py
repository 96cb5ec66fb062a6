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
from tests.opcua_kit import FEATURES, OpcUaServer  # noqa: E402

WINDOW = 3


@pytest.fixture(scope="module")
def opc() -> Iterator[OpcUaServer]:
    server = OpcUaServer(objects=("Pump1", "Pump2")).start()
    yield server
    server.close()


def _wait(predicate, timeout: float = 20.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


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
        assert _wait(lambda: src.measurements == 1)  # the initial values: one set, one measurement
        opc.write("Pump2", {"cpu": 0.1, "memory": 0.2, "traffic": 0.3, "fan": 0.4})
        assert _wait(lambda: src.measurements == 2)
        opc.write("Pump2", {"traffic": 0.9})  # report by exception: the others keep their values
        assert _wait(lambda: src.measurements == 3)
        opc.write("Pump2", {"cpu": 0.5}, status="BadSensorFailure")
        assert _wait(lambda: agent.summary.bad.get("bad_status") == 1)
        opc.write("Pump2", {"cpu": 0.6})
        assert _wait(lambda: src.measurements == 4)
        opc.write("Pump2", {"memory": "high"})
        assert _wait(lambda: agent.summary.bad.get("not_number") == 1)
        opc.write("Pump2", {"memory": math.nan})
        assert _wait(lambda: agent.summary.bad.get("non_finite") == 1)
    finally:
        agent.request_stop()
        runner.join(10)
    assert src.bad_status_by_name == {"BadSensorFailure": 1}
    assert agent.streams == [f"{opc.url}/Objects/2:Pump2"]
    assert agent.summary.messages == 4 + 3
    assert agent.summary.windows == 4 - WINDOW + 1


def test_twenty_server_restarts_resubscribe_every_time(tmp_path: Path, opc: OpcUaServer) -> None:
    agent, src, runner = _agent(tmp_path, f"{opc.url}/Objects/2:Pump1?interval=0.05")
    try:
        for restart in range(21):
            assert _wait(lambda: src.connects == restart + 1), f"no session {restart + 1}: {src.last_error}"
            for i in range(WINDOW + restart % 3):  # sessions of different lengths
                seen = src.measurements
                opc.write("Pump1", {"cpu": 0.4 + 0.01 * i, "fan": 0.5 + 0.01 * restart})
                assert _wait(lambda: src.measurements > seen)
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
