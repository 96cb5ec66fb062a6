"""Topics: the one spelling of the public topic layout, checked against docs/fleet.md's table."""

from __future__ import annotations

import re
from pathlib import Path

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.mqtt.topics import (ANY_AGENT, HomeAssistantTopics, SparkplugTopics, StreamIds, TopicError, TopicKind,
                                   Topics)

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


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("ab_/+#Öä. -1"), min_size=0, max_size=4), max_size=30),
       st.sampled_from(["sparkplug", "ha"]))
def test_stream_ids_are_one_per_stream_valid_and_plain_for_the_first(names: list[str], kind: str) -> None:
    """Whatever stream ids come (and go: every third is dropped after it came), no two held streams share a
    topic id, every id is one the mapping would give itself, and a stream whose plain id nobody holds gets it."""
    mapping = SparkplugTopics.device_id if kind == "sparkplug" else HomeAssistantTopics.ha_id
    ids = StreamIds(mapping, kind)
    held: dict[str, str] = {}
    for i, name in enumerate(names):
        taken = set(held.values())
        ident = ids.of(name)
        if name not in held:
            assert (ident == mapping(name)) == (mapping(name) not in taken)
        else:
            assert ident == held[name]
        assert mapping(ident) == ident
        held[name] = ident
        assert len(set(held.values())) == len(held)
        if i % 3 == 2:
            ids.release(name)
            del held[name]


def test_a_stream_named_as_the_suffixed_id_cannot_take_another_streams_place() -> None:
    """A sender that names a stream ``line_1_<8 hex of line_1>`` first still leaves ``line_1`` an id of its own."""
    ids = StreamIds(SparkplugTopics.device_id, "Sparkplug device")
    crafted = "line_1_" + hashlib.sha256(b"line_1").hexdigest()[:8]
    got = [ids.of(s) for s in (crafted, "line/1", "line_1")]
    assert got[:2] == [crafted, "line_1"] and got[2] not in got[:2] and got[2].startswith("line_1_")
