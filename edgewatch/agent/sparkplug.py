"""Sparkplug B payloads: a protobuf decoder (and encoder, for the simulator and tests) written from the public schema.

Only the part of ``sparkplug_b.proto`` (Eclipse Sparkplug 3.0) that
measurements need is read: ``Payload.timestamp`` (1), ``metrics`` (2),
``seq`` (3) and, per ``Metric``, ``name`` (1), ``alias`` (2), ``timestamp`` (3),
``datatype`` (4), ``is_null`` (7) and the scalar values ``int_value`` (10),
``long_value`` (11), ``float_value`` (12), ``double_value`` (13),
``boolean_value`` (14), ``string_value`` (15). Other fields (metadata,
properties, datasets, templates) are skipped by their wire type, so a
payload that carries them still decodes.

:class:`SparkplugDecoder` keeps what Sparkplug leaves implicit: the
alias -> name map from each edge node's birth certificates (NBIRTH,
DBIRTH) and the last value of every metric, because data messages carry
only the metrics that changed (report by exception). A measurement is the
model's features, by metric name, after each birth or data message that
touched one of them.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from edgewatch.agent.parsing import BadReason, Measurement
from edgewatch.protowire import DecodeError, encode_varint, key, len_field, read_varint

# Sparkplug B DataType enum values
INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FLOAT, DOUBLE, BOOLEAN, STRING = range(1, 13)
_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
_TEXT_TYPES = {STRING, 14, 15}  # String, Text, UUID

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


@dataclass
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int = 0
    is_null: bool = False
    value: object = None


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
    bits = _SIGNED_BITS.get(m.datatype)
    if bits and isinstance(m.value, int) and not isinstance(m.value, bool):
        v = m.value & ((1 << bits) - 1)  # int_value holds the two's complement in a uint32
        m.value = v - (1 << bits) if v >> (bits - 1) else v
    return m


# -- encoding (the simulator and tests publish Sparkplug B too) ----------------------------


def _put_varint(out: bytearray, value: int) -> None:
    out += encode_varint(value)


def _put_key(out: bytearray, field: int, wire: int) -> None:
    out += key(field, wire)


def _put_bytes(out: bytearray, field: int, data: bytes) -> None:
    out += len_field(field, data)


def encode_metric(name: str | None, value: object, alias: int | None = None, datatype: int | None = None,
                  timestamp: int | None = None) -> bytes:
    """One Metric: floats as Double, bools as Boolean, ints as Int64, str as String, None as is_null."""
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


# -- from messages to measurements ------------------------------------------------------------


class SparkplugDecoder:
    """Turns Sparkplug B messages into measurements of the model's features (one stream per device).

    ``decode`` returns a Measurement, a BadReason, or None for a message that
    is not bad but is no measurement either (a death certificate, a command,
    a STATE message, data touching none of the features).
    """

    def __init__(self, features: list[str]) -> None:
        self.features = list(features)
        self._index = {f: i for i, f in enumerate(features)}
        self._aliases: dict[tuple[str, str], dict[int, str]] = {}  # (group, node) -> alias -> name
        self._last: dict[str, list[float | None]] = {}  # stream -> last value per feature

    def decode(self, topic: str, payload: bytes) -> Measurement | BadReason | None:
        parts = topic.split("/")
        if len(parts) < 4 or parts[2] not in ("NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH"):
            return None  # STATE, NCMD/DCMD, or not Sparkplug topic layout
        group, kind, node = parts[1], parts[2], parts[3]
        device = "/".join(parts[4:])
        stream = "/".join(["spBv1.0", group, node] + ([device] if device else []))
        if kind.endswith("DEATH"):
            if kind == "NDEATH":
                for gone in [k for k in self._last if k == stream or k.startswith(stream + "/")]:
                    del self._last[gone]
            else:
                self._last.pop(stream, None)
            return None
        try:
            ts_ms, _seq, metrics = decode_payload(payload)
        except (DecodeError, struct.error):
            return BadReason.BAD_PAYLOAD
        aliases = self._aliases.setdefault((group, node), {})
        if kind == "NBIRTH":
            aliases.clear()  # a new session of the edge node: its aliases may have changed
        last = self._last.get(stream)
        if last is None or kind.endswith("BIRTH"):
            last = [None] * len(self.features)
        update: list[tuple[int, float]] = []
        latest_ms = None
        for m in metrics:
            name = m.name
            if kind.endswith("BIRTH") and name is not None and m.alias is not None:
                aliases[m.alias] = name
            if name is None:
                if m.alias is None:
                    continue
                name = aliases.get(m.alias)
                if name is None:
                    return BadReason.UNKNOWN_ALIAS
            j = self._index.get(name)
            if j is None:
                continue
            v = m.value
            if m.is_null or v is None or m.datatype in _TEXT_TYPES or isinstance(v, (str, bytes)):
                return BadReason.NOT_NUMBER
            f = float(v)  # type: ignore[arg-type]
            if not math.isfinite(f):
                return BadReason.NON_FINITE
            update.append((j, f))
            if m.timestamp is not None:
                latest_ms = m.timestamp if latest_ms is None else max(latest_ms, m.timestamp)
        if not update:
            if kind.endswith("BIRTH"):
                self._last[stream] = last
            return None
        for j, f in update:
            last[j] = f
        self._last[stream] = last
        if any(v is None for v in last):
            return BadReason.WRONG_ARITY
        ms = latest_ms if latest_ms is not None else ts_ms
        return Measurement(list(last), ms / 1000.0 if ms else None, stream)  # type: ignore[arg-type]
