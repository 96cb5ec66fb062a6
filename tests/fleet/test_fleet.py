"""The fleet end to end on a real mosquitto: agent processes, the operator's commands, status, shadow, rollback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.publish as publish
import pytest
from click.testing import CliRunner

from edgewatch.agent.model import file_sha256
from edgewatch.agent.lifecycle.signing import generate_keypair, load_private_key, read_signature, sign_bytes
from edgewatch.cli import main
from tests.modelkit import make_card, write_model

ROOT = Path(__file__).resolve().parents[2]


class Fleet:
    def __init__(self, tmp: Path, broker, prefix: str) -> None:  # noqa: ANN001
        self.tmp, self.broker, self.prefix = tmp, broker, prefix
        self.url = f"mqtt://{broker.host}:{broker.port}/{prefix}"
        generate_keypair(tmp / "release")
        self.pub = tmp / "release.pub"
        self.procs: dict[str, subprocess.Popen] = {}
        rows = []
        for i in range(400):  # a "fault" on c for 40 of every 200 rows: 0.0625 for the squaring model
            rows.append(f"0.5,0.5,{1.0 if 100 <= i % 200 < 140 else 0.5},0.5")
        self.csv = tmp / "loop.csv"
        self.csv.write_text("a,b,c,d\n" + "\n".join(rows) + "\n")

    def model(self, name: str, signed: bool = True, **card) -> Path:  # noqa: ANN003
        path = write_model(self.tmp / f"{name}.raw.onnx", make_card(**{"window": 5, **card}))
        if not signed:
            return path
        out = self.tmp / f"{name}.onnx"
        out.write_bytes(sign_bytes(path.read_bytes(), load_private_key(self.tmp / "release"), signer="ci"))
        return out

    def start(self, agent: str, model: Path, *extra: str) -> subprocess.Popen:
        log = open(self.tmp / f"{agent}.log", "a")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source",
             f"replay:{self.csv}?rate=200&loop=1", "--stride", "1", "--agent-id", agent, "--sink", self.url,
             "--model-topic", "--trust-key", str(self.pub), "--status-interval", "0.5", "--mqtt-keepalive", "2",
             "--shadow-report-interval", "1", "--spool-dir", str(self.tmp / f"spool-{agent}"), "-q", *extra],
            stdout=subprocess.DEVNULL, stderr=log, cwd=self.tmp, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.procs[agent] = proc
        return proc

    def stop(self, agent: str) -> None:
        proc = self.procs.pop(agent)
        proc.terminate()
        assert proc.wait(30) == 0, (self.tmp / f"{agent}.log").read_text()[-3000:]

    def cli(self, *args: str):  # noqa: ANN202
        return CliRunner().invoke(main, [*args, "--broker", self.url])

    def status(self) -> dict[str, dict]:
        res = self.cli("fleet", "status", "--json")
        assert res.exit_code == 0, res.output
        return {row["agent"]: row for row in json.loads(res.output)}

    def wait_status(self, predicate, timeout: float = 30.0) -> dict[str, dict]:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while True:
            rows = self.status()
            if predicate(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.3)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()
        for agent in ("a1", "a2", "a3"):  # leave no retained messages for the next test
            for kind in ("status", "model", "shadow"):
                publish.single(f"{self.prefix}/{agent}/{kind}", b"", qos=1, retain=True,
                               hostname=self.broker.host, port=self.broker.port)


@pytest.fixture
def fleet(tmp_path: Path, broker) -> Fleet:  # noqa: ANN001
    f = Fleet(tmp_path, broker, f"fleet{os.getpid()}{time.monotonic_ns() % 10**6}")
    yield f
    f.close()


def test_publish_refuse_rollback_restart_and_kill(fleet: Fleet) -> None:
    v1 = fleet.model("v1", threshold=0.5)
    v2 = fleet.model("v2", threshold=0.3)
    unsigned = fleet.model("v3", signed=False, threshold=0.2)
    for agent in ("a1", "a2"):
        fleet.start(agent, v1)
    rows = fleet.wait_status(lambda r: all(r.get(a, {}).get("state") == "online" and r[a]["model_sha256"]
                                           for a in ("a1", "a2")), 90)
    assert {a: r["model_sha256"] for a, r in rows.items()} == {"a1": file_sha256(v1), "a2": file_sha256(v1)}
    watch = subprocess.Popen([sys.executable, "-m", "edgewatch.cli", "fleet", "status", "--broker", fleet.url,
                              "--watch", "--interval", "0.3"], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})

    res = fleet.cli("model", "publish", str(v2), "--note", "v2: lower threshold")
    assert res.exit_code == 0, res.output

    assert "a1: swapped in" in res.output and "a2: swapped in" in res.output
    assert "2 of 2 agent(s) answered" in res.output
    rows = fleet.wait_status(lambda r: all(x["model_sha256"] == file_sha256(v2) for x in r.values()))
    for agent in ("a1", "a2"):
        assert rows[agent]["model_sha256"] == file_sha256(v2) and rows[agent]["note"] == "v2: lower threshold"
        assert rows[agent]["status"]["previous_model"]["sha256"] == file_sha256(v1)
        assert rows[agent]["status"]["messages"] > 0 and rows[agent]["status"]["v"] == 1

    # the operator refuses to ship an unsigned file; the agents refuse it when forced
    res = fleet.cli("model", "publish", str(unsigned), "--agent", "a1")
    assert res.exit_code == 3 and "is not signed" in res.output
    res = fleet.cli("model", "publish", str(unsigned), "--agent", "a1", "--allow-unsigned")
    assert res.exit_code == 1 and "a1: REFUSED" in res.output and "is not signed" in res.output, res.output
    rows = fleet.wait_status(lambda r: (r["a1"]["status"].get("last_model_outcome") or {}).get("event")
                             == "model_refused")
    assert "is not signed" in rows["a1"]["status"]["last_model_outcome"]["reason"]
    assert rows["a1"]["model_sha256"] == file_sha256(v2)

    # going back is a signed act: agents with --trust-key refuse an unsigned rollback (an older release)
    res = fleet.cli("model", "rollback", "--agent", "a1")
    assert res.exit_code == 1 and "a1: REFUSED" in res.output and "--key" in res.output, res.output
    res = fleet.cli("model", "rollback", "--agent", "a1", "--key", str(fleet.tmp / "release"))
    assert res.exit_code == 0 and "a1: swapped in" in res.output, res.output
    rows = fleet.wait_status(lambda r: r["a1"]["model_sha256"] == file_sha256(v1))
    assert rows["a1"]["model_sha256"] == file_sha256(v1) and rows["a2"]["model_sha256"] == file_sha256(v2)
    watch.send_signal(signal.SIGINT)  # it has watched the publish, the refusal and the rollback
    shown, _ = watch.communicate(timeout=30)
    assert watch.returncode == 0
    frames = re.split(rf"^\d\d:\d\d:\d\d {fleet.prefix}$", shown, flags=re.M)  # each reprint's header line
    assert len(frames) >= 3 and all("a1" in f and "a2" in f and "online" in f for f in frames[1:]), shown
    last = {line.split()[0]: line for line in frames[-1].splitlines() if line.startswith("a")}
    assert file_sha256(v1)[:12] in last["a1"] and "v2: lower threshold" in last["a2"], frames[-1]

    # restarts keep what was applied: a1 stays rolled back, a2 resumes v2 (both started with --model v1)
    for agent in ("a1", "a2"):
        fleet.stop(agent)
    rows = fleet.wait_status(lambda r: all(r[a]["state"] == "offline" for a in ("a1", "a2")), 10)
    assert all(rows[a]["state"] == "offline" and rows[a]["model_sha256"] for a in ("a1", "a2"))  # said on stop
    for agent in ("a1", "a2"):
        fleet.start(agent, v1)
    rows = fleet.wait_status(lambda r: all(r[a]["state"] == "online" and r[a]["status"]["messages"] > 200
                                           for a in ("a1", "a2")), 90)
    assert rows["a1"]["model_sha256"] == file_sha256(v1) and rows["a2"]["model_sha256"] == file_sha256(v2)

    # kill -9: the broker's last will (1.5 keepalives of 2 s) or the stale status says offline
    fleet.procs["a2"].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    fleet.procs.pop("a2").wait()
    rows = fleet.wait_status(lambda r: r["a2"]["state"] == "offline", 15)
    seen_offline = time.monotonic() - killed  # includes the ~1 s each 'fleet status' needs to read the topics
    assert rows["a2"]["state"] == "offline" and rows["a1"]["state"] == "online"
    assert seen_offline < 2 + 5, seen_offline  # keepalive 2 s, plus the time of the status reads
    res = fleet.cli("fleet", "forget", "--agent", "a2")
    assert res.exit_code == 0, res.output
    assert set(fleet.status()) == {"a1"}


def test_shadow_report_and_promotion(fleet: Fleet, collector) -> None:  # noqa: ANN001
    live = fleet.model("live", threshold=0.5)  # never crosses: the faults score 0.0625
    keen = fleet.model("keen", threshold=0.05, k=1, n=1)  # opens an episode on every fault
    reports = collector(fleet.broker, f"{fleet.prefix}/a3/shadow", client_id="c-shadow", persistent=False)
    fleet.start("a3", live)
    fleet.wait_status(lambda r: r.get("a3", {}).get("state") == "online" and r["a3"]["model_sha256"], 90)
    res = fleet.cli("model", "publish", str(keen), "--shadow", "--note", "keen", "--promote-if",
                    "alerts_differ<=0,after=1s")
    assert res.exit_code == 0 and "a3: running it in shadow" in res.output, res.output
    rows = fleet.wait_status(lambda r: r["a3"]["shadow_sha256"] == file_sha256(keen))
    assert rows["a3"]["shadow_sha256"] == file_sha256(keen) and rows["a3"]["model_sha256"] == file_sha256(live)
    time.sleep(2.5)  # 500 rows: at least two fault blocks
    res = fleet.cli("fleet", "shadow-report", "--agent", "a3", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)[0]
    assert report["windows"] > 300 and report["live"]["episodes"] == 0 and report["shadow"]["episodes"] >= 2
    assert report["alerts_differ"] == report["shadow"]["episodes"] and report["only_shadow"][0]["stream"]
    assert report["shadow"]["windows_over"] > 0 and report["live"]["windows_over"] == 0
    assert report["score_correlation"] == pytest.approx(1.0)  # the same graph, other thresholds
    assert report["promote_if"]["holds"] is False and "more than 0" in report["promote_if"]["why"]
    assert rows["a3"]["model_sha256"] == file_sha256(live)  # not promoted: they differ
    periodic = [json.loads(p) for p in reports.on("/shadow") if p and b"request_id" not in p]
    assert periodic and periodic[-1]["shadow"]["sha256"] == file_sha256(keen)  # every --shadow-report-interval
    fleet.stop("a3")  # a restart keeps the shadow model in shadow
    fleet.start("a3", live)
    rows = fleet.wait_status(lambda r: r["a3"]["state"] == "online" and r["a3"]["shadow_sha256"], 90)
    assert rows["a3"]["shadow_sha256"] == file_sha256(keen) and rows["a3"]["model_sha256"] == file_sha256(live)

    res = fleet.cli("model", "promote", "--agent", "a3")
    assert res.exit_code == 0 and "a3: swapped in" in res.output, res.output
    rows = fleet.wait_status(lambda r: r["a3"]["model_sha256"] == file_sha256(keen))
    assert rows["a3"]["shadow_sha256"] is None and rows["a3"]["note"] == "keen"
    res = fleet.cli("model", "promote", "--agent", "a3")
    assert res.exit_code == 1 and "no model runs in shadow" in res.output, res.output
    wide = fleet.model("wide", threshold=0.5, window=8)
    res = fleet.cli("model", "publish", str(wide), "--shadow", "--agent", "a3")
    assert res.exit_code == 1 and "a3: REFUSED" in res.output and "window 8" in res.output, res.output

    # a shadow that agrees is promoted by its rule, and the report says why
    res = fleet.cli("model", "rollback", "--agent", "a3", "--key", str(fleet.tmp / "release"))
    assert res.exit_code == 0, res.output
    twin = fleet.model("twin", threshold=0.5001)  # the live model's decisions; signed after the rollback's release
    res = fleet.cli("model", "publish", str(twin), "--shadow", "--note", "twin", "--promote-if",
                    "alerts_differ<=0,after=1s")
    assert res.exit_code == 0, res.output
    rows = fleet.wait_status(lambda r: r["a3"]["model_sha256"] == file_sha256(twin), 20)
    outcome = rows["a3"]["status"]["last_model_outcome"]
    assert rows["a3"]["model_sha256"] == file_sha256(twin), rows["a3"]
    assert outcome["action"] == "promote" and "rule 'alerts_differ<=0,after=1s' holds" in outcome["why"]


def test_an_older_release_is_refused_from_the_topic_and_at_start(fleet: Fleet) -> None:
    v1 = fleet.model("v1", threshold=0.5)
    v2 = fleet.model("v2", threshold=0.3)  # signed after v1: a newer release
    fleet.start("a1", v2)
    fleet.wait_status(lambda r: r.get("a1", {}).get("state") == "online" and r["a1"]["model_sha256"], 90)
    key = str(fleet.tmp / "release")
    res = fleet.cli("model", "rollback", "--agent", "a1", "--key", key)  # nothing to go back to yet
    assert res.exit_code == 1 and "a1: not sent: its status names no previous model" in res.output, res.output
    assert fleet.cli("model", "rollback", "--release", "5").exit_code == 2  # a release is signed: needs --key
    for extra in ((), ("--shadow",)):  # what anyone able to publish on the model topic could replay
        res = fleet.cli("model", "publish", str(v1), "--agent", "a1", *extra)
        assert res.exit_code == 1 and "a1: REFUSED" in res.output and "older than release" in res.output, res.output
    rows = fleet.wait_status(lambda r: (r["a1"]["status"].get("last_model_outcome") or {}).get("shadow") is True)
    assert rows["a1"]["model_sha256"] == file_sha256(v2) and rows["a1"]["shadow_sha256"] is None
    assert rows["a1"]["status"]["model"]["release"] == read_signature(v2.read_bytes()).release
    assert "older than release" in rows["a1"]["status"]["last_model_outcome"]["reason"]

    # going back on purpose: the old file, signed again, is a new release
    again = fleet.tmp / "v1-again.onnx"
    again.write_bytes(sign_bytes(v1.read_bytes(), load_private_key(key), signer="ci"))
    res = fleet.cli("model", "publish", str(again), "--agent", "a1", "--note", "v1, signed again")
    assert res.exit_code == 0 and "a1: swapped in" in res.output, res.output
    assert f"release {read_signature(again.read_bytes()).release})" in res.output  # the operator sees which
    fleet.stop("a1")

    # a restart cannot bring v2 back: run without --model-topic, --model is what would run
    spool = fleet.tmp / "spool-a1"
    res = CliRunner().invoke(main, ["agent", "run", "--model", str(v2), "--source", f"replay:{fleet.csv}",
                                    "--trust-key", str(fleet.pub), "--spool-dir", str(spool), "-q"])
    assert res.exit_code == 3 and f"--model {v2} is release" in res.output, res.output
    assert "older than release" in res.output and "edgewatch model sign" in res.output
    # with --model-topic the store's live model is resumed; when its file is gone, --model v2 is refused, not run
    for stored in (spool / "models").glob("*.onnx"):
        stored.unlink()
    assert fleet.start("a1", v2).wait(60) == 3
    fleet.procs.pop("a1")
    assert "older than release" in (fleet.tmp / "a1.log").read_text()
    res = CliRunner().invoke(main, ["agent", "run", "--model", str(again), "--source", f"replay:{fleet.csv}",
                                    "--trust-key", str(fleet.pub), "--spool-dir", str(spool), "-q"])
    assert res.exit_code == 0, res.output


def test_the_fleet_broker_needs_no_mqtt_sink(fleet: Fleet) -> None:
    """--fleet-broker: status, last will and the model topic on a broker the alerts do not go to.

    Before, --model-topic needed an MQTT sink: the receiver and the fleet member reached the broker and
    the topic prefix through it. Here alerts go to a file, and the fleet works the same.
    """
    v1 = fleet.model("v1", threshold=0.5)
    v2 = fleet.model("v2", threshold=0.3)
    alerts = fleet.tmp / "a3.jsonl"
    log = open(fleet.tmp / "a3.log", "a")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(v1), "--source",
         f"replay:{fleet.csv}?rate=200&loop=1", "--stride", "1", "--agent-id", "a3", "--sink", f"jsonl:{alerts}",
         "--fleet-broker", fleet.url, "--model-topic", "--trust-key", str(fleet.pub), "--status-interval", "0.5",
         "--mqtt-keepalive", "2", "--spool-dir", str(fleet.tmp / "spool-a3"), "-q"],
        stdout=subprocess.DEVNULL, stderr=log, cwd=fleet.tmp, env={**os.environ, "PYTHONPATH": str(ROOT)})
    fleet.procs["a3"] = proc
    try:
        rows = fleet.wait_status(lambda r: r.get("a3", {}).get("state") == "online", 60)
        assert rows["a3"]["model_sha256"] == file_sha256(v1), (fleet.tmp / "a3.log").read_text()[-3000:]
        assert rows["a3"]["status"]["spool_depth"] == 0  # no MQTT sink: nothing spooled
        res = fleet.cli("model", "publish", str(v2), "--agent", "a3", "--note", "v2 via the fleet broker")
        assert res.exit_code == 0 and "a3: swapped in" in res.output, res.output
        rows = fleet.wait_status(lambda r: r["a3"]["model_sha256"] == file_sha256(v2), 30)
        assert rows["a3"]["model_sha256"] == file_sha256(v2) and rows["a3"]["note"] == "v2 via the fleet broker"
        events = [json.loads(line)["event"] for line in alerts.read_text().splitlines()]
        assert "model_swapped" in events  # the file sink gets the fleet's model events too
        proc.send_signal(signal.SIGKILL)  # no goodbye: the broker's last will says offline
        rows = fleet.wait_status(lambda r: r["a3"]["state"] == "offline", 15)
        assert rows["a3"]["state"] == "offline" and "last will" in rows["a3"]["reason"], rows["a3"]
    finally:
        proc.kill()
        proc.wait()
        fleet.procs.pop("a3", None)
        log.close()


def test_model_topic_without_a_broker_is_a_usage_error(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx", make_card(window=5))
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                           "--source", "stdin", "--model-topic", "--allow-unsigned-models"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, input="")
    assert proc.returncode == 2, proc.stderr
    assert "--model-topic needs the fleet's MQTT broker" in proc.stderr
    assert "--fleet-broker" in proc.stderr and "--sink mqtt://" in proc.stderr
