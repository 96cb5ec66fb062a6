"""Sparkplug B payloads as bytes: a protobuf decoder and encoder written from the public schema.

Only the part of ``sparkplug_b.proto`` (Eclipse Sparkplug 3.0) that
measurements need is read: ``Payload.timestamp`` (1), ``metrics`` (2),
``seq`` (3) and, per ``Metric``, ``name`` (1), ``alias`` (2), ``timestamp`` (3),
``datatype`` (4), ``is_null`` (7) and the scalar values ``int_value`` (10),
``long_value`` (11), ``float_value`` (12), ``double_value`` (13),
``boolean_value`` (14), ``string_value`` (15), and of ``properties`` (9) the
``Quality`` property alone (Ignition's, an int32: 192 good, a value with
its top bit set Bad or Error, as Ignition itself decodes it; Cirrus Link
leaves it out when it is good). Other fields (metadata, other properties,
datasets, templates) are skipped by their wire type, so a payload that
carries them still decodes. The encoder writes the same
fields: the simulator publishes Sparkplug B with it, and tests do.

What the messages mean over time (births, aliases, deaths) is the agent's
:class:`~edgewatch.agent.sources.sparkplug.SparkplugDecoder`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edgewatch.wire.protobuf import DecodeError, encode_varint, key, len_field, read_varint

# Sparkplug B DataType enum values
INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FLOAT, DOUBLE, BOOLEAN, STRING = range(1, 13)
_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
TEXT_TYPES = {STRING, 14, 15}  # String, Text, UUID

_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


def _fields(buf: bytes):  # noqa: ANN202 - yields (field, wire type, value)
    """Every top-level field: varints as int, fixed32/64 as raw bytes, length-delimited as bytes."""
    i, n = 0, len(buf)
    while i < n:
        tag, i = read_varint(buf, i, n)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise DecodeError("field number 0")
        if wire == 0:
            value, i = read_varint(buf, i, n)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            size, i = read_varint(buf, i, n)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        if i > n:
            raise DecodeError("truncated field")
        yield field, wire, value


@dataclass(slots=True)
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int = 0
    is_null: bool = False
    value: object = None
    quality: int | None = None  # the Quality property as an int32, when the metric carries one


def decode_payload(buf: bytes) -> tuple[int | None, int | None, list[Metric]]:
    """(timestamp ms, seq, metrics) of a Sparkplug B payload; DecodeError when it is not one."""
    timestamp = seq = None
    metrics: list[Metric] = []
    for field, wire, value in _fields(bytes(buf)):
        if field == 1 and wire == 0:
            timestamp = value  # type: ignore[assignment]
        elif field == 2 and wire == 2:
            metrics.append(_metric(value))  # type: ignore[arg-type]
        elif field == 3 and wire == 0:
            seq = value  # type: ignore[assignment]
    return timestamp, seq, metrics


def _metric(buf: bytes) -> Metric:
    m = Metric()
    for field, wire, value in _fields(buf):
        if field == 1 and wire == 2:
            try:
                m.name = value.decode("utf-8")  # type: ignore[union-attr]
            except UnicodeDecodeError:
                raise DecodeError("metric name is not UTF-8") from None
        elif field == 2 and wire == 0:
            m.alias = value  # type: ignore[assignment]
        elif field == 3 and wire == 0:
            m.timestamp = value  # type: ignore[assignment]
        elif field == 4 and wire == 0:
            m.datatype = value  # type: ignore[assignment]
        elif field == 7 and wire == 0:
            m.is_null = bool(value)
        elif field in (10, 11) and wire == 0:
            m.value = value
        elif field == 12 and wire == 5:
            m.value = _F32.unpack(value)[0]
        elif field == 13 and wire == 1:
            m.value = _F64.unpack(value)[0]
        elif field == 14 and wire == 0:
            m.value = bool(value)
        elif field == 15 and wire == 2:
            m.value = value.decode("utf-8", "replace")  # type: ignore[union-attr]
        elif field == 9 and wire == 2:
            m.quality = _quality(value)  # type: ignore[arg-type]
    bits = _SIGNED_BITS.get(m.datatype)
    if bits and isinstance(m.value, int) and not isinstance(m.value, bool):
        v = m.value & ((1 << bits) - 1)  # int_value holds the two's complement in a uint32
        m.value = v - (1 << bits) if v >> (bits - 1) else v
    return m


def _quality(buf: bytes) -> int | None:
    """The ``Quality`` entry of a PropertySet (keys 1, values 2, paired in order) as an int32, or None."""
    keys: list[bytes] = []
    values: list[bytes] = []
    for field, wire, value in _fields(buf):
        if wire == 2 and field in (1, 2):
            (keys if field == 1 else values).append(value)  # type: ignore[arg-type]
    for k, v in zip(keys, values):
        if k.lower() == b"quality":
            for field, wire, value in _fields(v):
                if field in (3, 4) and wire == 0:  # int_value (uint32 on the wire), long_value
                    q = int(value) & 0xFFFFFFFF  # type: ignore[call-overload]
                    return q - (1 << 32) if q >> 31 else q
            return None
    return None


# -- encoding (the simulator and tests publish Sparkplug B too) ----------------------------


def _put_varint(out: bytearray, value: int) -> None:
    out += encode_varint(value)


def _put_key(out: bytearray, field: int, wire: int) -> None:
    out += key(field, wire)


def _put_bytes(out: bytearray, field: int, data: bytes) -> None:
    out += len_field(field, data)


def encode_metric(name: str | None, value: object, alias: int | None = None, datatype: int | None = None,
                  timestamp: int | None = None, quality: int | None = None) -> bytes:
    """One Metric: floats as Double, bools as Boolean, ints as Int64, str as String, None as is_null;
    ``quality`` as Ignition's ``Quality`` property (an Int32)."""
    out = bytearray()
    if name is not None:
        _put_bytes(out, 1, name.encode())
    if alias is not None:
        _put_key(out, 2, 0)
        _put_varint(out, alias)
    if timestamp is not None:
        _put_key(out, 3, 0)
        _put_varint(out, timestamp)
    if datatype is None:
        datatype = (BOOLEAN if isinstance(value, bool) else INT64 if isinstance(value, int)
                    else STRING if isinstance(value, str) else DOUBLE)
    _put_key(out, 4, 0)
    _put_varint(out, datatype)
    if value is None:
        _put_key(out, 7, 0)
        _put_varint(out, 1)
    elif datatype == BOOLEAN:
        _put_key(out, 14, 0)
        _put_varint(out, int(bool(value)))
    elif datatype in (INT8, INT16, INT32, UINT8, UINT16, UINT32):
        _put_key(out, 10, 0)
        _put_varint(out, int(value) & 0xFFFFFFFF)  # type: ignore[call-overload]
    elif datatype in (INT64, UINT64):
        _put_key(out, 11, 0)
        _put_varint(out, int(value))  # type: ignore[call-overload]
    elif datatype == FLOAT:
        _put_key(out, 12, 5)
        out += _F32.pack(float(value))  # type: ignore[arg-type]
    elif datatype == DOUBLE:
        _put_key(out, 13, 1)
        out += _F64.pack(float(value))  # type: ignore[arg-type]
    else:
        _put_bytes(out, 15, str(value).encode())
    if quality is not None:
        prop = bytearray()
        _put_key(prop, 1, 0)
        _put_varint(prop, INT32)  # PropertyValue.type
        _put_key(prop, 3, 0)
        _put_varint(prop, quality & 0xFFFFFFFF)
        props = bytearray()
        _put_bytes(props, 1, b"Quality")
        _put_bytes(props, 2, bytes(prop))
        _put_bytes(out, 9, bytes(props))
    return bytes(out)


def encode_payload(metrics: list[bytes], timestamp: int | None = None, seq: int | None = None) -> bytes:
    """A Payload from encoded metrics (see :func:`encode_metric`)."""
    out = bytearray()
    if timestamp is not None:
        _put_key(out, 1, 0)
        _put_varint(out, timestamp)
    for m in metrics:
        _put_bytes(out, 2, m)
    if seq is not None:
        _put_key(out, 3, 0)
        _put_varint(out, seq)
    return bytes(out)


# -- rebirth requests (Sparkplug 3.0: an NCMD at QoS 0, not retained, timestamped, no seq) --------

REBIRTH_METRIC = "Node Control/Rebirth"


def rebirth_request(now_ms: int) -> bytes:
    """An NCMD payload asking an edge node for its births again: ``Node Control/Rebirth`` = true (Boolean),
    the time it was sent, and no sequence number (commands carry none)."""
    return encode_payload([encode_metric(REBIRTH_METRIC, True, datatype=BOOLEAN)], timestamp=now_ms)


def asks_rebirth(metrics: list[Metric]) -> bool:
    """Whether a command's metrics ask for a rebirth: ``Node Control/Rebirth`` by name, and true."""
    return any(m.name == REBIRTH_METRIC and m.value is True for m in metrics)
