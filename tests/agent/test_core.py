"""The agent's core: parsing, ring windows, episodes, the batched loop, model refusal."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.engine import Agent, AgentOptions
from edgewatch.agent.episodes import EpisodeTracker
from edgewatch.agent.model import ScoringModel
from edgewatch.agent.sources.parsing import BadReason, Measurement, parse_message
from edgewatch.agent.sources.rows import RowAssembler
from edgewatch.agent.sinks import StdoutSink
from edgewatch.agent.sources import Item, Kind, ReplaySource
from edgewatch.agent.windows import StreamWindows
from edgewatch.errors import BadInput, BadModelFile
from tests.modelkit import make_card, write_model

# -- parsing ----------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("[0.1, 0.2, 0.3, 0.4]", Measurement([0.1, 0.2, 0.3, 0.4])),
    ('{"values": [1, 2, 3, 4], "ts": 1700000000.5, "stream": "pump-7"}',
     Measurement([1.0, 2.0, 3.0, 4.0], 1700000000.5, "pump-7")),
    ('{"v": [1, 2, 3, 4], "t": 1700000000500}', Measurement([1.0, 2.0, 3.0, 4.0], 1700000000.5)),
    ('{"values": [1, 2, 3, 4], "ts": "2015-08-11T12:07:00+00:00"}', Measurement([1.0, 2.0, 3.0, 4.0], 1439294820.0)),
    (b"[1,2,3,4]", Measurement([1.0, 2.0, 3.0, 4.0])),
    # a time without a zone is UTC, whatever this machine's zone is
    ('{"values": [1, 2, 3, 4], "ts": "2015-08-11 12:07:00"}', Measurement([1.0, 2.0, 3.0, 4.0], 1439294820.0)),
])
def test_parse_accepts_arrays_and_objects(raw, expected) -> None:
    assert parse_message(raw, 4) == expected


@pytest.mark.parametrize("raw, reason", [
    ("not json", BadReason.NOT_JSON),
    ("[0.1, 0.2, 0.3]", BadReason.WRONG_ARITY),
    ("[0.1, 0.2, 0.3, NaN]", BadReason.NON_FINITE),
    ("[0.1, 0.2, 0.3, Infinity]", BadReason.NON_FINITE),
    ("[0.1, 0.2, 0.3, 1e999]", BadReason.NON_FINITE),
    ("[0.1, 0.2, 0.3, " + "9" * 400 + "]", BadReason.OVERFLOW),  # an int no float holds
    ("[0.1, 0.2, 0.3, 1e39]", BadReason.OVERFLOW),  # finite, beyond float32: the model would see inf
    ('{"values": [1,2,3,4], "ts": 1e300}', BadReason.BAD_TIMESTAMP),
    ('{"values": [1,2,3,4], "ts": -1e300}', BadReason.BAD_TIMESTAMP),
    ('{"values": [1,2,3,4], "ts": "9999-12-31T23:59:59-14:00"}', BadReason.BAD_TIMESTAMP),
    ('[0.1, 0.2, 0.3, "0.4"]', BadReason.NOT_NUMBER),
    ("[0.1, 0.2, 0.3, [0.4]]", BadReason.NOT_NUMBER),
    ("[0.1, 0.2, 0.3, true]", BadReason.NOT_NUMBER),
    ("[0.1, 0.2, 0.3, null]", BadReason.NOT_NUMBER),
    ('"hello"', BadReason.WRONG_TYPE),
    ('{"x": 1}', BadReason.NO_VALUES),
    ('{"values": [1,2,3,4], "ts": "yesterday"}', BadReason.BAD_TIMESTAMP),
    ('{"values": [1,2,3,4], "stream": ["a"]}', BadReason.BAD_STREAM),
    (b"\xff\xfe[1,2,3,4]", BadReason.BINARY),
    ("[" * 100_000, BadReason.TOO_LARGE),
    ("[" * 5000 + "]" * 5000, BadReason.NOT_JSON),  # nesting too deep to parse
])
def test_parse_refuses_bad_input_with_its_reason(raw, reason) -> None:
    assert parse_message(raw, 4) is reason


_TRICKY = [
    "\ufeff[1,2,3,4]", b"\xef\xbb\xbf[1,2,3,4]",  # a byte-order mark
    '{"values": [1,2,3,4], "values": [5,6,7,8]}',  # a repeated key: the last one counts
    '["\\ud800", 1, 2, 3]', '{"values": [1,2,3,4], "stream": "\\ud800"}',  # a lone surrogate
    "[1,2,3,18446744073709551616]", "[1,2,3,-9223372036854775809]", "[1,2,3,9223372036854775807]",
    "[1,2,3,4] ", " [1,2,3,4]", "[1,2,3,4]x", "[1,2,3,4][1]", "[1,2,3,-0.0]", "[1,2,3,4e-400]",
    '{"values": 1}', '{"value": [1,2,3,4], "time": "2015-08-11T12:07:00Z"}', '{"values": [1,2,3,4], "stream": 1e400}',
    '{"values": [1,2,3,4], "stream": ""}', '{"values": [1,2,3,4], "stream": false}', "[1,2,3,4", "",
    "[" * 1100 + "]" * 1100, b"[1,2,3,4\x00]", memoryview(b"[1,2,3,4]"), bytearray(b"[1,2,3,4]"),
]


def _stdlib_only(raw: str | bytes) -> Measurement | BadReason:
    """What :func:`parse_message` answers without orjson: the reference the fast path must match."""
    from edgewatch.agent.sources import parsing

    obj = parsing._decode_slowly(raw)
    return obj if isinstance(obj, BadReason) else parsing._measurement(obj, 4)


@pytest.mark.parametrize("raw", _TRICKY)
def test_the_fast_decoder_gives_what_the_stdlib_gives(raw) -> None:
    """orjson decodes the valid messages (a fifth of the time); every message gets the stdlib's answer."""
    from edgewatch.agent.sources import parsing

    assert parsing._fast_loads is not None, "orjson is a base dependency: the agent's hot path uses it"
    assert parse_message(raw, 4) == _stdlib_only(raw)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(
                        st.sampled_from(["values", "v", "ts", "stream", "t", "x"]), kids, max_size=4),
                    max_leaves=12))
