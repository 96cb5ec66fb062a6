"""A real Prometheus scrapes a real agent: the shipped rule fires during an injected fault and clears after it.

Simulator (websocket, two equipments, an overload on both) → ``edgewatch
agent run`` in its README form plus ``--metrics`` (no
``--metrics-max-streams``: the default cap) → Prometheus (Debian package,
one-second scrape and rule evaluation) with ``deploy/prometheus-rules.yml``.
Every query of ``deploy/grafana-dashboard.json`` is then run on that
Prometheus. A real Alertmanager takes and lists one alert posted the way
Prometheus and the agent's sinks post them.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edgewatch.agent.model import file_sha256
from edgewatch.data.faults import FEATURES, FaultSpec
from edgewatch.data.simulator_server import ServerConfig, SimulatorServer
from tests.conftest import free_port
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
RATE = 40.0
FAULT_AT, FAULT_LENGTH = 240, 320  # messages: 6 s into the stream, for 8 s


def _firing(prom, stream: str) -> list[dict]:
    return [a for a in prom.alerts() if a["labels"].get("alertname") == "EdgewatchAnomaly"
            and a["labels"].get("stream") == stream and a["state"] == "firing"]


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets, variables, annotations."""
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in doc["annotations"]["list"] if "expr" in a]
    exprs += [v["query"]["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    return exprs


def as_prometheus_runs_it(expr: str) -> str:
    """A dashboard query with Grafana's variables filled the way "All" and a 1 h range fill them."""
    m = re.fullmatch(r"label_values\((.*), (\w+)\)", expr)
    if m:  # a variable's query: the series it reads
        expr = m.group(1)
    for var, value in (("$instance", ".*"), ("$stream", ".*"), ("$__rate_interval", "15s"), ("$__range", "1h")):
        expr = expr.replace(var, value)
    return expr


def test_the_anomaly_rule_fires_during_a_fault_and_clears_after_it(tmp_path: Path, make_prometheus) -> None:
    model = write_model(tmp_path / "square.onnx",
                        make_card(window=10, features=list(FEATURES), threshold=0.15, stride=2, k=2, n=3))
    port = free_port()
    config = ServerConfig(rate=RATE, streams=2, with_time=True, faults="schedule", seed=4,
                          schedule=(FaultSpec.at("overload", FAULT_AT, FAULT_LENGTH),))
    with SimulatorServer(config) as sim:
        agent = subprocess.Popen(
            [sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model), "--source", sim.url,
             "--metrics", f"127.0.0.1:{port}", "--agent-id", "prom-test", "-q"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            prom = make_prometheus([f"127.0.0.1:{port}"], [RULES])
            assert wait_until(lambda: prom.query('up{job="edgewatch"} == 1'), timeout=30), prom.log()[-2000:]
            # quiet before the fault, firing during it, cleared after it
            assert wait_until(lambda: prom.query('edgewatch_anomaly_score{stream="eq-0"}'), timeout=30)
            assert not _firing(prom, "eq-0"), "nominal data must not fire the rule"
            assert wait_until(lambda: _firing(prom, "eq-0"), timeout=40), prom.alerts()
            fired = _firing(prom, "eq-0")[0]
            assert float(fired["value"]) > 1 and fired["labels"]["severity"] == "warning"
            assert "anomaly on eq-0" in fired["annotations"]["summary"]
            assert wait_until(lambda: not _firing(prom, "eq-0") and not _firing(prom, "eq-1"), timeout=40), \
                prom.alerts()
            assert prom.query('edgewatch_anomaly_score{stream="eq-0"} < 1')

            # the agent's own episode, its windows and its model, as Prometheus stored them
            assert prom.query('max_over_time(edgewatch_stream_alerting{stream="eq-0"}[2m]) == 1')
            # the episode ends after the card's quiet windows, and Prometheus sees it at its next scrape
            assert wait_until(lambda: prom.query('edgewatch_stream_alerting{stream="eq-0"} == 0'), timeout=20)
            windows = prom.query('edgewatch_stream_windows_total{stream="eq-0"}')
            assert windows and float(windows[0]["value"][1]) > 100
            assert prom.query('edgewatch_stream_last_message_age_seconds{stream="eq-0"} < 5')
            info = prom.query("edgewatch_model_info")
            assert [i["metric"]["sha256"] for i in info] == [file_sha256(model)]
            assert prom.query("edgewatch_streams_aggregated == 0")  # two streams, under the default cap

            # every query of the dashboard parses and finds data here
            for expr in dashboard_queries():
                query = as_prometheus_runs_it(expr)
                result = prom.query(query)
                if "bad_messages" not in query and "changes(" not in query:  # no bad input, no new episode now
                    assert result, f"dashboard query {expr!r} ({query!r}) found nothing"
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
    assert agent.returncode == 0, agent.stderr.read()[-3000:]
    events = [json.loads(line) for line in agent.stdout.read().splitlines()]
    starts = [e for e in events if e["event"] == "start" and e["stream"] == "eq-0"]
    assert starts and starts[0]["anomaly_score"] > 1


def test_the_shipped_rules_pass_promtool() -> None:
    promtool = Path("/usr/bin/promtool")
    if not promtool.exists():
        pytest.skip("promtool (Debian package prometheus) is not installed")
    proc = subprocess.run([str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "SUCCESS: 4 rules found" in proc.stdout, proc.stdout + proc.stderr


def test_alertmanager_takes_an_alert_and_lists_it(alertmanager) -> None:
    now = datetime.now(timezone.utc)
    alert = {"labels": {"alertname": "EdgewatchAnomaly", "agent": "am-test", "stream": "pump-1"},
             "annotations": {"top_features": "flow 81%"},
             "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()}
    alertmanager.post([alert])
    listed = [a for a in alertmanager.alerts() if a["labels"].get("agent") == "am-test"]
    assert len(listed) == 1 and listed[0]["labels"]["stream"] == "pump-1"
    assert listed[0]["annotations"]["top_features"] == "flow 81%" and listed[0]["status"]["state"] == "active"
    # resolved by an endsAt in the past: it leaves the list of alerts
    alertmanager.post([{**alert, "endsAt": now.isoformat()}])
    assert wait_until(lambda: not [a for a in alertmanager.alerts() if a["labels"].get("agent") == "am-test"],
                      timeout=10)
    # the same port after a restart; alerts live in memory, a sender must post again
    alertmanager.restart()
    assert alertmanager.alerts() == []
    alertmanager.post([{**alert, "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}])
    assert [a["labels"]["stream"] for a in alertmanager.alerts()] == ["pump-1"]


def _exported_names(text: str) -> set[str]:
    """Sample and family names of a /metrics text (families with no sample yet still have # TYPE lines)."""
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M)) | set(re.findall(r"^([a-zA-Z_:][\w:]*)[{ ]", text, re.M))
    counters = set(re.findall(r"^# TYPE (\S+) counter", text, re.M))
    return names | {f"{c}_total" for c in counters}


def test_the_dashboard_reads_only_series_the_agent_exports(tmp_path: Path) -> None:
    """Names from the metrics tables and from a live scrape of an agent with --metrics agree with the dashboard."""
    import urllib.request

    from edgewatch.agent.engine import Agent, AgentOptions
    from edgewatch.agent.ops.metrics import METRICS, STREAM_SERIES, AgentMetrics, MetricKind
    from edgewatch.agent.model import ScoringModel
    from edgewatch.agent.ops.server import OpsServer
    from edgewatch.agent.sources.parsing import Measurement
    from edgewatch.agent.sources import Item, Kind

    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["schemaVersion"] >= 36
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)) and all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in doc["panels"])
    assert all(p["datasource"]["uid"] == "${datasource}" for p in doc["panels"])
    used = {n for expr in dashboard_queries() for n in re.findall(r"\bedgewatch_\w+", expr)}
    assert {"edgewatch_anomaly_score", "edgewatch_stream_alerting", "edgewatch_stream_last_message_age_seconds",
            "edgewatch_stream_windows_total", "edgewatch_bad_messages_total", "edgewatch_spool_depth",
            "edgewatch_model_info"} <= used

    table = {s.name + ("_total" if s.kind is MetricKind.COUNTER else "")
             for s in [*METRICS.values(), *STREAM_SERIES.values()]}
    assert used <= table, sorted(used - table)
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=3)))
    agent = Agent(model, [], AgentOptions(drift_every=0), metrics=AgentMetrics(exported=True))
    ops = OpsServer(agent, "127.0.0.1:0")
    try:
        agent.process([Item(Kind.MEASUREMENT, "t", Measurement([0.5] * 4, 1000.0 + i, "s"), 1000.0 + i)
                       for i in range(5)])
        text = urllib.request.urlopen(ops.url + "/metrics", timeout=10).read().decode()
    finally:
        ops.close()
    assert used <= _exported_names(text), sorted(used - _exported_names(text))
