"""The agent's column-wise fast path gives what the message-by-message path gives.

A drained batch of clean JSON messages is parsed, windowed, ranged and
decided column-wise (``sources/columns.py``, ``StreamWindows.push_many``,
``FirstRowsRange.observe``, ``EpisodeTracker.update_many``); every other
batch goes message by message. Each piece is checked here against the
message-by-message form it replaces, on generated batches.
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
from edgewatch.agent.range_check import FirstRowsRange
from edgewatch.agent.sources import Item, Kind
from edgewatch.agent.sources.columns import parse_columns
from edgewatch.agent.sources.parsing import Measurement, parse_message
from edgewatch.agent.windows import StreamWindows, group_by_slot
from tests.modelkit import make_card, write_model

F = 4
CLEAN = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=F, max_size=F)
# forms parse_message accepts or refuses, beside the clean ones
ODD = st.sampled_from([
    "[1, 2, 3, 4]", "[0.5, 0.5, 0.5]", "[0.5, 0.5, 0.5, true]", '[0.5, 0.5, 0.5, "x"]', "[NaN, 0.5, 0.5, 0.5]",
    "[1e39, 0.5, 0.5, 0.5]", "[1e400, 0.5, 0.5, 0.5]", "garbage", "{}", '{"values": [0.5, 0.5, 0.5, 0.5]}',
    '{"stream": "", "values": [0.5, 0.5, 0.5, 0.5]}', '{"stream": 7, "values": [0.5, 0.5, 0.5, 0.5]}',
    '{"stream": "s", "values": [0.5, 0.5, 0.5, 0.5], "ts": 1700000000}', '{"stream": "s", "v": [0.5, 0.5, 0.5, 0.5]}',
    '{"stream": "s", "values": "0.5"}', '{"stream": "s", "values": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}}',
    '{"stream": "' + "x" * 201 + '", "values": [0.5, 0.5, 0.5, 0.5]}', "[[0.5], 0.5, 0.5, 0.5]", "0.5", "null",
    b"\xff\xfe", b"[0.5, 0.5, 0.5, 0.5]", "[0.5, 0.5, 0.5, 0.5]" + " " * 300])


def _clean(values: list[float], stream: str | None) -> str:
    return json.dumps(values if stream is None else {"stream": stream, "values": values})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.tuples(CLEAN, st.none() | st.sampled_from(["a", "b", "pump-7"])), ODD),
                min_size=1, max_size=12))
def test_columns_accept_only_what_parse_message_accepts_the_same(batch) -> None:
    payloads = [m if isinstance(m, (str, bytes)) else _clean(*m) for m in batch]
    cols = parse_columns(payloads, F, max_bytes=300)
    one_by_one = [parse_message(p, F, max_bytes=300) for p in payloads]
    clean = [m for m in batch if isinstance(m, tuple)]
    if len(clean) == len(batch) and len({m[1] is None for m in clean}) == 1:
        assert cols is not None  # a clean batch of one form takes the fast path
    if cols is None:
        return
    assert all(type(m) is Measurement and m.ts is None for m in one_by_one)
    np.testing.assert_array_equal(cols.values, np.array([m.values for m in one_by_one], dtype=np.float64))
    assert cols.streams == (None if cols.streams is None else [m.stream for m in one_by_one])
    assert cols.streams is not None or all(m.stream is None for m in one_by_one)


@pytest.mark.parametrize("with_stream", [False, True])
def test_a_clean_batch_of_one_form_takes_the_columns(with_stream: bool) -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, F)).round(5).tolist()
    payloads = [_clean(r, f"s{i % 7}" if with_stream else None) for i, r in enumerate(rows)]
    cols = parse_columns(payloads, F, max_bytes=1000)
    assert cols is not None
    np.testing.assert_array_equal(cols.values, np.array(rows))
    assert cols.streams == ([f"s{i % 7}" for i in range(50)] if with_stream else None)


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


def _range_check() -> FirstRowsRange:
    return FirstRowsRange(["a", "b"], np.array([0.0, 0.0]), np.array([1.0, 1.0]), np.array([0.3, 0.3]),
                          np.array([True, True]), rows=12, block=4)


def _observe_row_by_row(check: FirstRowsRange, slots: np.ndarray, rows: np.ndarray) -> None:
    """The rule of FirstRowsRange.observe, one row at a time (what the column-wise form replaced)."""
    for slot, row in zip(slots.tolist(), rows):
        if slot >= check._count.size:
            check._grow(slot)
        if check._count[slot] >= check.rows or not np.isfinite(row).all():
            continue
        check._outside[slot] += (row < check.low) | (row > check.high)
        check._sum[slot] += row
        check._count[slot] += 1
        if check._count[slot] % check.block == 0:
            outside, total = check._outside[slot].copy(), check._sum[slot].copy()
            check._outside[slot] = 0
            check._sum[slot] = 0.0
            if check._judge(slot, outside, total):
                check._count[slot] = check.rows


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0.5, 3.0, -2.0, float("nan")])),
                         min_size=1, max_size=25), min_size=1, max_size=5))
def test_range_check_in_columns_equals_row_by_row(batches) -> None:
    bulk, single = _range_check(), _range_check()
    for batch in batches:
        slots = np.array([s for s, _ in batch])
        rows = np.array([[v, 0.5] for _, v in batch])
        bulk.observe(slots, rows)
        _observe_row_by_row(single, slots, rows)
        got, want = bulk.take(), single.take()
        assert [(f.slot, f.features) for f in got] == [(f.slot, f.features) for f in want]
        for a, b in zip(got, want):
            for name in a.features:
                assert a.outside[name] == pytest.approx(b.outside[name], rel=1e-12)
        n = single._count.size
        np.testing.assert_array_equal(bulk._count[:n], single._count)
        np.testing.assert_array_equal(bulk._outside[:n], single._outside)
        np.testing.assert_allclose(bulk._sum[:n], single._sum, rtol=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=60), st.integers(1, 3),
       st.integers(1, 3))
def test_update_many_equals_update_one_by_one(windows, k: int, extra: int) -> None:
    n = k + extra - 1
    bulk, single = EpisodeTracker(k=k, n=n), EpisodeTracker(k=k, n=n)
    slots = [s for s, _ in windows]
    over = [o for _, o in windows]
    scores = [float(i) if o else 0.0 for i, (_, o) in enumerate(windows)]
    got = bulk.update_many(slots, over, scores, [float(i) for i in range(len(windows))], list(range(len(windows))))
    want = [(i, t) for i, (s, o) in enumerate(windows) if (t := single.update(s, o, scores[i], float(i), i))]
    assert [(i, t.kind, t.slot, t.episode) for i, t in got] == [(i, t.kind, t.slot, t.episode) for i, t in want]
    assert sorted(bulk.open_slots()) == sorted(single.open_slots())


class _Events:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def send(self, event: dict) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


def _run(model: ScoringModel, batches: list[list[Item]], per_message: bool) -> tuple[Agent, list[dict]]:
    sink = _Events()
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
