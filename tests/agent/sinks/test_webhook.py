"""The webhook sink against a local HTTP server: retries through the spool, order, headers, token file, 4xx parked.

The server in the test answers what the test scripts (500, then a reply
slower than the sink's timeout, then 200), so every path of a delivery runs
over a real socket; the default form (``--sink http://...`` alone) and a
``[[sink]]`` table in a config file run the real agent.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgewatch.agent.ops.metrics import AgentMetrics
from edgewatch.agent.sinks import SinkConfigError, SinkContext, make_sink
from tests.agent.sinks.httpkit import FAULT, NORMAL, FedAgent, Receiver
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=4, threshold=0.5, k=2, n=3))


def _event(i: int) -> dict:
    return {"event": "start", "id": f"id-{i}", "stream": "s", "score": 1.0 + i}


def _failures(metrics: AgentMetrics, status: str) -> float:
    return metrics.sink_http_failures.labels("webhook", status)._value.get()


def test_500_then_a_timeout_then_200_delivers_all_in_order_with_the_headers(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    answers = {0: 500, 1: ("sleep", 1.5)}
    server = Receiver(lambda n, body: answers.get(n, 200)).start()
    metrics = AgentMetrics()
    context = SinkContext(agent_id="a1", spool_dir=tmp_path / "spool", metrics=metrics)
    sink = make_sink(f"{server.url}/hook?team=north&header=X-Plant:north&header=X-Line:7&token_file={token}"
                     "&timeout=0.5&retry_min=0.05&retry_max=0.2", context)
    try:
        for i in range(6):
            sink.send(_event(i))
        assert wait_until(lambda: sink.delivery()["waiting"] == 0, 30), server.requests
        assert wait_until(lambda: server.requests[1]["status"] is not None, 10)  # the slow answer, given up on
        ids = [b["id"] for b in server.accepted()]
        assert list(dict.fromkeys(ids)) == [f"id-{i}" for i in range(6)]  # all, in order
        assert len(ids) <= 7  # at least once: the slow answer's copy may count twice, nothing more
        assert [r["status"] for r in server.requests[:2]] == [500, 200]  # the second answered after the timeout
        first = server.requests[0]
        assert first["path"] == "/hook?team=north"  # edgewatch's keys taken out, the receiver's kept
        headers = {k.lower(): v for k, v in first["headers"].items()}
        assert headers["x-plant"] == "north" and headers["x-line"] == "7"
        assert headers["authorization"] == "Bearer s3cret-token"
        assert headers["content-type"] == "application/json"
        assert _failures(metrics, "500") == 1 and _failures(metrics, "timeout") == 1
        assert sink.sender.failures == {"500": 1, "timeout": 1}
    finally:
        sink.close()
        server.stop()
    assert sink.delivery()["delivered"] == 6 and sink.delivery()["sent"] == 6


def test_a_rotated_token_file_is_used_at_the_next_post(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first")
    server = Receiver().start()
    sink = make_sink(f"{server.url}/?token_file={token}", SinkContext(spool_dir=tmp_path / "spool"))
    try:
        sink.send(_event(0))
        assert wait_until(lambda: len(server.accepted()) == 1, 10)
        token.write_text("second")
        sink.send(_event(1))
        assert wait_until(lambda: len(server.accepted()) == 2, 10)
        assert [r["headers"]["Authorization"] for r in server.requests] == ["Bearer first", "Bearer second"]
    finally:
        sink.close()
        server.stop()


def test_a_4xx_is_parked_not_retried_and_the_next_event_goes(tmp_path: Path) -> None:
    server = Receiver(lambda n, body: 422 if body["id"] == "id-1" else 200).start()
    metrics = AgentMetrics()
    sink = make_sink(f"{server.url}/x?retry_min=0.05", SinkContext(spool_dir=tmp_path / "spool", metrics=metrics))
    try:
        for i in range(3):
            sink.send(_event(i))
        assert wait_until(lambda: sink.delivery()["waiting"] == 0, 20)
        assert [b["id"] for b in server.accepted()] == ["id-0", "id-2"]
        assert [r["body"]["id"] for r in server.requests] == ["id-0", "id-1", "id-2"]  # tried once
        rejected = [json.loads(line) for line in sink.sender.rejected.read_text().splitlines()]
        assert [(r["status"], json.loads(r["record"])["id"]) for r in rejected] == [("422", "id-1")]
        assert metrics.sink_parked.labels("webhook")._value.get() == 1 and _failures(metrics, "422") == 1
        assert sink.delivery()["parked"] == 1
    finally:
        sink.close()
        server.stop()


def test_a_429_is_retried(tmp_path: Path) -> None:
    server = Receiver(lambda n, body: 429 if n < 2 else 200).start()
    sink = make_sink(f"{server.url}/x?retry_min=0.05&retry_max=0.1", SinkContext(spool_dir=tmp_path / "spool"))
    try:
        sink.send(_event(0))
        assert wait_until(lambda: server.accepted(), 10)
        assert [r["status"] for r in server.requests] == [429, 429, 200]
        assert sink.sender.failures == {"429": 2} and sink.delivery()["parked"] == 0
    finally:
        sink.close()
        server.stop()


def test_a_receiver_that_is_down_gets_the_spool_in_order_after_an_agent_restart(tmp_path: Path) -> None:
    server = Receiver()  # not started: connection refused
    context = SinkContext(spool_dir=tmp_path / "spool")
    url = f"{server.url}/hook?retry_min=0.05&retry_max=0.2&timeout=1"
    sink = make_sink(url, context)
    for i in range(5):
        sink.send(_event(i))
    assert wait_until(lambda: sink.sender.failures["connection"] >= 2, 10)
    assert sink.not_ready_reason() is None  # failing for less than UNDELIVERABLE_AFTER
    sink.close()
    assert sink.delivery()["waiting"] == 5  # on disk for the next start
    server.start()
    again = make_sink(url, context)
    try:
        again.send(_event(5))
        assert wait_until(lambda: again.delivery()["waiting"] == 0, 20)
        assert [b["id"] for b in server.accepted()] == [f"id-{i}" for i in range(6)]
    finally:
        again.close()
        server.stop()


@pytest.mark.parametrize("url, says", [
    ("http://127.0.0.1:1/x?token=abc", "token_file"),
    ("http://127.0.0.1:1/x?timeout=soon", "timeout"),
    ("http://127.0.0.1:1/x?header=NoColon", "Name:Value"),
    ("http://127.0.0.1:1/x?token_file=/nonexistent/token", "/nonexistent/token"),
    ("http:///x", "host"),
    ("http://u:secret@127.0.0.1:80a/x", r"sink http://127\.0\.0\.1:80a/x: the port after '127.0.0.1' must be a number"),
    ("alertmanager://127.0.0.1:9o93", "port after '127.0.0.1' must be a number"),
    ("sparkplug://127.0.0.1:99999/plant1/press-7", "port after '127.0.0.1' must be a number"),
])
def test_bad_settings_are_refused_with_what_to_do(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(SinkConfigError, match=says):
        make_sink(url, SinkContext(spool_dir=tmp_path))


def test_unknown_table_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match="unknown setting.*retries"):
        make_sink({"url": "http://127.0.0.1:1/x", "retries": 3}, SinkContext(spool_dir=tmp_path))


def _episode(agent: FedAgent) -> None:
    agent.rows(NORMAL, 8)
    agent.rows(FAULT, 6)
    agent.rows(NORMAL, 10)


def test_the_default_form_posts_each_event(model: Path, tmp_path: Path) -> None:
    server = Receiver().start()
    agent = FedAgent(model, "--sink", f"{server.url}/edgewatch", "--agent-id", "press-7", cwd=tmp_path)
    try:
        _episode(agent)
        code, _out, err = agent.finish()
    finally:
        agent.kill()
        server.stop()
    assert code == 0, err[-3000:]
    events = server.accepted()
    assert [e["event"] for e in events] == ["start", "end"], err[-2000:]
    assert {e["agent"] for e in events} == {"press-7"} and events[0]["anomaly_score"] > 1
    assert events[0]["id"] != events[1]["id"] and server.requests[0]["path"] == "/edgewatch"
    assert list((tmp_path / "spool").glob("webhook-127.0.0.1_*"))  # its own spool under the default --spool-dir


def test_a_sink_table_in_the_config_file(model: Path, tmp_path: Path) -> None:
    server = Receiver().start()
    (tmp_path / "token").write_text("from-a-file")
    config = tmp_path / "agent.toml"
    config.write_text(f"""
