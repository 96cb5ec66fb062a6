"""Scale and topology on loopback: 20 agent processes on broker A, the operator on broker B, a bridge.

A rollout from B reaches all 20 (its time is printed), ``fleet status`` on B
lists all 20, and stopping B for a while loses no alert: the bridge queues
on A while B is away (QoS 1, persistent bridge session), B keeps the
collector's persistent session, and every alert id an agent wrote to its
own JSONL sink arrives at B's subscriber.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgewatch.agent.model import file_sha256
from edgewatch.agent.lifecycle.signing import generate_keypair, load_private_key, sign_bytes
from edgewatch.cli import main
from tests.modelkit import make_card, write_model

ROOT = Path(__file__).resolve().parents[2]
AGENTS = 20
PREFIX = "plant"

pytestmark = pytest.mark.slow


def _signed(tmp: Path, name: str, **card) -> Path:  # noqa: ANN003
    raw = write_model(tmp / f"{name}.raw.onnx", make_card(window=5, **card))
    out = tmp / f"{name}.onnx"
    out.write_bytes(sign_bytes(raw.read_bytes(), load_private_key(tmp / "release"), signer="ci"))
    return out


def _status(url: str) -> dict[str, dict]:
    res = CliRunner().invoke(main, ["fleet", "status", "--json", "--broker", url])
    assert res.exit_code == 0, res.output
    return {r["agent"]: r for r in json.loads(res.output)}


def _wait_status(url: str, predicate, timeout: float) -> dict[str, dict]:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        rows = _status(url)
        if predicate(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(1.0)


def test_twenty_agents_behind_a_bridge(tmp_path: Path, make_broker, collector) -> None:  # noqa: ANN001
    b = make_broker().start()
    a = make_broker([f"connection a-to-b", f"address {b.host}:{b.port}", f"topic {PREFIX}/# both 1",
                     "cleansession false", "remote_clientid bridge-a", "restart_timeout 1",
                     "keepalive_interval 5", "try_private true"]).start()
    generate_keypair(tmp_path / "release")
    v1 = _signed(tmp_path, "v1", threshold=0.05, k=1, n=1)  # an alert on every fault block
    v2 = _signed(tmp_path, "v2", threshold=0.04, k=1, n=1)
    rows = [f"0.5,0.5,{1.0 if 60 <= i % 120 < 80 else 0.5},0.5" for i in range(240)]
    data = tmp_path / "loop.csv"
    data.write_text("a,b,c,d\n" + "\n".join(rows) + "\n")
    on_b = f"mqtt://{b.host}:{b.port}/{PREFIX}"
    alerts_at_b = collector(b, f"{PREFIX}/+/alerts", client_id="historian")  # persistent session on B
    procs = []
    try:
        for i in range(AGENTS):
            log = open(tmp_path / f"agent{i}.log", "w")  # noqa: SIM115
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(v1), "--source",
                 f"replay:{data}?rate=40&loop=1", "--stride", "1", "--agent-id", f"box{i:02d}",
                 "--sink", f"mqtt://{a.host}:{a.port}/{PREFIX}", "--sink", f"jsonl:{tmp_path / f'alerts{i}.jsonl'}",
                 "--model-topic", "--trust-key", str(tmp_path / "release.pub"), "--status-interval", "2",
                 "--spool-dir", str(tmp_path / f"spool{i}"), "-q"],
                stdout=subprocess.DEVNULL, stderr=log, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}))
        listed = _wait_status(on_b, lambda r: len(r) == AGENTS and all(
            x["state"] == "online" and x["model_sha256"] for x in r.values()), 240)
        assert len(listed) == AGENTS and all(x["model_sha256"] == file_sha256(v1) for x in listed.values())

        started = time.monotonic()
        res = CliRunner().invoke(main, ["model", "publish", str(v2), "--broker", on_b, "--note", "v2",
                                        "--wait", "120"])
        rollout = time.monotonic() - started
        assert res.exit_code == 0, res.output
        answered = re.search(r"(\d+) of (\d+) agent\(s\) answered; the last after ([0-9.]+)s", res.output)
        assert answered and answered.group(1) == answered.group(2) == str(AGENTS), res.output
        print(f"\nrollout through the bridge to {AGENTS} agents: last swap after {answered.group(3)} s "
              f"(command took {rollout:.1f} s)")
        # every agent on v2 and, on this loaded machine, past its first alert (the status shows its last)
        listed = _wait_status(on_b, lambda r: all(x["model_sha256"] == file_sha256(v2) and x["last_alert"]
                                                  and x["status"]["messages"] > 0 for x in r.values()), 60)
        assert all(x["model_sha256"] == file_sha256(v2) and x["note"] == "v2" for x in listed.values())
        assert all(x["last_alert"] and x["status"]["messages"] > 0 for x in listed.values())

        # the operator's broker goes away for a while; alerts go on at A and queue in the bridge
        assert alerts_at_b.wait_for(lambda c: len(c.on("/alerts")) > AGENTS, 60)
        b.stop()
        outage = (time.time(), 0.0)
        time.sleep(6)
        outage = (outage[0], time.time())
        b.start()
        time.sleep(3)
    finally:
        for p in procs:
            p.terminate()
        codes = [p.wait(60) for p in procs]
    assert codes == [0] * AGENTS, [(tmp_path / f"agent{i}.log").read_text()[-800:] for i, c in enumerate(codes) if c]
    sent = set()
    during_outage = 0
    for i in range(AGENTS):
        for line in (tmp_path / f"alerts{i}.jsonl").read_text().splitlines():
            event = json.loads(line)
            if event["event"] in ("start", "end"):
                sent.add(event["id"])
                during_outage += outage[0] <= (event["ts"] or 0) <= outage[1]
    assert len(sent) > 4 * AGENTS and during_outage >= AGENTS, (len(sent), during_outage)

    def received(c) -> set[str]:  # noqa: ANN001
        return {json.loads(p)["id"] for p in c.on("/alerts")}

    alerts_at_b.wait_for(lambda c: sent <= received(c), 90)
    missing = sent - received(alerts_at_b)
    assert not missing, f"{len(missing)} of {len(sent)} alerts never reached broker B"
