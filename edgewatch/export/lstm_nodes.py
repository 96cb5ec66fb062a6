"""What the LSTM rewrites of export share: the ``LSTM`` nodes torch writes for ``nn.LSTM``, read and checked.

Both rewrites (:mod:`edgewatch.export.unroll`, :mod:`edgewatch.export.sentinel`)
take the graph ``torch.onnx.export`` writes and change its ``LSTM`` nodes;
they can only do that for what torch writes: forward direction, default
activations, no peepholes, no sequence lengths, no clip, zero initial
states (a ``ConstantOfShape`` of zeros), weights as constants.
:func:`check_supported` refuses anything else with the reason
(:class:`BadModelFile`), so a family whose LSTM differs fails at export.
Train/export time only: imports ``onnx`` lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgewatch.errors import BadModelFile

# ops that move values without changing them: an LSTM output keeps its bounds through them
PASSTHROUGH = frozenset({"Squeeze", "Unsqueeze", "Transpose", "Reshape", "Identity", "Flatten"})


def static_steps(node: "onnx.NodeProto", shapes: dict[str, Any]) -> int:  # noqa: F821
    """The node's sequence length; BadModelFile when the graph does not fix it."""
    shape = shapes.get(node.input[0])
    dim = shape.dim[0] if shape is not None and len(shape.dim) == 3 else None
    if dim is None or not dim.HasField("dim_value"):
        raise BadModelFile(f"LSTM node {node.name!r}: its sequence length is not static, so it cannot be "
                           "rewritten (export with a static window)")
    return int(dim.dim_value)


def constant(name: str, inits: dict[str, Any], consts: dict[str, Any]) -> np.ndarray | None:
    """The float32 value of an initializer or Constant output called ``name`` (None for an empty name)."""
    from onnx import numpy_helper

    if not name:
        return None
    if name in inits:
        return numpy_helper.to_array(inits[name]).astype(np.float32)
    if name in consts:
        return numpy_helper.to_array(consts[name].attribute[0].t).astype(np.float32)
    raise BadModelFile(f"LSTM weight {name!r} is not a constant of the graph; cannot rewrite it")


def check_supported(node: "onnx.NodeProto", producers: dict[str, Any]) -> None:  # noqa: F821
    """BadModelFile naming what the node has beyond what torch writes for ``nn.LSTM``."""
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    direction = attrs.get("direction", b"forward")
    problems = []
    if direction not in (b"forward", "forward"):
        problems.append(f"direction {direction!r}")
    for name in ("activations", "clip", "input_forget"):
        if attrs.get(name) not in (None, 0, [b"Sigmoid", b"Tanh", b"Tanh"]):
            problems.append(f"{name}={attrs[name]!r}")
    if attrs.get("layout", 0) != 0:
        problems.append("layout=1")
    extra = list(node.input[4:])
    if len(extra) > 0 and extra[0]:
        problems.append("sequence lengths")
    if len(extra) > 3 and extra[3]:
        problems.append("peepholes")
    for state in extra[1:3]:
        src = producers.get(state) if state else None
        zero = src is not None and src.op_type == "ConstantOfShape" and all(
            not numpy_helper.to_array(a.t).any() for a in src.attribute)
        if state and not zero:
            problems.append(f"an initial state {state!r} that is not zeros")
    if problems:
        raise BadModelFile(f"LSTM node {node.name!r} has {', '.join(problems)}; only forward LSTMs as "
                           "torch exports nn.LSTM can be rewritten")


def drop_unused(graph: "onnx.GraphProto") -> None:  # noqa: F821
    """Remove nodes and initializers nothing reads any more (old LSTM weights, zero-state builders)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output) or node.op_type in ("Loop", "If", "Scan"):
            keep.append(node)
            needed.update(i for i in node.input if i)
            needed.update(_subgraph_inputs(node))
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def _subgraph_inputs(node: "onnx.NodeProto") -> set[str]:  # noqa: F821
    from onnx import AttributeProto

    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            for n in g.node:
                names.update(i for i in n.input if i)
                names.update(_subgraph_inputs(n))
    return names
