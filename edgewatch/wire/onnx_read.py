"""Just enough of the protobuf wire format to read and rewrite an ONNX file's metadata, without ``onnx``.

The agent must verify signed models where neither torch nor the ``onnx``
package is installed (``onnx`` is in the ``[train]`` extra), and the
generated ``ModelProto`` classes live only in ``onnx``. The signature needs
far less than a full parser: the top-level fields of ``ModelProto`` as raw
byte spans, the ``metadata_props`` entries (field 14, each a
``StringStringEntryProto``: key = 1, value = 2), and a walk of the graph that
finds tensors stored in external files. Everything here works on the raw
bytes, so a file is never re-serialized: a signed file's graph bytes are the
exact bytes that were signed.

Field numbers are those of ``onnx/onnx.proto`` (IR version 3 to 11), which
are frozen by protobuf compatibility rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from edgewatch.errors import BadModelFile
from edgewatch.wire.protobuf import I32, I64, LEN, VARINT, len_field
from edgewatch.wire.protobuf import read_varint as _varint

MODEL_GRAPH = 7
MODEL_METADATA_PROPS = 14
MODEL_TRAINING_INFO = 20
MODEL_FUNCTIONS = 25
MAX_DEPTH = 64  # nested subgraphs (Loop/If bodies) deeper than this are refused as absurd


@dataclass(frozen=True)
class Field:
    """One top-level record: its number, wire type and the byte span of the whole record."""

    number: int
    wire_type: int
    start: int  # first byte of the tag
    value_start: int  # first byte of the payload (after a LEN record's length)
    end: int


def fields(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Field]:
    """The records of one message in ``data[start:end]``; ValueError when they do not parse."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        tag_start = pos
        tag, pos = _varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == VARINT:
            value_start = pos
            _, pos = _varint(data, pos, end)
        elif wire == I64:
            value_start, pos = pos, pos + 8
        elif wire == I32:
            value_start, pos = pos, pos + 4
        elif wire == LEN:
            length, value_start = _varint(data, pos, end)
            pos = value_start + length
        else:  # groups (3, 4) are not used by onnx.proto
            raise ValueError(f"wire type {wire} in field {number}")
        if pos > end:
            raise ValueError(f"field {number} runs past the end of its message")
        yield Field(number, wire, tag_start, value_start, pos)


def metadata_record(key: str, value: str) -> bytes:
    """The bytes of one ``metadata_props`` entry, to append to a ``ModelProto``."""
    entry = len_field(1, key.encode("utf-8")) + len_field(2, value.encode("utf-8"))
    return len_field(MODEL_METADATA_PROPS, entry)