def test_the_fast_decoder_agrees_on_any_json(obj) -> None:
    from edgewatch.agent.sources import parsing

    raw = json.dumps(obj)  # NaN and Infinity appear as the literals the stdlib writes
    assert parse_message(raw, 4) == _stdlib_only(raw)


_FEATURES = ("cpu", "memory", "traffic", "fan")


def _keyed(raw: str) -> Measurement | BadReason:
    """A first message of a stream, keyed by feature name (nothing held yet)."""
    return RowAssembler(_FEATURES).keyed_message(raw, "s", 1000.0)


@pytest.mark.parametrize("last, reason", [
    ("1e999", BadReason.NON_FINITE), ("9" * 400, BadReason.OVERFLOW), ("1e39", BadReason.OVERFLOW),
    ("-1e39", BadReason.OVERFLOW), ("true", BadReason.NOT_NUMBER), ('"high"', BadReason.NOT_NUMBER),
    ("[1]", BadReason.NOT_NUMBER),
])
def test_flat_feature_objects_follow_the_same_value_rules(last: str, reason: BadReason) -> None:
    flat = '{"cpu": 0.1, "memory": 0.2, "traffic": 0.3, "fan": %s}' % last
    assert _keyed(flat) is reason
    if last not in ('"high"', "[1]"):
        assert parse_message("[0.1, 0.2, 0.3, %s]" % last, 4) is reason


