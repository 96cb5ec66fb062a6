"""The live page's server side: bounded rings, per-stream event streams, offline static files."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources.parsing import Measurement
from edgewatch.agent.sources import Item, Kind
from edgewatch.agent.ops.address import parse_address
from edgewatch.agent.ui.server import Ring, UiOptions
from edgewatch.errors import BadInput
from tests.conftest import live_page
from tests.modelkit import make_card, write_model

FEATURES = ["cpu", "memory", "traffic", "fan"]


@settings(max_examples=150, deadline=None)
@given(cap=st.integers(1, 20), chunks=st.lists(st.integers(0, 30), max_size=12), cursor=st.integers(0, 200))
def test_ring_returns_the_rows_after_a_cursor(cap: int, chunks: list[int], cursor: int) -> None:
    ring = Ring(cap, 2)
    rows = []
    for n in chunks:
        block = np.column_stack([np.arange(len(rows), len(rows) + n), -np.arange(len(rows), len(rows) + n)])
        ring.extend(block.astype(float))
        rows.extend(range(len(rows), len(rows) + n))
    got = ring.since(cursor)[:, 0].astype(int).tolist()
    kept = rows[max(0, len(rows) - cap):]
    assert ring.total == len(rows)
    assert got == [r for r in kept if r >= cursor]


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), (":9000", ("127.0.0.1", 9000)), ("8081", ("127.0.0.1", 8081)),
    ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:8080", ("::1", 8080)),
])
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["localhost:http", "127.0.0.1:70000", "host:"])
def test_parse_address_refuses_nonsense(text: str) -> None:
    with pytest.raises(BadInput, match="ADDR:PORT"):
        parse_address(text)


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    card = make_card(window=5, features=FEATURES, threshold=0.15, stride=1, k=1, n=2)
    return Agent(ScoringModel(write_model(tmp_path / "m.onnx", card)), [], AgentOptions(drift_every=0, agent_id="t"))


def feed(agent: Agent, streams: list[str], n: int, start: int = 0, hot: range = range(0)) -> None:
    """``n`` messages per stream, interleaved; message indices in ``hot`` are far from the model's centre."""
    items = []
    for i in range(start, start + n):
        for s in streams:
            v = [0.98] * 4 if i in hot else [0.5, 0.52, 0.48, 0.5]
            items.append(Item(Kind.MEASUREMENT, "t", Measurement(v, 100.0 + i / 20, s), 0.0))
    for lo in range(0, len(items), 64):
        agent.process(items[lo:lo + 64])