@dataclass
class ModelBytes:
    """A parsed ``ModelProto``: every top-level record, and the metadata entries decoded."""

    data: bytes
    records: list[Field]
    metadata: list[tuple[str, str, Field]]  # (key, value, the record holding it), in file order

    @classmethod
    def parse(cls, data: bytes, source: str = "model") -> ModelBytes:
        """Parse the top level; BadModelFile when the bytes are not a protobuf ``ModelProto``."""
        try:
            records = list(fields(data))
            metadata = []
            for rec in records:
                if rec.number != MODEL_METADATA_PROPS:
                    continue
                if rec.wire_type != LEN:
                    raise ValueError("metadata_props is not a message")
                key = value = ""
                for f in fields(data, rec.value_start, rec.end):
                    if f.wire_type == LEN and f.number in (1, 2):
                        text = data[f.value_start:f.end].decode("utf-8")
                        key, value = (text, value) if f.number == 1 else (key, text)
                metadata.append((key, value, rec))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadModelFile(f"{source} is not an ONNX model file (truncated or corrupt?): {exc}") from None
        if not any(r.number == MODEL_GRAPH and r.wire_type == LEN for r in records):
            raise BadModelFile(f"{source} is not an ONNX model file: it has no graph")
        return cls(data, records, metadata)

    def without(self, drop: set[int]) -> bytes:
        """The file's bytes with the records starting at the offsets in ``drop`` cut out."""
        return b"".join(self.data[r.start:r.end] for r in self.records if r.start not in drop)

    def body(self) -> bytes:
        """Every top-level record except ``metadata_props``, in file order: graph, opsets, IR version..."""
        return b"".join(self.data[r.start:r.end] for r in self.records if r.number != MODEL_METADATA_PROPS)

    def external_tensors(self) -> list[str]:
        """Names of tensors whose data lives in side files (which no signature over this file covers)."""
        found: list[str] = []
        try:
            for rec in self.records:
                if rec.wire_type != LEN:
                    continue
                if rec.number == MODEL_GRAPH:
                    _scan_graph(self.data, rec.value_start, rec.end, found, 0)
                elif rec.number == MODEL_TRAINING_INFO:  # TrainingInfoProto: initialization 1, algorithm 2
                    for f in fields(self.data, rec.value_start, rec.end):
                        if f.number in (1, 2) and f.wire_type == LEN:
                            _scan_graph(self.data, f.value_start, f.end, found, 0)
                elif rec.number == MODEL_FUNCTIONS:  # FunctionProto: node 7
                    for f in fields(self.data, rec.value_start, rec.end):
                        if f.number == 7 and f.wire_type == LEN:
                            _scan_node(self.data, f.value_start, f.end, found, 0)
        except ValueError as exc:
            raise BadModelFile(f"the model's graph does not parse: {exc}") from None
        return found


def _scan_graph(data: bytes, start: int, end: int, found: list[str], depth: int) -> None:
    # GraphProto: node 1, initializer 5 (TensorProto), sparse_initializer 15 (SparseTensorProto)
    if depth > MAX_DEPTH:
        raise ValueError(f"subgraphs nested deeper than {MAX_DEPTH}")
    for f in fields(data, start, end):
        if f.wire_type != LEN:
            continue
        if f.number == 1:
            _scan_node(data, f.value_start, f.end, found, depth)
        elif f.number == 5:
            _scan_tensor(data, f.value_start, f.end, found)
        elif f.number == 15:
            _scan_sparse(data, f.value_start, f.end, found)


def _scan_node(data: bytes, start: int, end: int, found: list[str], depth: int) -> None:
    # NodeProto: attribute 5; AttributeProto: t 5, g 6, tensors 10, graphs 11, sparse_tensor 22, sparse_tensors 23
    for f in fields(data, start, end):
        if f.number != 5 or f.wire_type != LEN:
            continue
        for a in fields(data, f.value_start, f.end):
            if a.wire_type != LEN:
                continue
            if a.number in (5, 10):
                _scan_tensor(data, a.value_start, a.end, found)
            elif a.number in (6, 11):
                _scan_graph(data, a.value_start, a.end, found, depth + 1)
            elif a.number in (22, 23):
                _scan_sparse(data, a.value_start, a.end, found)


def _scan_sparse(data: bytes, start: int, end: int, found: list[str]) -> None:
    for f in fields(data, start, end):  # SparseTensorProto: values 1, indices 2 (TensorProto)
        if f.number in (1, 2) and f.wire_type == LEN:
            _scan_tensor(data, f.value_start, f.end, found)


def _scan_tensor(data: bytes, start: int, end: int, found: list[str]) -> None:
    # TensorProto: name 8, external_data 13, data_location 14 (EXTERNAL = 1)
    name, external = "", False
    for f in fields(data, start, end):
        if f.number == 8 and f.wire_type == LEN:
            name = data[f.value_start:f.end].decode("utf-8", "replace")
        elif f.number == 13:
            external = True
        elif f.number == 14 and f.wire_type == VARINT:
            external = external or _varint(data, f.value_start, f.end)[0] == 1
    if external:
        found.append(name or "<unnamed>")