@pytest.mark.parametrize("last", ["null", "NaN", '""', '"NaN"', '"nan"'])
def test_a_missing_value_in_a_first_row_is_missing_feature(last: str) -> None:
    assert _keyed('{"cpu": 0.1, "memory": 0.2, "traffic": 0.3, "fan": %s}' % last) is BadReason.MISSING_FEATURE


def test_flat_feature_objects_carry_time_and_stream() -> None:
    flat = '{"fan": 4, "traffic": 3, "memory": 2, "cpu": "1", "other": "x", "ts": 1700000000.5, "stream": 7}'
    assert _keyed(flat) == Measurement([1.0, 2.0, 3.0, 4.0], 1700000000.5, "7")
    assert _keyed('{"cpu": 1, "memory": 2, "traffic": 3}') is BadReason.MISSING_FEATURE
    assert _keyed('{"other": 1}') is BadReason.NO_VALUES
    assert _keyed('{"cpu": 1, "memory": 2, "traffic": 3, "fan": 4, "ts": "soon"}') is BadReason.BAD_TIMESTAMP


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_parse_never_raises(raw) -> None:
    result = parse_message(raw, 4)
    assert isinstance(result, (Measurement, BadReason))
    if isinstance(result, Measurement):
        assert len(result.values) == 4 and all(math.isfinite(v) for v in result.values)


# -- windows ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(window=st.integers(1, 12), stride=st.integers(1, 5), n=st.integers(0, 60))
def test_windows_due_count_and_content(window: int, stride: int, n: int) -> None:
    w = StreamWindows(window, 2, stride, capacity=1)
    rows = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    due_at = []
    for i, row in enumerate(rows):
        if w.push(0, row):
            due_at.append(i)
            np.testing.assert_array_equal(w.latest(0), rows[i + 1 - window:i + 1])
    expected = 0 if n < window else (n - window) // stride + 1
    assert len(due_at) == expected


def test_windows_reset_and_growth() -> None:
    w = StreamWindows(3, 1, 1, capacity=1)
    for v in range(5):
        w.push(0, [v])
    w.ensure(9)
    assert w.capacity >= 10
    np.testing.assert_array_equal(w.latest(0).ravel(), [2, 3, 4])  # survives growth
    w.reset(0)
    assert not w.push(0, [7]) and not w.push(0, [8]) and w.push(0, [9])


# -- episodes ---------------------------------------------------------------------


def test_k_of_n_makes_one_episode_per_fault() -> None:
    tr = EpisodeTracker(k=2, n=3)
    pattern = [0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0]
    events = [(i, t.kind) for i, o in enumerate(pattern) if (t := tr.update(0, bool(o), float(o), i, i))]
    # a lone over-threshold window never opens an episode; the burst 6-11 is one episode
    assert events == [(7, "start"), (14, "end")]
    ep_start = tr.update  # the episode started at its first bad window
    assert ep_start
    tr2 = EpisodeTracker(k=2, n=3)
    for i, o in enumerate([0, 1, 1]):
        t = tr2.update(0, bool(o), 1.0, float(i), i)
    assert t is not None and t.episode.start_seq == 1


def test_episodes_are_per_stream() -> None:
    tr = EpisodeTracker(k=1, n=1)
    assert tr.update(0, True, 1.0, 0.0, 0).kind == "start"
    assert tr.update(1, False, 0.0, 0.0, 0) is None
    assert tr.update(0, False, 0.0, 1.0, 1).kind == "end"


# -- the loop ---------------------------------------------------------------------


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return write_model(tmp_path / "square.onnx", make_card(window=5, threshold=0.1, k=2, n=3))


def _items(rows, stream: str = "s") -> list[Item]:
    return [Item(Kind.RAW, stream, json.dumps(r), 1000.0 + i) for i, r in enumerate(rows)]


