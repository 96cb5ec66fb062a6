"""Sparkplug B: the protobuf decoder from the public schema, aliases from births, report by exception."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.parsing import BadReason, Measurement
from edgewatch.agent.sparkplug import (DOUBLE, FLOAT, INT16, INT32, UINT32, SparkplugDecoder, decode_payload,
                                       encode_metric, encode_payload)

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


def test_aliases_from_births_and_report_by_exception() -> None:
    d = SparkplugDecoder(FEATURES)
    birth = encode_payload([encode_metric(f, 0.5, alias=i + 1) for i, f in enumerate(FEATURES)]
                           + [encode_metric("serial", "X1", alias=9)], timestamp=1_000)
    first = d.decode("spBv1.0/plant/DBIRTH/gw1/pump1", birth)
    assert isinstance(first, Measurement) and first.values == [0.5] * 4 and first.ts == 1.0
    assert first.stream == "spBv1.0/plant/gw1/pump1"
    changed = d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric(None, 0.9, alias=3)],
                                                                        timestamp=2_000))
    assert changed.values == [0.5, 0.5, 0.9, 0.5] and changed.ts == 2.0  # only traffic changed
    assert d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric(None, 1.0, alias=42)])) \
        is BadReason.UNKNOWN_ALIAS
    assert d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric("cpu", "high")])) \
        is BadReason.NOT_NUMBER
    assert d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric("cpu", math.nan)])) \
        is BadReason.NON_FINITE
    assert d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric("serial", "X2")])) is None
    assert d.decode("spBv1.0/plant/DDATA/gw1/pump1", b"\x12\xff\xff") is BadReason.BAD_PAYLOAD
    # a device without a birth, naming only some features: it cannot make a full measurement
    assert d.decode("spBv1.0/plant/DDATA/gw1/pump2", encode_payload([encode_metric("cpu", 0.1)])) \
        is BadReason.WRONG_ARITY
    # after its death the device's last values are gone; a new birth starts again
    assert d.decode("spBv1.0/plant/DDEATH/gw1/pump1", encode_payload([])) is None
    assert d.decode("spBv1.0/plant/DDATA/gw1/pump1", encode_payload([encode_metric("cpu", 0.1)])) \
        is BadReason.WRONG_ARITY
    assert d.decode("spBv1.0/STATE/host1", b"ONLINE") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_reason_never_a_raise(data: bytes) -> None:
    out = SparkplugDecoder(FEATURES).decode("spBv1.0/g/DDATA/n/d", data)
    assert out is None or isinstance(out, (BadReason, Measurement))