def read_events(port: int, path: str, until: int, events: list[tuple[str, dict]]) -> None:
    """Append server-sent events to ``events`` until ``until`` frames arrived (or the socket times out)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    kind = None
    try:
        while sum(k == "frame" for k, _ in events) < until:
            line = resp.fp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                events.append((kind, json.loads(line[6:])))
    finally:
        conn.close()


def test_event_stream_sends_only_the_picked_stream(agent: Agent) -> None:
    server = live_page(agent, "127.0.0.1:0")
    try:
        streams = [f"eq-{i}" for i in range(30)]
        feed(agent, streams, 40, hot=range(20, 30))
        result: list = []
        reader = threading.Thread(target=read_events, args=(server.port, "/events?stream=eq-7", 2, result))
        reader.start()
        for _ in range(200):
            if any(k == "frame" for k, _ in result):
                break
            reader.join(0.05)
        feed(agent, streams, 10, start=40)
        reader.join(20)
        assert not reader.is_alive()
        kinds = [k for k, _ in result]
        assert kinds[:2] == ["meta", "select"] and "streams" in kinds
        meta = result[0][1]
        assert meta["features"] == FEATURES and meta["threshold"] == 0.15 and meta["model"]["window"] == 5
        listed = next(d for k, d in result if k == "streams")["streams"]
        assert [s["name"] for s in listed] == streams
        frames = [d for k, d in result if k == "frame"]
        assert all(f["stream"] == "eq-7" for f in frames)
        # the backlog arrives as one coalesced frame, not one frame per message
        first = frames[0]
        assert first["q"] == list(range(40)) and len(first["v"]) == 4 and len(first["v"][0]) == 40
        assert first["w"]["q"] == list(range(4, 40))
        over = dict(zip(first["w"]["q"], first["w"]["o"]))
        assert all(over[q] == 1 for q in range(24, 30)) and all(over[q] == 0 for q in range(4, 20))
        assert len(first["episodes"]) == 1 and first["episodes"][0]["start"] >= 100 + 20 / 20
        # anomaly_score beside each raw score (1 = the threshold), and the features that started the episode
        scale = agent.runtime.scale
        assert all(o == (a > 1) for a, o in zip(first["w"]["a"], first["w"]["o"]))
        assert first["w"]["a"] == pytest.approx([scale.score(v) for v in first["w"]["s"]], rel=1e-4, abs=1e-4)
        episode = first["episodes"][0]
        assert episode["anomaly"] > 1 and {f["feature"] for f in episode["features"]} <= set(FEATURES)
        assert len(episode["features"]) == 3 and sum(f["share"] for f in episode["features"]) <= 1.0001
        assert meta["ranges"] == [None] * 4  # the test card's standard scaler records no training span
        # later frames carry only what is new
        later = [q for f in frames[1:] for q in f["q"]]
        assert later == list(range(40, 40 + len(later)))
    finally:
        server.stop()


def test_rings_bound_memory_per_stream(agent: Agent) -> None:
    server = live_page(agent, "127.0.0.1:0", UiOptions(history=100, windows=50))
    try:
        feed(agent, ["a", "b"], 1000)
        view = server.view
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/api/frame?stream=b")
        frame = json.loads(conn.getresponse().read())
        assert frame["q"] == list(range(900, 1000)) and len(frame["w"]["q"]) == 50
        conn.request("GET", "/api/streams")
        listed = json.loads(conn.getresponse().read())["streams"]
        assert [(s["name"], s["messages"]) for s in listed] == [("a", 1000), ("b", 1000)]
        assert view._traces["a"].rows.data.shape == (100, 6)
    finally:
        server.stop()


def test_streams_the_agent_drops_give_their_places_to_new_ones(agent: Agent) -> None:
    server = live_page(agent, "127.0.0.1:0", UiOptions(max_streams=2))
    try:
        feed(agent, ["a", "b", "c"], 10)
        view = server.view
        assert [s["name"] for s in view.streams()] == ["a", "b"] and view.untraced > 0  # c: no place
        assert agent.evict_idle(time.monotonic() + 10 * agent.options.stream_ttl) == 3
        assert view.streams() == []
        feed(agent, ["c"], 10, start=10)
        assert [(s["name"], s["messages"]) for s in view.streams()] == [("c", 10)]
    finally:
        server.stop()


def test_page_is_self_contained_and_served(agent: Agent) -> None:
    server = live_page(agent, "127.0.0.1:0")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        bodies = {}
        for path, ctype in [("/", "text/html"), ("/static/app.js", "text/javascript"),
                            ("/static/style.css", "text/css")]:
            conn.request("GET", path)
            resp = conn.getresponse()
            bodies[path] = resp.read().decode()
            assert resp.status == 200 and resp.getheader("Content-Type").startswith(ctype)
        for text in bodies.values():  # works offline: nothing loaded from elsewhere
            assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
            assert "import(" not in text and "@import" not in text
        assert 'src="/static/app.js"' in bodies["/"]
        for path in ("/static/../server.py", "/nothing"):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 404
    finally:
        server.stop()


def test_ui_port_in_use_is_a_clear_error(agent: Agent) -> None:
    server = live_page(agent, "127.0.0.1:0")
    try:
        from edgewatch.errors import EdgewatchError

        with pytest.raises(EdgewatchError, match="choose another --ui"):
            live_page(agent, f"127.0.0.1:{server.port}")
    finally:
        server.stop()


def test_feature_ranges_come_from_what_the_card_records_of_the_training_span() -> None:
    """training_range first, then the drift reference's 0-100 % quantiles, then a min-max scaler; else None."""
    from edgewatch.agent.watch.feature_ranges import feature_ranges
    from edgewatch.contract import DriftReference, Scaler

    ref = DriftReference(n=10, quantiles=[[0.0, 0.5, 1.0], [10.0, 20.0, 30.0], [-1.0, 0.0, 1.0], [5.0, 6.0, 7.0]],
                         mean=[0.5, 20, 0, 6], std=[0.3, 5, 0.5, 0.5])
    card = make_card(window=5, features=FEATURES, drift_reference=ref, training_range={"cpu": [0.2, 0.8]})
    assert feature_ranges(card) == [(0.2, 0.8), (10.0, 30.0), (-1.0, 1.0), (5.0, 7.0)]
    minmax = make_card(window=5, features=FEATURES, scaler=Scaler("minmax", [0.0, 1.0, 2.0, 3.0],
                                                                   [1.0, 0.5, 0.25, 0.0]))
    assert feature_ranges(minmax) == [(0.0, 1.0), (1.0, 3.0), (2.0, 6.0), None]  # scale 0: no span
    assert feature_ranges(make_card(window=5, features=FEATURES)) == [None] * 4  # a standard scaler says no span
