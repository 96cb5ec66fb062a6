"""The Alertmanager sink against a real Alertmanager (Debian prometheus-alertmanager) and a real agent.

An episode is listed while it is open and gone (resolved by ``endsAt``)
after it; a restarted Alertmanager (it keeps alerts in memory only) gets
the open alert back from the sink's re-sends; starts and ends made while
Alertmanager is down wait in the spool and arrive in order when it is back.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from edgewatch.agent.sinks import SinkConfigError, SinkContext, make_sink
from tests.agent.sinks.httpkit import FAULT, NORMAL, FedAgent, Receiver
from tests.agent.sinks.test_mqtt_tls import pki  # noqa: F401 - a fixture
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=4, threshold=0.5, k=2, n=3))


def _ours(am, stream: str = "pump-1") -> list[dict]:
    return [a for a in am.alerts() if a["labels"].get("alertname") == "EdgewatchEpisode"
            and a["labels"].get("stream") == stream]


def _starts(alert: dict) -> float:
    """An alert's ``startsAt`` (RFC 3339, nanoseconds and all) in seconds since the epoch."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", alert["startsAt"]).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def test_the_default_form_lists_an_open_episode_and_resolves_it(model: Path, tmp_path: Path, alertmanager) -> None:
    agent = FedAgent(model, "--sink", f"alertmanager://{alertmanager.host}:{alertmanager.port}",
                     "--agent-id", "press-7", cwd=tmp_path)
    try:
        agent.rows(NORMAL, 8)
        agent.rows(FAULT, 6)
        assert wait_until(lambda: _ours(alertmanager), 30), alertmanager.log()[-2000:]
        alert = _ours(alertmanager)[0]
        labels = alert["labels"]
        assert labels["agent"] == "press-7" and labels["model"] == "test-square" and labels["severity"] == "warning"
        assert len(labels["episode"]) == 16 and alert["status"]["state"] == "active"
        assert "a 25%" in alert["annotations"]["top_features"]  # four equal features, a quarter each
        assert float(alert["annotations"]["anomaly_score"]) > 1
        agent.rows(NORMAL, 10)
        assert wait_until(lambda: not _ours(alertmanager), 30), _ours(alertmanager)
        agent.rows(FAULT, 6)  # a second episode on the same stream is a second alert
        assert wait_until(lambda: _ours(alertmanager), 30)
        assert _ours(alertmanager)[0]["labels"]["episode"] != labels["episode"]
        code, _out, err = agent.finish()
    finally:
        agent.kill()
    assert code == 0, err[-3000:]
    assert wait_until(lambda: not _ours(alertmanager), 10)  # stopping ends the episode: endsAt sent


def test_an_alertmanager_restart_gets_the_open_alert_back(model: Path, tmp_path: Path, alertmanager) -> None:
    agent = FedAgent(model, "--sink", f"alertmanager://{alertmanager.host}:{alertmanager.port}?resend=1",
                     "--agent-id", "press-7", cwd=tmp_path)
    try:
        agent.rows(NORMAL, 8)
        agent.rows(FAULT, 6)
        assert wait_until(lambda: _ours(alertmanager), 30)
        episode = _ours(alertmanager)[0]["labels"]["episode"]
        alertmanager.restart()  # alerts live in its memory only
        assert wait_until(lambda: _ours(alertmanager), 15), "the sink did not post the open episode again"
        assert _ours(alertmanager)[0]["labels"]["episode"] == episode
        agent.rows(NORMAL, 10)
        assert wait_until(lambda: not _ours(alertmanager), 30)
        code, _out, err = agent.finish()
    finally:
        agent.kill()
    assert code == 0, err[-3000:]


def test_alerts_wait_in_the_spool_while_alertmanager_is_down(model: Path, tmp_path: Path, alertmanager) -> None:
    """Stopped Alertmanager: episode 1 opens and closes, episode 2 opens. Back: 2 is listed, 1 is not."""
    agent = FedAgent(model, "--sink", f"alertmanager://{alertmanager.host}:{alertmanager.port}?retry_min=0.2"
                     "&retry_max=1", "--agent-id", "press-7", "--summary-json", "summary.json", cwd=tmp_path)
    try:
        agent.rows(NORMAL, 8)
        alertmanager.stop()
        agent.rows(FAULT, 6)
        agent.rows(NORMAL, 10)
        between = agent.t  # episode 1 started before this row's time, episode 2 after it
        agent.rows(FAULT, 6)
        assert wait_until(lambda: list((tmp_path / "spool").glob("alertmanager-*/seg-*.log")), 30)
        alertmanager.start()
        # the spool delivers in order: start 1 (listed), end 1 (resolved), start 2 (listed from then on)
        assert wait_until(lambda: [_starts(a) > between for a in _ours(alertmanager)] == [True], 30), \
            _ours(alertmanager)
        code, _out, err = agent.finish()
    finally:
        agent.kill()
    assert code == 0, err[-3000:]
    assert "delivery failed (connection" in err  # it was down, and the sink said so
    delivery = json.loads((tmp_path / "summary.json").read_text())["delivery"]
    assert delivery["sent"] == 4 and delivery["delivered"] == 4 and delivery["waiting"] == 0


