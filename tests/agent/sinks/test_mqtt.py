"""The MQTT sink against a real mosquitto: QoS 1 alerts, retained status + last will, spool, TLS, login."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgewatch.mqtt.payloads import status_state
from edgewatch.agent.ops.metrics import AgentMetrics
from edgewatch.agent.sinks.mqtt import MqttConfigError, MqttSink


def _alert(i: int, kind: str = "start") -> dict:
    return {"event": kind, "id": f"id-{i}", "stream": "s", "score": 1.0 + i, "threshold": 0.5}


def test_alerts_status_and_last_will(broker, collector, tmp_path: Path) -> None:
    sub = collector(broker, "plant/#", client_id="c-basic", persistent=False)
    metrics = AgentMetrics()
    sink = MqttSink.from_url(f"mqtt://{broker.host}:{broker.port}/plant", agent_id="a1",
                             spool_dir=tmp_path, metrics=metrics)
    assert sub.wait_for(lambda c: [status_state(x) for x in c.on("a1/status")] == ["online"], 10)
    for i in range(5):
        sink.send(_alert(i))
    sink.send({"event": "drift", "stream": "s", "p_value": 0.001})
    sink.send({"event": "model", "sha256": "ab"})
    assert sink.wait_delivered(10)
    assert sub.wait_for(lambda c: len(c.on("/alerts")) == 5 and c.on("/drift") and c.on("/events"))
    assert [e["id"] for e in sub.events()] == [f"id-{i}" for i in range(5)]  # in order
    assert metrics.spool_depth._value.get() == 0 and sink.published == 7
    sink.close()
    assert sub.wait_for(lambda c: [status_state(x) for x in c.on("a1/status")][-1:] == ["offline"], 10)
    # retained: a late subscriber sees the status at once
    late = collector(broker, "plant/a1/status", client_id="c-late", persistent=False)
    assert late.wait_for(lambda c: [status_state(x) for x in c.on("status")] == ["offline"], 5)


def test_last_will_when_the_agent_dies(broker, collector, tmp_path: Path) -> None:
    sub = collector(broker, "lw/+/status", client_id="c-will", persistent=False)
    code = f"""
import time
from edgewatch.agent.sinks.mqtt import MqttSink
s = MqttSink.from_url('mqtt://{broker.host}:{broker.port}/lw', agent_id='dies', spool_dir={str(tmp_path)!r},
                      keepalive=1)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3])
    try:
        assert sub.wait_for(lambda c: [status_state(x) for x in c.on("dies/status")][-1:] == ["online"], 20)
        proc.kill()
        proc.wait()
        # the broker's last will
        assert sub.wait_for(lambda c: [status_state(x) for x in c.on("dies/status")][-1:] == ["offline"], 10)
        assert b"last will" in sub.on("dies/status")[-1]
    finally:
        proc.kill()


def test_broker_down_then_back_delivers_the_spool_in_order(broker, collector, tmp_path: Path) -> None:
    sub = collector(broker, "sp/a2/alerts", client_id="c-spool", persistent=True)
    metrics = AgentMetrics()
    sink = MqttSink.from_url(f"mqtt://{broker.host}:{broker.port}/sp", agent_id="a2", spool_dir=tmp_path,
                             metrics=metrics, reconnect_min=0.1, reconnect_max=0.5)
    sink.send(_alert(0))
    assert sub.wait_for(lambda c: len(c.events()) == 1)
    broker.stop()
    for i in range(1, 21):
        sink.send(_alert(i))
    time.sleep(0.3)
    assert metrics.spool_depth._value.get() >= 20  # waiting on disk
    broker.start()
    assert sink.wait_delivered(20)
    assert sub.wait_for(lambda c: len({e["id"] for e in c.events()}) == 21, 20)
    ids = list(dict.fromkeys(e["id"] for e in sub.events()))
    assert ids == [f"id-{i}" for i in range(21)]
    assert metrics.spool_depth._value.get() == 0
    sink.close()


def test_an_alert_acknowledged_while_the_connection_drains_is_not_sent_again(broker, collector,
                                                                              tmp_path: Path) -> None:
    """A broker that stalls at stop and acknowledges during the connection's drain: the spool records it.

    Before, the spool closed before the connection drained: the alert stayed spooled although the broker had it,
    and the next start sent it again (a duplicate with the same id).
    """
    import signal
    import threading

    from tests.waiting import wait_until

    url = f"mqtt://{broker.host}:{broker.port}/dr"
    sub = collector(broker, "dr/a5/#", client_id="c-dr", persistent=False)
    sink = MqttSink.from_url(url, agent_id="a5", spool_dir=tmp_path, drain_timeout=0.3)
    assert sink.connection.wait_connected(10)
    broker.proc.send_signal(signal.SIGSTOP)  # connected, but nothing is read or acknowledged

    def resume_once_the_sink_gave_up() -> None:  # the broker wakes while the close waits on the connection
        wait_until(sink._closing.is_set, 60, poll=0.005)
        broker.proc.send_signal(signal.SIGCONT)

    resume = threading.Thread(target=resume_once_the_sink_gave_up)
    try:
        sink.send(_alert(0))
        resume.start()
        sink.close()
    finally:
        resume.join()
        broker.proc.send_signal(signal.SIGCONT)
    assert sub.wait_for(lambda c: [e["id"] for e in c.events()] == ["id-0"], 10)
    assert sink.spool.depth == 0
    again = MqttSink.from_url(url, agent_id="a5", spool_dir=tmp_path)
    assert again.connection.wait_connected(10)  # else it closes before it could send anything, "offline" too
    assert again.wait_delivered(10)
    again.close()
    # the second sink's "offline" comes after anything it sent: once it is here, a duplicate would be too
    def goodbyes(c) -> int:  # noqa: ANN001
        return sum(1 for t, p, retained in list(c.messages) if t.endswith("a5/status") and not retained
                   and status_state(p) == "offline")

    assert sub.wait_for(lambda c: goodbyes(c) == 2, 10)
    assert [e["id"] for e in sub.events()] == ["id-0"]  # once