def test_agent_turns_a_fault_into_one_start_and_one_end(model_path: Path) -> None:
    out = io.StringIO()
    agent = Agent(ScoringModel(model_path), [StdoutSink(out)], AgentOptions(stride=1, drift_every=0))
    rows = [[0.5] * 4] * 30 + [[1.5, 0.5, 0.5, 0.5]] * 10 + [[0.5] * 4] * 30
    agent.process(_items(rows))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["start", "end"]
    start, end = events
    assert start["top_features"][0]["feature"] == "a"
    assert 30 <= start["seq"] <= 32 and start["stream"] == "s"
    assert end["episode"]["duration_s"] > 0 and end["id"] != start["id"]
    assert agent.summary.windows == len(rows) - 4


def test_bad_messages_are_counted_by_reason_and_skipped(model_path: Path) -> None:
    agent = Agent(ScoringModel(model_path), [], AgentOptions(stride=1, drift_every=0))
    raws = ["[0.5,0.5,0.5,0.5]", "garbage", "[1,2]", "[NaN,1,1,1]", b"\x00\xff", "[0.5,0.5,0.5,0.5]"]
    agent.process([Item(Kind.RAW, "s", r, 0.0) for r in raws] + [Item(Kind.BAD, "s", BadReason.BINARY, 0.0)])
    assert agent.summary.messages == 7
    assert agent.summary.bad == {"not_json": 1, "wrong_arity": 1, "non_finite": 1, "binary": 2}
    assert agent.table.seq == [2]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.lists(st.floats(0, 2), min_size=4, max_size=4)),
                min_size=1, max_size=80), st.integers(1, 4))
def test_batched_scoring_equals_one_by_one(tmp_path_factory, msgs, stride) -> None:
    path = write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_card(window=5))
    model = ScoringModel(path)
    items = [Item(Kind.MEASUREMENT, f"s{s}", Measurement(v), float(i)) for i, (s, v) in enumerate(msgs)]

    def run(batches: list[list[Item]]) -> list[tuple[str, int, float]]:
        agent = Agent(model, [], AgentOptions(stride=stride, drift_every=0))
        got: list[tuple[str, int, float]] = []

        class Rec:
            def on_batch(self, view):
                got.extend((w.stream, w.seq, w.score) for w in view.scored)

            def on_event(self, event):
                pass

        observer = Rec()
        agent.subscribe(observer.on_event, observer.on_batch)
        for b in batches:
            agent.process(b)
        return got

    together = run([items])
    alone = run([[it] for it in items])
    assert [(s, q) for s, q, _ in together] == [(s, q) for s, q, _ in alone]
    np.testing.assert_allclose([x for *_, x in together], [x for *_, x in alone], rtol=1e-6)


def test_reset_item_restarts_the_window(model_path: Path) -> None:
    agent = Agent(ScoringModel(model_path), [], AgentOptions(stride=1, drift_every=0))
    agent.process(_items([[0.5] * 4] * 5))
    assert agent.summary.windows == 1
    agent.process([Item(Kind.RESET, "s", None, 0.0)] + _items([[0.5] * 4] * 4))
    assert agent.summary.windows == 1  # four rows after the reset are not a full window
    agent.process(_items([[0.5] * 4]))
    assert agent.summary.windows == 2


def test_run_replays_a_csv_to_the_end(tmp_path: Path, model_path: Path) -> None:
    csv_path = tmp_path / "r.csv"
    rows = ["timestamp,a,b,c,d"] + [f"{1000 + i},0.5,0.5,0.5,{0.5 if not 50 <= i < 60 else 2.0}"
                                    for i in range(120)]
    csv_path.write_text("\n".join(rows) + "\n")
    out = io.StringIO()
    agent = Agent(ScoringModel(model_path), [StdoutSink(out)], AgentOptions(stride=1, drift_every=0))
    agent.add_source(ReplaySource(csv_path, ["a", "b", "c", "d"]))
    t0 = time.monotonic()
    summary = agent.run(duration=30)
    assert time.monotonic() - t0 < 30, "replay did not end by itself"
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["start", "end"]
    assert events[0]["ts"] == pytest.approx(1050.0, abs=2) and events[0]["top_features"][0]["feature"] == "d"
    assert summary.messages == 120 and summary.windows == 116