def test_posts_labels_annotations_and_times_with_options(tmp_path: Path) -> None:
    """What the sink posts, seen by a plain HTTP server in Alertmanager's place (alertmanager:// with a path)."""
    server = Receiver().start()
    sink = make_sink({"url": f"alertmanager://127.0.0.1:{server.port}/am", "alertname": "PumpAnomaly",
                      "labels": {"team": "north"}, "resend": 1, "headers": {"X-Scope-OrgID": "plant"}},
                     SinkContext(spool_dir=tmp_path))
    ep = {"start_ts": 1_800_000_000.0, "start_seq": 5, "end_ts": 1_800_000_030.0, "end_seq": 35}
    start = {"event": "start", "agent": "a", "stream": "s", "anomaly_score": 2.5, "score": 1.25, "threshold": 0.5,
             "episode": {**ep, "end_ts": None}, "model": {"family": "pca", "sha256": "ab" * 32},
             "top_features": [{"feature": "flow", "share": 0.74}, {"feature": "temp", "share": 0.2}]}
    try:
        sink.send(start)
        sink.send({"event": "drift", "stream": "s"})  # not an alert here
        assert wait_until(lambda: len(server.accepted()) >= 2, 10)  # the start, then a re-send
        sink.send({**start, "event": "end", "episode": ep})
        assert wait_until(lambda: any("endsAt" in a for b in server.accepted() for a in b), 10)
    finally:
        sink.close()
        server.stop()
    posts = server.accepted()
    assert {r["path"] for r in server.requests} == {"/am/api/v2/alerts"}
    assert server.requests[0]["headers"]["X-Scope-OrgID"] == "plant"
    first = posts[0][0]
    assert first["labels"] == {"alertname": "PumpAnomaly", "severity": "warning", "team": "north", "agent": "a",
                               "stream": "s", "model": "pca", "episode": first["labels"]["episode"]}
    assert first["annotations"]["top_features"] == "flow 74%, temp 20%"
    assert first["startsAt"] == "2027-01-15T08:00:00.000+00:00" and "endsAt" not in first
    assert posts[1] == [first]  # the re-send: the same alert
    last = posts[-1][0]
    assert last["labels"] == first["labels"] and last["endsAt"] == "2027-01-15T08:00:30.000+00:00"
    assert sink.open_alerts == 0


@pytest.mark.parametrize("url, says", [
    ("alertmanager://127.0.0.1:9093?resend=0.1", "resend"),
    ("alertmanager://127.0.0.1:9093?label=stream:x", "set by the sink"),
    ("alertmanager://127.0.0.1:9093?label=9x:y", "label name"),
    ("alertmanager://127.0.0.1:9093?resolve=5", "unknown setting"),
    ("alertmanager://", "HOST:PORT"),
])
def test_bad_settings_are_refused(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(SinkConfigError, match=says):
        make_sink(url, SinkContext(spool_dir=tmp_path))


def test_alertmanagers_posts_over_verified_tls(tmp_path: Path, pki: Path) -> None:
    """``alertmanagers://`` with ``ca_file`` delivers to an HTTPS server; without the CA the handshake fails,
    is counted as ``tls`` and retried (the alert waits in the spool)."""
    server = Receiver(pki=pki).start()
    start = {"event": "start", "agent": "a", "stream": "s", "episode": {"start_ts": 1.0, "start_seq": 1}}
    unverified = make_sink(f"alertmanagers://127.0.0.1:{server.port}?retry_min=0.1&timeout=2",
                           SinkContext(spool_dir=tmp_path / "a"))
    try:
        unverified.send(start)
        assert wait_until(lambda: unverified.sender.failures["tls"] >= 1, 10)
        assert not server.accepted() and unverified.delivery()["waiting"] == 1
    finally:
        unverified.close()
    verified = make_sink(f"alertmanagers://127.0.0.1:{server.port}?ca_file={pki / 'ca.pem'}",
                         SinkContext(spool_dir=tmp_path / "b"))
    try:
        verified.send(start)
        assert wait_until(lambda: server.accepted(), 10)
        assert server.accepted()[0][0]["labels"]["stream"] == "s" and not verified.sender.failures
    finally:
        verified.close()
        server.stop()
