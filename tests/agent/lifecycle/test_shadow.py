"""A shadow model started during a fault: the live model's episode already open counts as the shadow's does.

Before: the shadow scorer counted live episodes only from the ``start``
events it saw, so a model published with ``--shadow`` while a fault was in
progress read "live 0, shadow 1; 1 differ", and ``--promote-if
alerts_differ<=N`` was stricter than meant. Here a real agent scores a
replay whose fault is under way when the shadow model arrives on the model
topic of a real mosquitto.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.lifecycle.accept import Gate
from edgewatch.agent.lifecycle.receiver import MqttModelReceiver
from edgewatch.agent.lifecycle.shadow import format_report
from edgewatch.agent.lifecycle.signing import TrustPolicy
from edgewatch.agent.lifecycle.store import ModelStore
from edgewatch.agent.model import ScoringModel, file_sha256
from edgewatch.agent.sinks.mqtt import MqttSink
from edgewatch.agent.sources import ReplaySource
from edgewatch.mqtt import payloads
from tests.modelkit import make_card, write_model
from tests.waiting import wait_until

FEATURES = ["a", "b", "c", "d"]
RATE = 400  # rows a second: the fault lasts 6 s, the shadow arrives well inside it


def _fault_replay(tmp: Path) -> Path:
    """40 nominal rows (score 0), 2400 fault rows (score 0.16, over 0.1), 200 nominal rows."""
    p = tmp / "fault.csv"
    p.write_text("a,b,c,d\n" + "0.5,0.5,0.5,0.5\n" * 40 + "0.9,0.9,0.9,0.9\n" * 2400 + "0.5,0.5,0.5,0.5\n" * 200)
    return p


@pytest.mark.parametrize("promote_if", [None, "alerts_differ<=0,after=0s"], ids=["default", "promote-if"])
def test_a_fault_in_progress_when_the_shadow_starts_is_one_episode_of_each(tmp_path: Path, broker,
                                                                          promote_if: str | None) -> None:
    live = write_model(tmp_path / "live.onnx", make_card(window=5, threshold=0.1))
    twin = write_model(tmp_path / "twin.onnx", make_card(window=5, threshold=0.12))  # same graph, another file
    agent_id = f"sh{os.getpid()}"
    sink = MqttSink.from_url(f"mqtt://{broker.host}:{broker.port}/shadow{os.getpid()}", agent_id=agent_id,
                             spool_dir=tmp_path / "sp")
    agent = Agent(ScoringModel(live), [sink], AgentOptions(stride=1, drift_every=0, agent_id=agent_id))
    events: list[dict] = []
    agent.subscribe(on_event=events.append)
    src = ReplaySource(_fault_replay(tmp_path), FEATURES, rate=RATE)
    agent.add_source(src)
    receiver = MqttModelReceiver(agent, sink.connection, sink.topics, Gate.for_agent(
        agent, TrustPolicy(allow_unsigned_remote=True), ModelStore(tmp_path / "models")))
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        assert wait_until(lambda: any(e["event"] == "start" for e in events), 20), "the live model saw no fault"
        assert receiver.handle(payloads.install_message(twin, shadow=True, promote_if=promote_if).to_payload())
        assert wait_until(lambda: agent.shadow is not None and agent.shadow.shadow.opened == 1, 20)
        scorer = agent.shadow
        during = scorer.report(agent.model.sha256)
        assert src.rows_sent < 2440, "the fault was over before the shadow scored: the test proves nothing"
        runner.join(60)
    finally:
        receiver.close()
        agent.request_stop()
        runner.join(20)
    assert not runner.is_alive()
    # the fault was in progress: the live episode began before the shadow existed
    assert [e["event"] for e in events if e["event"] in ("start", "end")] == ["start", "end"]
    live_start = next(e for e in events if e["event"] == "start")
    shadow_event = next(e for e in events if e["event"] == "model_shadow")
    assert events.index(live_start) < events.index(shadow_event)
    assert during["live"]["episodes"] == 1 and during["live"]["open_at_start"] == 1
    assert during["shadow"]["episodes"] == 1 and during["alerts_differ"] == 0, during
    after = scorer.report(file_sha256(live))  # the fault ended while both scored: both episodes closed
    assert after["live"]["episodes"] == 1 and after["shadow"]["episodes"] == 1
    assert after["alerts_differ"] == 0 and after["only_live"] == after["only_shadow"] == [], after
    assert scorer.live.items[0]["start_ts"] == live_start["ts"] and scorer.live.items[0]["end_ts"] is not None
    assert scorer.shadow.items[0]["end_ts"] is not None
    assert "episodes: live 1 (1 open when the shadow began), shadow 1; 0 differ" in format_report(after)
    if promote_if is None:
        assert "promote_if" not in after
    else:
        assert after["promote_if"]["holds"] is True, after["promote_if"]