def test_replay_refuses_a_csv_that_does_not_fit(tmp_path: Path) -> None:
    p = tmp_path / "three.csv"
    p.write_text("x,y,z\n1,2,3\n")
    with pytest.raises(BadInput, match="needs 4 features"):
        ReplaySource(p, ["a", "b", "c", "d"])


# -- model files ------------------------------------------------------------------


def test_model_refused_when_not_edgewatch(tmp_path: Path) -> None:
    path = write_model(tmp_path / "plain.onnx", props={"producer.note": "someone else's"})
    with pytest.raises(BadModelFile, match="not an edgewatch model.*producer.note"):
        ScoringModel(path)


def test_model_refused_when_truncated(tmp_path: Path, model_path: Path) -> None:
    data = model_path.read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadModelFile, match="not a readable ONNX model"):
        ScoringModel(bad)


def test_model_refused_on_sha_mismatch_and_accepted_on_match(model_path: Path) -> None:
    with pytest.raises(BadModelFile, match="sha256"):
        ScoringModel(model_path, expected_sha256="0" * 64)
    ok = ScoringModel(model_path)
    assert ScoringModel(model_path, expected_sha256=ok.sha256.upper()).sha256 == ok.sha256


def test_model_refused_on_unknown_key_and_version(tmp_path: Path) -> None:
    props = make_card().to_props()
    props["edgewatch.treshold"] = "0.3"
    with pytest.raises(BadModelFile, match="unknown edgewatch metadata keys.*treshold"):
        ScoringModel(write_model(tmp_path / "typo.onnx", props=props))
    props = make_card().to_props()
    props["edgewatch.format_version"] = "0"  # older than any format: newer ones are read (tests/contract/test_migration.py)
    with pytest.raises(BadModelFile, match="format version 0"):
        ScoringModel(write_model(tmp_path / "ancient.onnx", props=props))


def test_model_refused_when_card_and_graph_disagree(tmp_path: Path) -> None:
    card = make_card(window=5)
    props = make_card(window=7).to_props()
    with pytest.raises(BadModelFile, match="does not match the card"):
        ScoringModel(write_model(tmp_path / "mismatch.onnx", card=card, props=props))


def test_card_round_trips_through_the_file(model_path: Path) -> None:
    assert ScoringModel(model_path).card == make_card(window=5, threshold=0.1, k=2, n=3)


def test_agent_check_accepts_ours_and_refuses_others(tmp_path: Path, model_path: Path) -> None:
    from click.testing import CliRunner

    from edgewatch.cli import main

    ok = CliRunner().invoke(main, ["agent", "check", str(model_path)])
    assert ok.exit_code == 0 and "the agent accepts it" in ok.output and "threshold     0.1" in ok.output
    assert "scale         anomaly_score 0 at score 0.01 (the median score on normal data), 1 at the threshold 0.1" \
        in ok.output
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    bad = CliRunner().invoke(main, ["agent", "check", str(junk)])
    assert bad.exit_code == 3 and "not a readable ONNX model" in bad.output


def test_top_features_rank_by_error_with_ties_in_feature_order() -> None:
    from edgewatch.agent.events import top_features

    got = top_features(np.array([1.0, np.nan, 3.0, 1.0, np.inf, -np.inf], np.float32), list("abcdef"), top=4)
    assert [g["feature"] for g in got] == ["e", "c", "a", "d"]  # inf is the largest, NaN and -inf count as 0
    assert got[0]["error"] == float(np.finfo(np.float64).max) and got[0]["share"] == 1.0 and got[1]["share"] == 0.0
    got = top_features([0.2, 0.6, 0.2], ["x", "y", "z"], top=3)
    assert [(g["feature"], g["share"]) for g in got] == [("y", 0.6), ("x", 0.2), ("z", 0.2)]
