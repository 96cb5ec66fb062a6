"""MQTT over TLS against a real mosquitto with a CA made in the test: verify ok, verify fail (logged
with its reason, once), and the insecure mode of ``--mqtt-tls-insecure`` (it raised TypeError)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from edgewatch.agent.sinks.mqtt import MqttSink
from edgewatch.agent.assemble import broker_options
from edgewatch.agent.config import MqttSettings
from tests.agent.sinks.test_mqtt import _openssl

ALERT = {"event": "start", "id": "tls-1", "stream": "s", "score": 1.0, "threshold": 0.5}


EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")  # fast to make, unlike RSA


def _ca(d: Path, name: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)
    return d


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it."""
    d = _ca(tmp_path_factory.mktemp("pki"), "edgewatch-test-ca")
    _openssl("req", *EC, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=d)
    return d


@pytest.fixture
def tls_broker(make_broker, pki: Path):
    return make_broker([f"cafile {pki / 'ca.pem'}", f"certfile {pki / 'server.pem'}",
                        f"keyfile {pki / 'server.key'}"]).start()


def test_verified_tls_delivers(tls_broker, collector, pki: Path, tmp_path: Path) -> None:
    sub = collector(tls_broker, "tls/#", client_id="c-ok", persistent=False, tls={"ca_certs": str(pki / "ca.pem")})
    sink = MqttSink.from_url(f"mqtts://{tls_broker.host}:{tls_broker.port}/tls", agent_id="ok",
                             spool_dir=tmp_path, ca_file=str(pki / "ca.pem"))
    sink.send(ALERT)
    assert sink.wait_delivered(10)
    assert sub.wait_for(lambda c: [e["id"] for e in c.events()] == ["tls-1"])
    assert sink.last_error is None
    sink.close()


def test_failed_verification_is_logged_with_its_reason_once(tls_broker, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    other = _ca(tmp_path / "other", "not-the-broker-ca")
    caplog.set_level(logging.WARNING, logger="edgewatch.mqtt")
    sink = MqttSink.from_url(f"mqtts://{tls_broker.host}:{tls_broker.port}/tls", agent_id="bad",
                             spool_dir=tmp_path / "spool", ca_file=str(other / "ca.pem"), reconnect_min=0.1,
                             reconnect_max=0.2, drain_timeout=0.2)
    sink.send(ALERT)
    deadline = time.monotonic() + 10
    while sink.connection.failed_connects < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.connection.failed_connects >= 3 and not sink.connected
    assert "certificate verif" in (sink.last_error or "")
    said = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(said) == 1 and "certificate verification failed: self-signed certificate" in said[0], said
    sink.close()  # the alert stays on disk for the next start
    assert any('"tls-1"' in seg.read_text(errors="replace") for seg in (tmp_path / "spool").rglob("seg-*"))


def test_insecure_mode_from_the_cli_flags(tls_broker, collector, pki: Path, tmp_path: Path) -> None:
    sub = collector(tls_broker, "tls/#", client_id="c-insecure", persistent=False,
                    tls={"ca_certs": str(pki / "ca.pem")})
    opts = broker_options(MqttSettings(tls_insecure=True))
    sink = MqttSink.from_url(f"mqtts://{tls_broker.host}:{tls_broker.port}/tls", agent_id="insecure",
                             spool_dir=tmp_path, **opts)
    assert sink.connection.options.tls and sink.connection.options.tls_insecure
    sink.send(ALERT)
    assert sink.wait_delivered(10)
    assert sub.wait_for(lambda c: [e["id"] for e in c.events()] == ["tls-1"])
    sink.close()
