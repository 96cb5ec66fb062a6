"""Operating the agent: /metrics, /healthz, JSON logs, sd_notify, SIGTERM drain, TOML config."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from edgewatch.mqtt.payloads import status_state
from edgewatch.agent.config import ConfigError, read_config, to_default_map
from edgewatch.agent.model import file_sha256
from edgewatch.agent.ops.address import parse_address
from edgewatch.agent.ops.logs import JsonLogFormatter
from edgewatch.commands.agent_run import command as run_command
from edgewatch.data.simulator_server import ServerConfig, SimulatorServer
from tests.conftest import free_port
from tests.modelkit import make_card, write_model

ROOT = Path(__file__).resolve().parents[3]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait(predicate, timeout: float = 20.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def test_service_run_metrics_health_json_logs_notify_and_sigterm(tmp_path: Path, broker, collector) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.01, k=1, n=1))
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.2)
    port = free_port()
    sub = collector(broker, "ops/#", client_id="c-ops", persistent=False)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"}
    with SimulatorServer(ServerConfig(rate=300, seed=2)) as sim:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source", sim.url,
             "--sink", f"mqtt://{broker.host}:{broker.port}/ops", "--sink", "jsonl:alerts.jsonl", "--agent-id",
             "svc", "--stride", "1", "--metrics", f"127.0.0.1:{port}", "--log-json", "--spool-dir", "spool",
             "--summary-json", "summary.json"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            assert _wait(lambda: json.loads(_get(base + "/healthz")[1]).get("messages", 0) > 100), "no health"
            assert _wait(lambda: b'edgewatch_alerts_total{kind="start"}' in _get(base + "/metrics")[1]), "no alert"
            code, body = _get(base + "/healthz")
            health = json.loads(body)
            assert code == 200 and health["status"] == "ok"
            assert health["model_sha256"] == file_sha256(model) and health["uptime_s"] > 0
            assert 0 <= health["last_message_age_s"] < 5 and health["spool_depth"] >= 0
            code, metrics = _get(base + "/metrics")
            text = metrics.decode()
            assert code == 200
            for name in ("edgewatch_messages_total", "edgewatch_windows_scored_total", "edgewatch_spool_depth",
                         "edgewatch_inference_seconds_bucket", 'edgewatch_alerts_total{kind="start"}'):
                assert name in text, name
            assert _get(base + "/nope")[0] == 404
            assert sub.wait_for(lambda c: [status_state(x) for x in c.on("svc/status")][-1:] == ["online"], 10)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    # every stderr line is a JSON log record
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert any("signal 15" in r["message"] for r in records)
    # drained and flushed: everything written to the JSONL sink reached the broker, then "offline"
    sent = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert sent, "the test model raised no alert"
    alert_ids = {e["id"] for e in sent if e["event"] in ("start", "end")}
    assert sub.wait_for(lambda c: alert_ids <= {e["id"] for e in c.events()}, 10)
    assert sub.wait_for(lambda c: [status_state(x) for x in c.on("svc/status")][-1:] == ["offline"], 10)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["messages"] > 100
    # the last episode was closed at shutdown, so no consumer waits for an end
    assert sum(1 for e in sent if e["event"] == "start") == sum(1 for e in sent if e["event"] == "end")
    # sd_notify: READY, watchdog pings while the loop turns, STOPPING
    got = []
    while True:
        try:
            got.append(notify.recv(4096).decode())
        except OSError:
            break
    notify.close()
    assert got[0].startswith("READY=1") and "WATCHDOG=1" in got and "STOPPING=1" in got


def _replay(tmp_path: Path) -> Path:
    rows = ["timestamp,a,b,c,d"] + [f"{1000 + i},0.5,{2.0 if 30 <= i < 40 else 0.5},0.5,0.5" for i in range(100)]
    p = tmp_path / "r.csv"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_config_file_is_equivalent_to_the_flags(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.1))
    data = _replay(tmp_path)
    flags = ["--model", str(model), "--source", f"replay:{data}", "--sink", "stdout", "--stride", "2",
             "--k", "1", "--n", "2", "--agent-id", "cfg-test", "-q"]
    by_flags = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", *flags],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    toml = tmp_path / "agent.toml"
    toml.write_text(f'model = "{model}"\nsource = ["replay:{data}"]\nsink = "stdout"\nstride = 2\nk = 1\nn = 2\n'
                    f'agent_id = "cfg-test"\nquiet = true\n')
    by_file = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--config", str(toml)],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert by_flags.returncode == 0 and by_file.returncode == 0, by_file.stderr
    a = [json.loads(x) for x in by_flags.stdout.splitlines()]
    b = [json.loads(x) for x in by_file.stdout.splitlines()]
    assert a and [e["id"] for e in a] == [e["id"] for e in b] and a[0]["agent"] == "cfg-test"
    # a flag on the command line wins over the file
    override = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--config", str(toml),
                               "--threshold", "100"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert override.returncode == 0 and override.stdout == ""


def test_config_refuses_unknown_keys_and_maps_sections(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('model = "m.onnx"\nsink = "stdout"\n[mqtt]\nusername = "u"\nca_file = "/ca.pem"\n')
    dm = to_default_map(run_command, read_config(p))
    assert dm == {"model": "m.onnx", "sink": ["stdout"], "mqtt_username": "u", "mqtt_ca_file": "/ca.pem"}
    p.write_text('modle = "m.onnx"\n')
    with pytest.raises(ConfigError, match="unknown setting.*modle"):
        to_default_map(run_command, read_config(p))
    p.write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config(p)


def test_unknown_config_key_is_a_usage_error(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('treshold = 0.3\n')
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--config", str(p)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and "treshold" in proc.stderr


def test_small_pieces() -> None:
    assert parse_address("0.0.0.0:9108") == ("0.0.0.0", 9108)
    assert parse_address(":9108") == ("127.0.0.1", 9108) and parse_address("9108") == ("127.0.0.1", 9108)
    import logging

    line = JsonLogFormatter().format(logging.LogRecord("x", logging.WARNING, "f", 1, "a %s", ("b",), None))
    assert json.loads(line)["message"] == "a b" and json.loads(line)["level"] == "warning"


def test_example_config_and_unit_are_consistent() -> None:
    dm = to_default_map(run_command, read_config(ROOT / "deploy" / "agent.example.toml"))
    assert dm["source"] == ["ws://10.0.0.5:9000/"] and dm["log_json"] is True and dm["metrics"]
    unit = (ROOT / "deploy" / "edgewatch-agent.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "Restart=on-failure" in unit
    assert "--config /etc/edgewatch/agent.toml" in unit
    # example configs bind to loopback only: an example copied as is must not open the agent to the network
    assert dm["metrics"].startswith("127.0.0.1:") and dm["stream_ttl"] == 3600
    for example in [ROOT / "deploy" / "agent.example.toml", ROOT / "README.md", ROOT / "docs" / "agent.md",
                    ROOT / "edgewatch" / "agent" / "config.py"]:
        assert "0.0.0.0" not in example.read_text(), example


def test_live_and_ready_are_told_apart(tmp_path: Path) -> None:
    from edgewatch.agent.engine import Agent, AgentOptions
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.ops.server import OpsServer
    from edgewatch.agent.sources import Item, Kind

    agent = Agent(ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=3))), [],
                  AgentOptions(drift_every=0))
    ops = OpsServer(agent, "127.0.0.1:0", ready_grace=30.0, ready_max_silence=5.0)
    try:
        def answer(path: str) -> tuple[int, str]:
            code, body = _get(ops.url + path)
            return code, json.loads(body)["ready_reason"]

        # never received a message: alive, but not ready (it used to say "ok")
        assert answer("/livez") == (200, "starting") and answer("/healthz") == (200, "starting")
        assert answer("/readyz") == (503, "starting") and answer("/healthz?ready") == (503, "starting")
        agent.started_at -= 31  # past the grace period, still nothing
        assert answer("/readyz") == (503, "no_data")
        agent.process([Item(Kind.RAW, "s", "[0.5, 0.5, 0.5, 0.5]", time.time())])
        assert answer("/readyz") == (200, "ok")
        agent.last_message_at -= 6  # silent for longer than ready_max_silence
        assert answer("/readyz") == (503, "silent") and answer("/livez")[0] == 200
        agent.heartbeat -= 60  # a wedged loop is not live either
        assert answer("/livez") == (503, "stuck") and answer("/readyz") == (503, "stuck")
    finally:
        ops.close()


def test_readyz_is_not_ready_when_every_message_is_refused(tmp_path: Path) -> None:
    from edgewatch.agent.engine import Agent, AgentOptions
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.ops.server import OpsServer
    from edgewatch.agent.sources import Item, Kind

    agent = Agent(ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=3))), [],
                  AgentOptions(drift_every=0))
    ops = OpsServer(agent, "127.0.0.1:0", ready_grace=30.0, ready_max_silence=60.0)
    try:
        def answer() -> tuple[int, dict]:
            code, body = _get(ops.url + "/readyz")
            return code, json.loads(body)

        per_sensor = [Item(Kind.RAW, "plant/pump-7/Pressure", '{"ts": 1, "value": 2.5}', time.time())] * 50
        agent.process(per_sensor)
        assert answer()[1]["ready_reason"] == "ok"  # within the grace period: it may still be starting up
        agent.started_at -= 31
        code, h = answer()
        assert (code, h["ready_reason"]) == (503, "refused")
        assert "every one was refused since the start" in h["ready_detail"] and "wrong_arity 50" in h["ready_detail"]
        agent.process([Item(Kind.RAW, "s", "[0.5, 0.5, 0.5, 0.5]", time.time())])
        assert answer()[0] == 200 and answer()[1]["ready_detail"] is None
        agent.last_row_at -= 31  # rows stopped being usable 31 s ago, messages still arrive
        agent.process(per_sensor)
        code, h = answer()
        assert (code, h["ready_reason"]) == (503, "refused") and "for 31 s" in h["ready_detail"]
    finally:
        ops.close()