def test_spool_outlives_the_sink(broker, collector, tmp_path: Path) -> None:
    """Alerts spooled while the broker was unreachable go out from the next sink on the same spool."""
    url = f"mqtt://{broker.host}:{broker.port}/rs"
    dead = MqttSink.from_url(f"mqtt://{broker.host}:1/rs", agent_id="a3", spool_dir=tmp_path,
                             drain_timeout=0.2)
    for i in range(3):
        dead.send(_alert(i))
    dead.close()
    spool_dirs = list(tmp_path.iterdir())
    assert len(spool_dirs) == 1
    target = tmp_path / f"127.0.0.1_{broker.port}_rs"
    spool_dirs[0].rename(target)  # the same spool, now pointed at the live broker
    sub = collector(broker, "rs/a3/alerts", client_id="c-rs", persistent=False)
    live = MqttSink.from_url(url, agent_id="a3", spool_dir=tmp_path)
    assert live.wait_delivered(10)
    assert sub.wait_for(lambda c: [e["id"] for e in c.events()] == ["id-0", "id-1", "id-2"])
    live.close()


def test_bad_urls_and_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MqttConfigError, match="mqtt://host"):
        MqttSink.from_url("mqtt:///nohost", agent_id="x", spool_dir=tmp_path)
    with pytest.raises(MqttConfigError, match="unknown MQTT options"):
        MqttSink.from_url("mqtt://h:1/p", agent_id="x", spool_dir=tmp_path, colour="red")
    with pytest.raises(MqttConfigError, match="CA file"):
        MqttSink.from_url("mqtts://h:1/p", agent_id="x", spool_dir=tmp_path, ca_file=str(tmp_path / "none.pem"))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=edgewatch-test-ca", cwd=d)
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={'127.0.0.1' if name == 'server' else 'agent'}", cwd=d)
        ext = d / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n" if name == "server" else "extendedKeyUsage=clientAuth\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name, cwd=d)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "agent", "s3cret"], check=True,
                   capture_output=True)
    return d


def test_tls_with_client_certificate_and_password(make_broker, collector, pki: Path, tmp_path: Path) -> None:
    b = make_broker([f"cafile {pki / 'ca.pem'}", f"certfile {pki / 'server.pem'}", f"keyfile {pki / 'server.key'}",
                     "require_certificate true", "allow_anonymous false", f"password_file {pki / 'passwd'}"]).start()
    tls = {"ca_certs": str(pki / "ca.pem"), "certfile": str(pki / "client.pem"), "keyfile": str(pki / "client.key")}
    sub = collector(b, "sec/#", client_id="c-tls", persistent=False, username="agent", password="s3cret", tls=tls)
    opts = dict(ca_file=str(pki / "ca.pem"), cert_file=str(pki / "client.pem"), key_file=str(pki / "client.key"))
    sink = MqttSink.from_url(f"mqtts://{b.host}:{b.port}/sec", agent_id="a4", spool_dir=tmp_path / "ok",
                             username="agent", password="s3cret", **opts)
    sink.send(_alert(7))
    assert sink.wait_delivered(10)
    assert sub.wait_for(lambda c: [e["id"] for e in c.events()] == ["id-7"])
    sink.close()
    # a wrong password is refused by the broker: the alert stays on disk, nothing is lost
    wrong = MqttSink.from_url(f"mqtts://{b.host}:{b.port}/sec", agent_id="a5", spool_dir=tmp_path / "bad",
                              username="agent", password="nope", drain_timeout=0.5, **opts)
    wrong.send(_alert(8))
    assert not wrong.wait_delivered(1.5) and not wrong.connected
    wrong.close()
    spooled = next((tmp_path / "bad").iterdir())
    assert any(json.dumps("id-8") in seg.read_text(errors="replace") for seg in spooled.glob("seg-*.log"))


def test_events_are_routed_to_their_topics() -> None:
    from edgewatch.mqtt.topics import Topics

    topics, base = Topics("plant", "a1"), "plant/a1"
    assert [topics.for_event({"event": e}) for e in ("start", "end", "drift", "drift_end", "model", "model_refused")] \
        == [f"{base}/alerts"] * 2 + [f"{base}/drift"] * 2 + [f"{base}/events"] * 2


def test_a_run_that_ends_at_once_still_delivers_its_alerts(broker, collector, tmp_path: Path) -> None:
    """End of input right after start: close() waits (drain time) for the first connect, then delivers."""
    sub = collector(broker, "quick/#", client_id="c-quick", persistent=False)
    sink = MqttSink.from_url(f"mqtt://{broker.host}:{broker.port}/quick", agent_id="q", spool_dir=tmp_path)
    for i in range(3):
        sink.send(_alert(i))
    sink.close()  # no wait before: the connection may not even be up yet
    assert sub.wait_for(lambda c: len(c.on("/alerts")) == 3, 10)
    assert [e["id"] for e in sub.events()] == ["id-0", "id-1", "id-2"]
