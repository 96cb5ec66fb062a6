"""The protobuf wire format's primitives, shared by the codecs edgewatch writes by hand.

Three formats are read or written without generated protobuf classes:
ONNX files (``wire/onnx_read.py`` reads them and appends signatures on
an install without the ``onnx`` package; ``wire/onnx_write.py`` writes
the torch-free families) and Sparkplug B payloads (``agent/sources/sparkplug.py``).
The protobuf package would be a dependency the agent needs for nothing
else. Wire types and varints follow protobuf's published encoding.
"""

from __future__ import annotations

VARINT, I64, LEN, I32 = 0, 1, 2, 5


class DecodeError(ValueError):
    """The bytes are not a protobuf message of the expected shape."""


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``data[pos]``; DecodeError when truncated or over 64 bits."""
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise DecodeError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def encode_varint(value: int) -> bytes:
    """A varint; a negative value (int32/int64 fields) as its 64-bit two's complement, ten bytes."""
    value = int(value) & ((1 << 64) - 1)
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    """A field's tag: its number and wire type."""
    return encode_varint(number << 3 | wire)


def varint_field(number: int, value: int) -> bytes:
    return key(number, VARINT) + encode_varint(value)


def len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (bytes, string, embedded message)."""
    return key(number, LEN) + encode_varint(len(payload)) + payload
