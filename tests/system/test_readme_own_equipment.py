"""The README's "Watch your own equipment", run literally: its commands are read from README.md and run as
written (the broker's address substituted for a mosquitto of the test's own) on a plant file generated here.

The plant: one row a second, `;`-separated with a `datetime` column, eight sensors moving with a load cycle, a
motor temperature warming up through the normal recording. Live, the machine `pump-7` publishes one topic per
sensor with `{"value": v, "ts": t}` and has one fault (the flow drops by 30 %, the current rises) for 90 s;
`pump-8`, a machine at another operating point (flow and current x1.6), publishes bare numbers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SENSORS = ["vibration1", "vibration2", "current", "pressure", "temperature", "thermocouple", "voltage", "flow"]
T0 = datetime(2024, 5, 1, 6, 0, 0, tzinfo=timezone.utc).timestamp()
NORMAL_ROWS = 1800
LIVE_ROWS, FAULT = 590, (300, 390)  # live rows after the normal file; the fault's rows among them
README_BROKER = "broker.local:1883"


def plant(rows: int, seed: int, start: int = 0, scale: float = 1.0,
          fault: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(epoch seconds, [rows, 8] sensor values) from second ``start`` on."""
    rng = np.random.default_rng(seed)
    t = np.arange(start, start + rows, dtype=np.float64)
    load = 0.6 * np.sin(t / 90.0) + rng.normal(0, 0.2, rows)
    x = np.stack([0.027 + rng.normal(0, 0.0005, rows), 0.040 + rng.normal(0, 0.0008, rows),
                  (0.9 + 0.05 * load + rng.normal(0, 0.02, rows)) * scale,
                  1.0 + 0.05 * load + rng.normal(0, 0.02, rows),
                  60.0 + 15.0 * (1.0 - np.exp(-t / 600.0)) + rng.normal(0, 0.05, rows),  # warming up
                  25.8 + rng.normal(0, 0.05, rows), 230.0 + rng.normal(0, 1.5, rows),
                  (32.0 + 2.0 * load + rng.normal(0, 0.4, rows)) * scale], axis=1)
    if fault is not None:
        a, b = fault
        x[a:b, 7] *= 0.7
        x[a:b, 2] += 0.3
    return T0 + t, x


def write_plant_csv(path: Path, ts: np.ndarray, x: np.ndarray) -> Path:
    lines = [";".join(["datetime", *SENSORS])]
    for t, row in zip(ts, x):
        when = datetime.fromtimestamp(float(t), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(";".join([when, *(f"{v:.5f}" for v in row)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def readme_commands() -> list[str]:
    """The shell commands of the section's code block, continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Watch your own equipment", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


@pytest.fixture
def plant_files(tmp_path: Path) -> Path:
    write_plant_csv(tmp_path / "pump-normal.csv", *plant(NORMAL_ROWS, seed=1))
    return tmp_path


def _publish(client: paho.Client, stream: str, ts: np.ndarray, x: np.ndarray, with_time: bool) -> list:
    infos = []
    for t, row in zip(ts, x):
        for name, v in zip(SENSORS, row):
            payload = json.dumps({"value": round(float(v), 5), "ts": float(t)}) if with_time else f"{v:.5f}"
            infos.append(client.publish(f"plant/{stream}/{name}", payload, qos=1))
    return infos


@pytest.mark.slow
def test_the_readme_path_from_a_plant_csv_to_alerts_over_mqtt(plant_files: Path, make_broker, collector) -> None:
    commands = readme_commands()
    assert len(commands) <= 5, "the README promises at most five commands"
    assert commands[0] == ["pip", "install", "./edgewatch"]  # this checkout is installed in the test's venv instead
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "edgewatch").exists()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    broker = make_broker().start()
    address = f"{broker.host}:{broker.port}"
    *batch, live = [[arg.replace(README_BROKER, address) for arg in cmd] for cmd in commands[1:]]
    assert live[:3] == ["edgewatch", "agent", "run"] and any("{stream}/{feature}" in a for a in live)

    outputs = []
    for cmd in batch:  # fit, then the replay of the normal file
        run = subprocess.run(cmd, cwd=plant_files, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{cmd}: {run.stderr}"
        outputs.append(run)
    fit, replay = outputs
    assert "rate      temperature" in fit.stdout + fit.stderr  # the warm-up was seen and scored by its rate
    assert (plant_files / "pump.onnx").is_file()
    assert "messages 1800" in replay.stderr and "bad 0," in replay.stderr
    assert replay.stdout.strip() == "", "an alert on the normal data itself"

    alerts = collector(broker, "edgewatch/pump-7/#", client_id="readme-alerts")
    agent = subprocess.Popen(live, cwd=plant_files, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="readme-plant")
    pub.max_queued_messages_set(0)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        assert wait_until(lambda: any(b'"online"' in p for p in alerts.on("/status")), 60), "the agent is not online"
        time.sleep(1.0)  # its subscription
        infos = _publish(pub, "pump-7", *plant(LIVE_ROWS, seed=2, start=NORMAL_ROWS, fault=FAULT), with_time=True)
        infos += _publish(pub, "pump-8", *plant(300, seed=3, start=NORMAL_ROWS, scale=1.6), with_time=False)
        for info in infos:
            info.wait_for_publish(30)
        assert wait_until(lambda: len(alerts.events("/alerts")) >= 2 and alerts.events("/drift"), 120), \
            alerts.messages[-5:]
        time.sleep(2.0)  # anything more would come now
    finally:
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=60)
        pub.disconnect()
        pub.loop_stop()
    assert agent.returncode == 0, err
    events = alerts.events("/alerts")
    seven = [e for e in events if e["stream"] == "pump-7"]
    assert [e["event"] for e in seven] == ["start", "end"], seven  # one episode for the fault, no false one
    fault_from, fault_to = T0 + NORMAL_ROWS + FAULT[0], T0 + NORMAL_ROWS + FAULT[1]
    assert fault_from <= seven[0]["ts"] <= fault_from + 30
    assert fault_to <= seven[1]["ts"] <= fault_to + 120
    drift = alerts.events("/drift")
    assert [d["stream"] for d in drift] == ["pump-8"]  # the machine at another operating point, only
    assert "flow" in json.dumps(drift[0]) and "current" in json.dumps(drift[0])
    assert "bad 0," in err, err[-2000:]
