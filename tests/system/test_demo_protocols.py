"""`edgewatch simulate --serve` and `edgewatch demo --protocol`: the same equipment, faults and scorecard
over MQTT (a mosquitto the demo starts), OPC UA (an asyncua server) and Modbus TCP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgewatch.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "equipment-lstm-ae.onnx"


@pytest.mark.slow
@pytest.mark.parametrize("protocol,rate", [("mqtt", "300"), ("modbus", "300"), ("opcua", "100")])
def test_demo_over_each_protocol_prints_the_same_scorecard(tmp_path: Path, protocol: str, rate: str) -> None:
    if protocol == "mqtt" and not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.skip("mosquitto is not installed")
    pytest.importorskip({"mqtt": "paho", "modbus": "pymodbus", "opcua": "asyncua"}[protocol])
    result = CliRunner().invoke(main, ["demo", "--protocol", protocol, "--model", str(MODEL), "--rate", rate,
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "scorecard.json").read_text())
    assert [f["fault"] for f in card["faults"]] == ["spike", "level_shift", "noise_burst", "frozen", "overload",
                                                    "slow_drift"]
    assert card["caught"] == 6, card["missed"]
    assert len(card["false_alarms"]) <= 2
    assert "faults injected 6" in result.output and f"agent reads --source {protocol}" in result.output


def test_simulate_serve_names_the_source_that_reads_it(tmp_path: Path) -> None:
    pytest.importorskip("pymodbus")
    result = CliRunner().invoke(main, ["simulate", "--serve", "modbus://127.0.0.1:0", "--duration", "0.5",
                                       "--rate", "40", "--fault", "spike@0.1", "--truth", str(tmp_path / "t.jsonl"),
                                       "-q"])
    assert result.exit_code == 0, result.output
    assert "read it with --source 'modbus://127.0.0.1:" in result.output
    assert "/1?registers=0:f32,2:f32,4:f32,6:f32'" in result.output
    truth = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [t["fault"] for t in truth] == ["spike"]
    with pytest.raises(Exception, match="--serve"):
        from edgewatch.data.simulator_outlets import make_outlet

        make_outlet("ftp://x")


def test_simulator_over_sparkplug_b_feeds_the_agent(tmp_path: Path, broker) -> None:
    from edgewatch.agent.engine import Agent, AgentOptions
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.sources import make_source
    from edgewatch.data.simulator_outlets import source_url_for
    from edgewatch.data.simulator_server import ServerConfig, SimulatorServer

    serve = f"mqtt://{broker.host}:{broker.port}/plant/sim?format=sparkplug"
    agent = Agent(ScoringModel(MODEL), [], AgentOptions(agent_id="spb-sim", drift_every=0))
    src = make_source(source_url_for(serve), ["cpu", "memory", "traffic", "fan"], agent_id="spb-sim")
    agent.add_source(src)
    import threading
    import time

    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 15
    while src.connects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    try:  # the births go out first, so the agent (subscribed before) knows every alias
        with SimulatorServer(ServerConfig(rate=200, count=300, streams=2), serve=serve) as server:
            assert server.wait(20)
        deadline = time.monotonic() + 15
        while agent.summary.messages < 2 * 300 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        agent.request_stop()
        runner.join(10)
    assert sorted(agent.streams) == ["spBv1.0/plant/sim/eq-0", "spBv1.0/plant/sim/eq-1"]
    assert agent.summary.messages == 2 * 300 and agent.summary.bad == {}  # per equipment: a DBIRTH, 299 DDATA
