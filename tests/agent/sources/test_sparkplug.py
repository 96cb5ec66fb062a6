"""Sparkplug B: the protobuf decoder from the public schema, aliases from births, report by exception."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.sources.parsing import BadReason, Measurement, bad_quality
from edgewatch.agent.sources.sparkplug import Reset, SparkplugDecoder
from edgewatch.wire.sparkplug import DOUBLE, FLOAT, INT16, INT32, UINT32, decode_payload, encode_metric, encode_payload

FEATURES = ["cpu", "memory", "traffic", "fan"]


def test_wire_format_round_trip_with_signed_types() -> None:
    payload = encode_payload([encode_metric("a", -5, datatype=INT16), encode_metric("b", -70000, datatype=INT32),
                              encode_metric("c", 4_000_000_000, datatype=UINT32),
                              encode_metric("d", 0.25, datatype=FLOAT), encode_metric("e", 1e300, datatype=DOUBLE),
                              encode_metric("f", True), encode_metric("g", "text"), encode_metric("h", None,
                                                                                                datatype=DOUBLE)],
                             timestamp=1_700_000_000_123, seq=7)
    ts, seq, metrics = decode_payload(payload)
    assert (ts, seq) == (1_700_000_000_123, 7)
    assert [m.value for m in metrics[:7]] == [-5, -70000, 4_000_000_000, 0.25, 1e300, True, "text"]
    assert metrics[7].is_null and metrics[7].value is None


def _one(out: list) -> object:
    """The single thing a message meant (None for nothing); a Reset would make it two."""
    assert len(out) <= 1, out
    return out[0] if out else None


def test_aliases_from_births_and_report_by_exception() -> None:
    d = SparkplugDecoder(FEATURES)
    birth = encode_payload([encode_metric(f, 0.5, alias=i + 1) for i, f in enumerate(FEATURES)]
                           + [encode_metric("serial", "X1", alias=9)], timestamp=1_000)
    first = _one(d.decode("spBv1.0/plant/DBIRTH/gw1/pump1", birth))
    assert isinstance(first, Measurement) and first.values == [0.5] * 4 and first.ts == 1.0
    assert first.stream == "spBv1.0/plant/gw1/pump1"
    changed = _one(d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric(None, 0.9, alias=3)],
                                                                             timestamp=2_000)))
    assert changed.values == [0.5, 0.5, 0.9, 0.5] and changed.ts == 2.0  # only traffic changed
    assert _one(d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric(None, 1.0, alias=42)]))) \
        is BadReason.UNKNOWN_ALIAS
    # an alias the birth declared for a metric the model does not read: nothing, not a bad message
    assert d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric(None, "X2", alias=9)])) == []
    assert _one(d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric("cpu", "high")]))) \
        is BadReason.NOT_NUMBER
    assert _one(d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric("cpu", math.nan)]))) \
        is BadReason.NON_FINITE
    assert d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric("serial", "X2")])) == []
    assert _one(d.decode("spBv1.0/plant/DDATA/gw1/pump1", b"\x12\xff\xff")) is BadReason.BAD_PAYLOAD
    # a device without a birth, naming only some features: it cannot make a full measurement
    assert _one(d.decode("spBv1.0/plant/DDATA/gw1/pump2", encode_payload([encode_metric("cpu", 0.1)]))) \
        is BadReason.WRONG_ARITY
    assert d.decode("spBv1.0/STATE/host1", b"ONLINE") == []
    assert d.decode("spBv1.0/plant/DCMD/gw1/pump1", encode_payload([])) == []


def test_a_metric_whose_quality_says_bad_is_no_longer_held() -> None:
    """Ignition's Quality property (an int32; its sign bit set is Bad or Error, 192 good; left out when good):
    a sensor gone bad kept feeding the model its last value, as if it still read that."""
    bad_q, good_q = -2147483136, 192  # 0x80000200 as Ignition sends a Bad quality; legacy Good
    _, _, (metric,) = decode_payload(encode_payload([encode_metric("fan", 0.5, quality=bad_q)]))
    assert metric.quality == bad_q and bad_quality(metric.quality) and metric.value == 0.5
    d = SparkplugDecoder(FEATURES)
    birth = encode_payload([encode_metric(f, 0.5, alias=i + 1, quality=good_q) for i, f in enumerate(FEATURES)])
    assert _one(d.decode("spBv1.0/p/DBIRTH/gw/pump", birth)).values == [0.5] * 4  # 192 is good
    went_bad = encode_payload([encode_metric(None, 0.9, alias=1), encode_metric(None, 0.5, alias=4, quality=bad_q)])
    assert _one(d.decode("spBv1.0/p/DDATA/gw/pump", went_bad)) is BadReason.BAD_STATUS
    # the other metrics of that message were taken; the bad one holds nothing until it reports good again
    assert _one(d.decode("spBv1.0/p/DDATA/gw/pump", encode_payload([encode_metric(None, 0.8, alias=2)]))) \
        is BadReason.WRONG_ARITY
    back = _one(d.decode("spBv1.0/p/DDATA/gw/pump", encode_payload([encode_metric(None, 0.7, alias=4)])))
    assert back.values == [0.9, 0.8, 0.5, 0.7]


@pytest.mark.parametrize("without", [None, "text", math.nan, math.inf])
def test_a_metric_without_a_number_does_not_cost_the_messages_others(without: object) -> None:
    """Report by exception: a DDATA carries what changed. When one of its metrics had no number (null, text, NaN),
    the whole message was refused, and the others' new values were never taken: the model went on reading a
    temperature of 20 after the device had reported 80, until the temperature changed again."""
    d = SparkplugDecoder(FEATURES)
    birth = encode_payload([encode_metric(f, 0.5, alias=i + 1) for i, f in enumerate(FEATURES)])
    assert _one(d.decode("spBv1.0/p/DBIRTH/gw/pump", birth)).values == [0.5] * 4
    mixed = encode_payload([encode_metric(None, 0.8, alias=1), encode_metric(None, without, alias=3)])
    reason = BadReason.NON_FINITE if isinstance(without, float) else BadReason.NOT_NUMBER
    assert _one(d.decode("spBv1.0/p/DDATA/gw/pump", mixed)) is reason  # counted
    later = _one(d.decode("spBv1.0/p/DDATA/gw/pump", encode_payload([encode_metric(None, 0.6, alias=2)])))
    assert later.values == [0.8, 0.6, 0.5, 0.5]  # the first metric's 0.8 was taken; the third holds its last


def test_death_ends_the_session_and_a_rebirth_resets_the_stream() -> None:
    d = SparkplugDecoder(FEATURES)
    birth = encode_payload([encode_metric(f, 0.5, alias=i + 1) for i, f in enumerate(FEATURES)])
    assert isinstance(_one(d.decode("spBv1.0/p/DBIRTH/gw/pump", birth)), Measurement)
    assert d.decode("spBv1.0/p/DDEATH/gw/pump", encode_payload([])) == [Reset(("spBv1.0/p/gw/pump",))]
    # after the death its aliases mean nothing until the next birth, and its last values are gone
    data = encode_payload([encode_metric(None, 0.7, alias=2)])
    assert _one(d.decode("spBv1.0/p/DDATA/gw/pump", data)) is BadReason.UNKNOWN_ALIAS
    assert _one(d.decode("spBv1.0/p/DDATA/gw/pump", encode_payload([encode_metric("cpu", 0.1)]))) \
        is BadReason.WRONG_ARITY
    assert d.decode("spBv1.0/p/DDEATH/gw/pump", encode_payload([])) == [Reset(("spBv1.0/p/gw/pump",))]
    assert d.decode("spBv1.0/p/DDEATH/gw/pump", encode_payload([])) == []  # nothing held: nothing to reset
    assert isinstance(_one(d.decode("spBv1.0/p/DBIRTH/gw/pump", birth)), Measurement)  # a first birth again
    assert isinstance(_one(d.decode("spBv1.0/p/DDATA/gw/pump", data)), Measurement)
    # a birth that replaces a live session (a rebirth) resets first, then measures
    out = d.decode("spBv1.0/p/DBIRTH/gw/pump", birth)
    assert out[0] == Reset(("spBv1.0/p/gw/pump",)) and isinstance(out[1], Measurement) and len(out) == 2
    # a new session of the node (its birth) ends its devices' sessions, and so does its death
    node_birth = encode_payload([encode_metric("uptime", 5, alias=100)])
    assert d.decode("spBv1.0/p/NBIRTH/gw", node_birth) == [Reset(("spBv1.0/p/gw/pump",))]
    assert isinstance(_one(d.decode("spBv1.0/p/DBIRTH/gw/pump", birth)), Measurement)
    assert isinstance(_one(d.decode("spBv1.0/p/DBIRTH/gw/fan", birth)), Measurement)
    assert d.decode("spBv1.0/p/NDEATH/gw", encode_payload([])) == [
        Reset(("spBv1.0/p/gw", "spBv1.0/p/gw/fan", "spBv1.0/p/gw/pump"))]
    assert d.sessions == 0 and d.aliases == 0
    assert _one(d.decode("spBv1.0/p/DDATA/gw/fan", data)) is BadReason.UNKNOWN_ALIAS
    assert _one(d.decode("spBv1.0/p/NDATA/gw", encode_payload([encode_metric(None, 6, alias=100)]))) \
        is BadReason.UNKNOWN_ALIAS
    d.decode("spBv1.0/p/NBIRTH/gw", node_birth)
    d.decode("spBv1.0/p/DBIRTH/gw/fan", birth)
    assert d.decode("spBv1.0/p/NBIRTH/gw", node_birth) == [Reset(("spBv1.0/p/gw", "spBv1.0/p/gw/fan"))]


def test_alias_tables_and_payloads_are_bounded() -> None:
    d = SparkplugDecoder(FEATURES, max_bytes=2000, max_nodes=3, max_aliases=50)

    def birth(n_other: int, first: int = 10) -> bytes:
        return encode_payload([encode_metric(f, 0.5, alias=i + 1) for i, f in enumerate(FEATURES)]
                              + [encode_metric(f"m{k}", 1.0, alias=first + k) for k in range(n_other)])

    assert _one(d.decode("spBv1.0/p/NBIRTH/n1", birth(200))) is BadReason.TOO_LARGE  # > 2000 bytes
    assert d.sessions == 0
    assert isinstance(_one(d.decode("spBv1.0/p/NBIRTH/n1", birth(30))), Measurement)  # 34 aliases
    assert _one(d.decode("spBv1.0/p/DBIRTH/n1/d1", birth(20, first=100))) is BadReason.TOO_MANY_ALIASES  # 34+24
    assert _one(d.decode("spBv1.0/p/DDATA/n1/d1", encode_payload([encode_metric(None, 1.0, alias=2)]))) \
        is BadReason.UNKNOWN_ALIAS  # the refused birth holds nothing
    assert isinstance(_one(d.decode("spBv1.0/p/DBIRTH/n1/d1", birth(10, first=100))), Measurement)  # 34+14
    assert d.aliases == 48
    assert isinstance(_one(d.decode("spBv1.0/p/NBIRTH/n2", birth(0))), Measurement)
    assert _one(d.decode("spBv1.0/p/NBIRTH/n3", birth(0))) is BadReason.TOO_MANY_NODES  # 3 held already
    # data by name for a node without a birth needs a session too
    by_name = encode_payload([encode_metric(f, 0.5) for f in FEATURES])
    assert _one(d.decode("spBv1.0/p/NDATA/n4", by_name)) is BadReason.TOO_MANY_NODES
    assert d.decode("spBv1.0/p/NDEATH/n2", encode_payload([])) == [Reset(("spBv1.0/p/n2",))]
    assert isinstance(_one(d.decode("spBv1.0/p/NDATA/n4", by_name)), Measurement)  # room again
    assert d.sessions == 3
    # a flood of data naming no feature holds nothing
    for i in range(20):
        assert d.decode(f"spBv1.0/p/NDATA/x{i}", encode_payload([encode_metric("other", 1.0)])) == []
    assert d.sessions == 3


def test_unrecognised_sparkplug_messages_are_counted() -> None:
    d = SparkplugDecoder(FEATURES)
    data = encode_payload([encode_metric("cpu", 0.5)])
    for topic in ("spBv1.0/p/NFOO/n", "spBv1.0/p", "spBv1.0/p/DDATA/n", "spBv1.0/p/NDATA/n/d",
                  "spBv1.0/p/DDATA/n/d/extra", "spBv1.0//NDATA/n", "spBv1.0/p/ddata/n/d"):
        assert d.decode(topic, data) == [BadReason.UNKNOWN_MESSAGE], topic


def test_aliases_past_32_bits_are_kept_exactly() -> None:
    d = SparkplugDecoder(FEATURES)
    big = 2**40
    d.decode("spBv1.0/p/NBIRTH/n", encode_payload([encode_metric(f, 0.5, alias=i + 1) for i, f in enumerate(FEATURES)]
                                                  + [encode_metric("x", 1.0, alias=big)]))
    assert d.decode("spBv1.0/p/NDATA/n", encode_payload([encode_metric(None, 2.0, alias=big)])) == []
    assert _one(d.decode("spBv1.0/p/NDATA/n", encode_payload([encode_metric(None, 2.0, alias=big + 1)]))) \
        is BadReason.UNKNOWN_ALIAS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_reason_never_a_raise(data: bytes) -> None:
    out = SparkplugDecoder(FEATURES).decode("spBv1.0/g/DDATA/n/d", data)
    assert all(isinstance(o, (BadReason, Measurement)) for o in out) and len(out) <= 1


STATE_CODES = {"Mode": {"Auto": 0, "Manual": 1, "Off": 2}}
METRIC_VALUES = st.one_of(st.sampled_from(["Auto", "manual", " OFF", "Fault", "", "1", "nan"]), st.booleans(),
                          st.none(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["flow", "Mode"]), METRIC_VALUES), min_size=1, max_size=25))
def test_a_state_metric_of_any_value_is_a_known_code_or_counted_never_a_guess(updates: list) -> None:
    """Through the row assembler's state_code, as the MQTT source wires it: whatever a device sends for a state
    feature (words in any case, Booleans, numbers, nulls, NaN), a row's state is a code the model knows (or a
    number sent as the code), a word never held is unknown_state and drops the held state, and nothing raises."""
    from edgewatch.agent.sources.rows import RowAssembler

    rows = RowAssembler(["flow", "Mode"], states=STATE_CODES)
    dec = SparkplugDecoder(["flow", "Mode"])
    dec.state_code = rows.state_code
    topic = "spBv1.0/g/DDATA/n/d"
    dec.decode("spBv1.0/g/DBIRTH/n/d", encode_payload([encode_metric("flow", 1.0, alias=1),
                                                        encode_metric("Mode", "Auto", alias=2)], seq=0))
    numbers: set[float] = set()  # numbers sent for Mode: taken as the code itself
    for name, value in updates:
        if name == "Mode" and type(value) in (int, float):
            numbers.add(float(value))
        out = dec.decode(topic, encode_payload([encode_metric(None, value, alias=1 if name == "flow" else 2)]))
        for d in out:
            assert isinstance(d, (Measurement, BadReason)), d
            if isinstance(d, Measurement):
                assert d.values[1] in {0.0, 1.0, 2.0} | numbers, (value, d)
        if name == "Mode" and ((type(value) is str and value == "Fault") or type(value) is bool):
            assert out == [BadReason.UNKNOWN_STATE], (value, out)  # no word of Auto/Manual/Off: not a guess
