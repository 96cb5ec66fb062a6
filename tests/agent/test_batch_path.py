"""The agent's column-wise path for a clean drained batch gives what the message-by-message path gives.

A batch of clean JSON messages of held streams is windowed in bulk
(``StreamWindows.push_many``) and decided once (``EpisodeTracker.update_many``);
every other batch goes message by message. Each piece is checked against
the form it replaces, and the whole agent's events and state either way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.episodes import EpisodeTracker
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sinks import MemorySink
from edgewatch.agent.sources import Item, Kind
from edgewatch.agent.windows import StreamWindows, group_by_slot
from tests.modelkit import make_card, write_model

F = 4


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4),
       st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=30), min_size=1, max_size=6))
def test_push_many_equals_push_one_by_one(window: int, stride: int, batches: list[list[int]]) -> None:
    bulk, single = StreamWindows(window, 2, stride, capacity=5), StreamWindows(window, 2, stride, capacity=5)
    value = 0.0
    for slots in batches:
        rows = np.arange(value, value + 2 * len(slots), dtype=np.float64).reshape(-1, 2)
        value += 2 * len(slots)
        due, x = bulk.push_many(rows, group_by_slot(np.array(slots)))
        want_due, want_x = [], []
        for i, (slot, row) in enumerate(zip(slots, rows)):
            if single.push(slot, row.tolist()):
                want_due.append(i)
                want_x.append(single.latest(slot).copy())
        assert due.tolist() == want_due
        np.testing.assert_array_equal(x, np.array(want_x, dtype=np.float32).reshape(-1, window, 2))
        assert bulk.count == single.count
        for slot in range(5):
            np.testing.assert_array_equal(bulk.latest(slot), single.latest(slot))


@pytest.mark.parametrize("features", [1, 7])
def test_push_many_moves_whole_rows_of_any_width(features: int) -> None:
    """push_many writes each row as one item of the row's width; rows of 1 and 7 values land as push puts them."""
    rng = np.random.default_rng(features)
    bulk, single = StreamWindows(5, features, 2, capacity=3), StreamWindows(5, features, 2, capacity=3)
    for _ in range(6):
        slots = rng.integers(0, 3, size=int(rng.integers(1, 20)))
        rows = rng.normal(size=(slots.size, features))
        due, x = bulk.push_many(rows, group_by_slot(slots))
        want = [single.latest(int(s)).copy() for s, row in zip(slots, rows) if single.push(int(s), row)]
        assert len(due) == len(want) and x.shape == (len(want), 5, features)
        np.testing.assert_array_equal(x, np.array(want, dtype=np.float32).reshape(x.shape))
        for slot in range(3):
            np.testing.assert_array_equal(bulk.latest(slot), single.latest(slot))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=60), st.integers(1, 3),
       st.integers(1, 3))
def test_update_many_equals_update_one_by_one(windows, k: int, extra: int) -> None:
    n = k + extra - 1
    bulk, single = EpisodeTracker(k=k, n=n), EpisodeTracker(k=k, n=n)
    slots = [s for s, _ in windows]
    over = [o for _, o in windows]
    scores = [float(i) if o else 0.0 for i, (_, o) in enumerate(windows)]
    got = list(bulk.update_many(slots, over, scores, [float(i) for i in range(len(windows))], list(range(len(windows)))))
    want = [(i, t) for i, (s, o) in enumerate(windows) if (t := single.update(s, o, scores[i], float(i), i))]
    assert [(i, t.kind, t.slot, t.episode) for i, t in got] == [(i, t.kind, t.slot, t.episode) for i, t in want]
    assert sorted(bulk.open_slots()) == sorted(single.open_slots())


def _run(model: ScoringModel, batches: list[list[Item]], per_message: bool) -> tuple[Agent, list[dict]]:
    sink = MemorySink()
    agent = Agent(model, [sink], AgentOptions(agent_id="t", stride=2, drift_every=0))
    for batch in batches:
        # a reset of no stream changes nothing, and sends the batch the message-by-message way
        agent.process(([Item(Kind.RESET, "nobody", (), 0.0)] if per_message else []) + batch)
    agent.close_episodes("end of test")
    keep = ("event", "stream", "seq", "ts", "score", "anomaly_score", "top_features", "reason")
    return agent, [{k: e.get(k) for k in keep} | {"episode": {k: v for k, v in (e.get("episode") or {}).items()
                                                            if k != "closed_at"}} for e in sink.events]


@pytest.mark.parametrize("form", ["objects", "arrays"])
def test_the_agent_decides_the_same_either_way(tmp_path: Path, form: str) -> None:
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=5, threshold=0.3, k=2, n=3)))
    rng = np.random.default_rng(3)
    batches: list[list[Item]] = []
    t = 1000.0
    for b in range(12):
        batch = []
        for i in range(int(rng.integers(1, 120))):
            s = int(rng.integers(0, 6))
            row = np.full(F, 0.5) + rng.normal(0, 0.05, F)
            if 3 <= b <= 6 and s in (1, 4):
                row[0] += 1.5  # a fault on two streams: episodes open and close
            values = [round(float(v), 5) for v in row]
            text = json.dumps({"stream": f"eq-{s}", "values": values}) if form == "objects" else json.dumps(values)
            batch.append(Item(Kind.RAW, f"eq-{s}" if form == "arrays" else "gw", text, t))
            t += 0.01
        if b == 8:
            batch.insert(len(batch) // 2, Item(Kind.RAW, "gw", "[0.5, oops]", t))  # one bad message
        batches.append(batch)
    fast, fast_events = _run(model, batches, per_message=False)
    slow, slow_events = _run(model, batches, per_message=True)
    assert fast_events == slow_events
    assert sum(e["event"] == "start" for e in fast_events) >= 2
    for attr in ("messages", "windows", "bad"):
        assert getattr(fast.summary, attr) == getattr(slow.summary, attr)
    assert fast.summary.bad == {"not_json": 1}
    assert fast.table.seq == slow.table.seq and fast.table.last_ts == slow.table.last_ts
    assert fast.table.names == slow.table.names
    for slot in range(len(fast.table.names)):
        np.testing.assert_array_equal(fast.windows.latest(slot), slow.windows.latest(slot))


@pytest.mark.parametrize("per_message", [False, True])
def test_an_episode_that_starts_and_ends_in_one_batch_is_sent_as_it_was_at_each_step(tmp_path: Path,
                                                                                      per_message: bool) -> None:
    """The start event is built before the windows after it are counted: no end, the peak so far."""
    model = ScoringModel(write_model(tmp_path / "m.onnx", make_card(window=3, threshold=0.3, k=2, n=3)))
    rows = [[0.5] * F] * 10 + [[2.5, 0.5, 0.5, 0.5]] * 6 + [[4.5, 0.5, 0.5, 0.5]] * 3 + [[0.5] * F] * 12
    items = [Item(Kind.RAW, "s", json.dumps(r), 1000.0 + i) for i, r in enumerate(rows)]
    fast, events = _run(model, [items[:10], items[10:]], per_message)
    assert [e["event"] for e in events] == ["start", "end"]
    start, end = (e["episode"] for e in events)
    assert start["end_ts"] is None and start["duration_s"] is None
    assert start["windows_over"] < end["windows_over"] and start["peak_score"] < end["peak_score"]
