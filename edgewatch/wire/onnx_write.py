"""Writing a small ONNX graph as protobuf bytes, with neither torch nor the ``onnx`` package.

Why: the NumPy-only families (``pca``) are fitted where only the agent is
installed (``edgewatch train pca`` on the base install, ``agent run
--learn`` on the device). The base install carries ONNX Runtime, which
*reads* ONNX, but not the ``onnx`` package (about 17 MB with protobuf),
which is only needed to *build* graphs. The ONNX file format is a
protobuf message (``onnx/onnx.proto``, proto2); the handful of messages a
plain graph of float tensors needs is written here by hand: ModelProto,
GraphProto, NodeProto, AttributeProto (int and ints), TensorProto (float32
and int64 as ``raw_data``), ValueInfoProto with static or named dims, and
the string metadata. Field numbers are those of ``onnx.proto``; a test
reads the bytes back with the ``onnx`` package where it is installed and
every file is loaded by ONNX Runtime before it is kept.

Fails (``ValueError``) on a tensor type other than float32/int64 or an
attribute other than int/ints: nothing else is needed yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence, Union

import numpy as np

from edgewatch.wire.protobuf import len_field as _bytes
from edgewatch.wire.protobuf import varint_field as _int

IR_VERSION = 8  # the IR version that goes with opset 17
OPSET = 17
FLOAT, INT64 = 1, 7  # TensorProto.DataType
_ATTR_INT, _ATTR_INTS = 2, 7  # AttributeProto.AttributeType
_DTYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}

Dim = Union[int, str]  # a static size or a symbolic name ("batch")


def _str(number: int, value: str) -> bytes:
    return _bytes(number, value.encode("utf-8"))


@dataclass
class Node:
    """One operator: ``op`` reads ``inputs`` and writes ``outputs``; ``attrs`` are ints or lists of ints."""

    op: str
    inputs: Sequence[str]
    outputs: Sequence[str]
    attrs: Mapping[str, int | Sequence[int]] = field(default_factory=dict)
    name: str = ""

    def encode(self) -> bytes:
        out = b"".join(_str(1, i) for i in self.inputs) + b"".join(_str(2, o) for o in self.outputs)
        out += _str(3, self.name or f"{self.op}_{self.outputs[0]}") + _str(4, self.op)
        for key, value in self.attrs.items():
            if isinstance(value, (int, np.integer)):
                attr = _str(1, key) + _int(3, int(value)) + _int(20, _ATTR_INT)
            elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in value):
                attr = _str(1, key) + b"".join(_int(8, int(v)) for v in value) + _int(20, _ATTR_INTS)
            else:
                raise ValueError(f"attribute {key!r} of {self.op}: only int and list-of-int attributes are supported")
            out += _bytes(5, attr)
        return out


def _tensor(name: str, array: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(array)
    if arr.dtype not in _DTYPES:
        raise ValueError(f"initializer {name!r}: dtype {arr.dtype} (only float32 and int64 are supported)")
    out = b"".join(_int(1, d) for d in arr.shape) + _int(2, _DTYPES[arr.dtype]) + _str(8, name)
    return out + _bytes(9, arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())


def _value_info(name: str, elem_type: int, shape: Sequence[Dim]) -> bytes:
    dims = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def model_bytes(nodes: Sequence[Node], inputs: Mapping[str, Sequence[Dim]], outputs: Mapping[str, Sequence[Dim]],
                initializers: Mapping[str, np.ndarray], metadata: Mapping[str, str], *,
                graph_name: str = "edgewatch", producer: str = "edgewatch") -> bytes:
    """A whole ONNX model (float32 inputs and outputs) as bytes, ready to write or hand to ONNX Runtime."""
    graph = b"".join(_bytes(1, n.encode()) for n in nodes) + _str(2, graph_name)
    graph += b"".join(_bytes(5, _tensor(k, v)) for k, v in initializers.items())
    graph += b"".join(_bytes(11, _value_info(k, FLOAT, s)) for k, s in inputs.items())
    graph += b"".join(_bytes(12, _value_info(k, FLOAT, s)) for k, s in outputs.items())
    model = _int(1, IR_VERSION) + _str(2, producer) + _bytes(7, graph) + _bytes(8, _str(1, "") + _int(2, OPSET))
    model += b"".join(_bytes(14, _str(1, k) + _str(2, v)) for k, v in metadata.items())
    return model


def float32(values: object) -> np.ndarray:
    """An initializer value as float32 (the graph's only float type)."""
    return np.asarray(values, dtype=np.float32)


def int64(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


__all__ = ["Node", "model_bytes", "float32", "int64", "OPSET", "IR_VERSION"]
