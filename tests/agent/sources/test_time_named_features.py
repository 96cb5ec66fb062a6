"""A feature named like a time key (t, time, ts, timestamp) is that feature, not the message's time.

A keyed object ``{"t": 21.5, "p": 3.1}`` for a model whose features are t
and p used to give the row the time 21.5 s after 1970: the value was taken
as the feature and as the time, the stream's clock went back decades, and
a t that moves up and down made rows out of order. The model's own names
are what its messages are keyed by (docs/sources.md). Real parts: the
installed command on stdin (the README's form) and mosquitto.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sinks import MemorySink
from edgewatch.agent.sources import make_source
from tests.agent.sources.test_mqtt import running_with
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

TIME_NAMED = ["t", "time", "ts", "timestamp"]


def _lines(rng: np.random.Generator, normal: int, fault: int, extra: dict | None = None) -> list[dict]:
    """Keyed objects of the four time-named features: normal values that move up and down, then a fault."""
    out = [{name: round(float(v), 4) for name, v in zip(TIME_NAMED, rng.uniform(0.4, 0.6, 4))} for _ in range(normal)]
    out += [{name: 3.0 for name in TIME_NAMED} for _ in range(fault)]
    return [{**o, **(extra or {})} for o in out]


def _through_stdin(tmp_path: Path, model: Path, rows: list[dict]) -> list[dict]:
    """``rows`` as JSON lines to ``agent run --source stdin`` (the README's form): every row read, every window scored
    (checked here), and its one ``start`` event returned."""
    summary = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "edgewatch.cli", "agent", "run", "--model", str(model),
                           "--source", "stdin", "--summary-json", str(summary)],
                          input="".join(json.dumps(r) + "\n" for r in rows), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(summary.read_text())
    assert s["bad"] == {} and s["windows"] == len(rows) - 5 + 1, s
    starts = [json.loads(line) for line in proc.stdout.splitlines() if '"start"' in line]
    assert len(starts) == 1, proc.stdout
    return starts


def _year(iso: str) -> int:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).year


@pytest.mark.parametrize("with_ts", [False, True], ids=["no-other-time", "feature-t-beside-ts"])
def test_stdin_default_form_reads_time_named_features_as_features(tmp_path: Path, with_ts: bool) -> None:
    features = TIME_NAMED if not with_ts else ["t", "time", "timestamp", "p"]
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5, features=features))
    rng = np.random.default_rng(4)
    if with_ts:  # ts is no feature of this model: it stays the time, and t is a feature beside it
        rows = [{"t": round(float(v), 4), "time": 0.5, "timestamp": 0.5, "p": 0.5, "ts": 1_700_000_000 + i}
                for i, v in enumerate(rng.uniform(0.4, 0.6, 30))]
        rows += [{"t": 3.0, "time": 3.0, "timestamp": 3.0, "p": 3.0, "ts": 1_700_000_030 + i} for i in range(6)]
    else:
        rows = _lines(rng, 30, 6)
    starts = _through_stdin(tmp_path, model, rows)
    if with_ts:
        assert starts[0]["time"].startswith("2023-11-14"), starts[0]  # the ts key's time
    else:
        assert _year(starts[0]["time"]) >= 2026, starts[0]  # received now, not 1970


def _through_mqtt(tmp_path: Path, broker, features: list[str], agent_id: str,  # noqa: ANN001
                  messages: list[tuple[str, object]]) -> tuple[Agent, MemorySink]:
    """``messages`` (topic, JSON) published to mosquitto, read by an agent on ``plant/+`` with these features."""
    sink = MemorySink()
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5, features=features)))
    agent = Agent(model, [sink], AgentOptions(drift_every=0, agent_id=agent_id))
    src = make_source(f"mqtt://{broker.host}:{broker.port}/plant/+", features, agent_id=agent_id)
    with running_with(agent, broker, src) as pub:
        for topic, body in messages:
            pub.send(topic, json.dumps(body))
        assert wait_until(lambda: agent.summary.messages == len(messages))
    return agent, sink


def test_mqtt_json_reads_time_named_features_as_features(tmp_path: Path, broker) -> None:
    rows = _lines(np.random.default_rng(8), 30, 6)
    agent, sink = _through_mqtt(tmp_path, broker, TIME_NAMED, "tnamed", [("plant/press-1", r) for r in rows])
    assert agent.summary.bad == {} and agent.summary.windows == len(rows) - 5 + 1, agent.summary.bad
    starts = [e for e in sink.events if e["event"] == "start"]
    assert len(starts) == 1 and _year(starts[0]["time"]) >= 2026, starts
    assert abs(starts[0]["ts"] - time.time()) < 3600  # its clock is the arrival's, not 21 s after 1970


VALUE_NAMED = ["v", "value", "values", "i"]  # a voltage, a valve position, ...: names the values form also uses


def _value_lines(rng: np.random.Generator, normal: int, fault: int) -> list[dict]:
    out = [{name: round(float(x), 4) for name, x in zip(VALUE_NAMED, rng.uniform(0.4, 0.6, 4))} for _ in range(normal)]
    return out + [{name: 3.0 for name in VALUE_NAMED} for _ in range(fault)]


def test_stdin_default_form_reads_value_named_features_as_features(tmp_path: Path) -> None:
    """``{"v": 0.5, "value": 0.5, "values": 0.5, "i": 0.5}`` for a model of those four features is the object keyed
    by them; read as the values form (one value for four features) every line was refused ``wrong_arity``."""
    model = write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.5, features=VALUE_NAMED))
    _through_stdin(tmp_path, model, _value_lines(np.random.default_rng(5), 30, 6))


def test_mqtt_json_reads_value_named_features_as_features(tmp_path: Path, broker) -> None:
    rows = _value_lines(np.random.default_rng(9), 30, 6)
    messages = [("plant/press-1", r) for r in rows] + [("plant/press-2", [0.5, 0.5, 0.5, 0.5])]  # still a row
    agent, sink = _through_mqtt(tmp_path, broker, VALUE_NAMED, "vnamed", messages)
    assert agent.summary.bad == {} and agent.summary.windows == len(rows) - 5 + 1, agent.summary.bad
    assert len([e for e in sink.events if e["event"] == "start"]) == 1, sink.events
