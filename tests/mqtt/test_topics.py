"""Topics: the one spelling of the public topic layout, checked against docs/fleet.md's table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgewatch.mqtt.topics import ANY_AGENT, TopicError, TopicKind, Topics

FLEET_DOC = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"


def test_the_layout_is_the_documented_table() -> None:
    documented = re.findall(r"^\| `PREFIX/AGENT/(\w+)` \|", FLEET_DOC.read_text(), flags=re.M)
    assert sorted(documented) == sorted(k.value for k in TopicKind)
    t = Topics("plant1", "press-7")
    assert [t.topic(k) for k in documented] == [f"plant1/press-7/{k}" for k in documented]
    assert (t.status, t.alerts, t.drift, t.events, t.model, t.command, t.shadow) == tuple(
        f"plant1/press-7/{k}" for k in ("status", "alerts", "drift", "events", "model", "command", "shadow"))


@pytest.mark.parametrize("prefix, base", [("plant1", "plant1/press-7"), ("/a/b/", "a/b/press-7"), ("", "press-7")])
def test_prefix_slashes_and_an_empty_prefix(prefix: str, base: str) -> None:
    t = Topics(prefix, "press-7")
    assert t.base == base and t.status == f"{base}/status"
    assert t == Topics(prefix.strip("/"), "press-7")
    assert Topics.every_agent(prefix).agent_of(t.alerts) == "press-7"


def test_events_go_where_the_sink_sends_them() -> None:
    t = Topics("plant1", "press-7")
    for kind, topic in [("start", t.alerts), ("end", t.alerts), ("drift", t.drift), ("drift_end", t.drift),
                        ("model_swapped", t.events), ("model_refused", t.events), (None, t.events)]:
        event = {"event": kind}
        assert t.for_event(event) == topic


def test_the_operator_side_reads_and_writes_the_same_names() -> None:
    every = Topics.every_agent("plant1")
    assert every.status == "plant1/+/status" and every.agent_id == ANY_AGENT
    assert Topics("/plant1/", "press-7").model == "plant1/press-7/model"
    assert Topics("p", "a").command == "p/a/command"
    for name in ("plant1/press-7", "plant1/press-7/x/status", "other/press-7/status", "plant1//status"):
        assert every.agent_of(name) is None
    assert every.agent_of("plant1/press-7/status") == "press-7" and every.agent_of("plant1/press-7") is None


@pytest.mark.parametrize("prefix, agent, why", [
    ("plant1", "a/b", "holds /"), ("plant1", "a+", r"holds \+"), ("plant1", "#", "holds #"),
    ("plant1", "", "it is empty"), ("plant/+", "a", "wildcard"), ("plant/#", "a", "wildcard"),
])
def test_names_that_cannot_be_topics_are_refused(prefix: str, agent: str, why: str) -> None:
    with pytest.raises(TopicError, match=why):
        Topics(prefix, agent)