agent-id = "press-8"

[[sink]]
url = "{server.url}/hook"
token_file = "{tmp_path / 'token'}"
timeout = 5
headers = {{ X-Plant = "north" }}
""")
    agent = FedAgent(model, "--config", str(config), cwd=tmp_path)
    try:
        _episode(agent)
        code, _out, err = agent.finish()
    finally:
        agent.kill()
        server.stop()
    assert code == 0, err[-3000:]
    assert [e["event"] for e in server.accepted()] == ["start", "end"]
    headers = server.requests[0]["headers"]
    assert headers["X-Plant"] == "north" and headers["Authorization"] == "Bearer from-a-file"


def test_new_events_do_not_cut_a_backoff_short(tmp_path: Path) -> None:
    """A receiver that is down gets one try per backoff, not one per new alert."""
    sink = make_sink(f"http://127.0.0.1:{Receiver().port}/x?retry_min=1&retry_max=1",
                     SinkContext(spool_dir=tmp_path))
    try:
        sink.send(_event(0))
        assert wait_until(lambda: sink.sender.failures["connection"] == 1, 10)
        for i in range(1, 30):
            sink.send(_event(i))
            time.sleep(0.02)
        assert sink.sender.failures["connection"] <= 2  # 0.6 s of alerts inside a 0.8-1 s backoff
    finally:
        sink.close()
    assert sink.delivery()["waiting"] == 30


def test_metrics_show_the_waiting_alerts_and_the_failures_by_status(model: Path, tmp_path: Path) -> None:
    import urllib.request

    from tests.conftest import free_port

    port = free_port()
    down = Receiver()  # never started: connection refused
    agent = FedAgent(model, "--sink", f"{down.url}/hook", "--metrics", f"127.0.0.1:{port}", cwd=tmp_path)

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""

    try:
        _episode(agent)
        assert wait_until(lambda: "edgewatch_spool_depth 2.0" in scrape(), 30), scrape()[-3000:]
        text = scrape()
        assert 'edgewatch_sink_http_failures_total{sink="webhook",status="connection"}' in text
    finally:
        agent.kill()


def test_the_run_summary_counts_a_parked_event_and_names_no_mqtt(model: Path, tmp_path: Path) -> None:
    """A webhook-only agent's summary: the receiver's 400 shows as parked (it said "MQTT events: sent 3,
    delivered 2" with the parked one nowhere)."""
    server = Receiver(lambda n, body: 400 if n == 0 else 200).start()
    agent = FedAgent(model, "--sink", f"{server.url}/hook?retry_min=0.05", cwd=tmp_path)
    try:
        agent.rows(NORMAL, 6)
        agent.rows(FAULT, 4)
        agent.rows(NORMAL, 8)
        code, _out, err = agent.finish()
    finally:
        agent.kill()
        server.stop()
    assert code == 0, err[-3000:]
    assert [r["status"] for r in server.requests] == [400, 200]  # the start parked, the end delivered
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("events through the spool ("), summary
    assert "sent 2, delivered 1, parked (refused by the receiver) 1, dropped 0" in summary, summary
