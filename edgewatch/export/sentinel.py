"""LSTMs as ONNX Runtime's fused int8 ``DynamicQuantizeLSTM``, made stream-isolated with sentinel units.

Why: ``DynamicQuantizeLSTM`` is ONNX Runtime's fastest LSTM (measured on the
2-core AMD EPYC, AVX2, trained S0 model, one thread, per window at 32
windows a call: 65 µs against 90 for the fp32 ``LSTM``, 77 for the unrolled
int8 form and 158 for PyTorch eager; docs/benchmarks.md),
but it quantizes the left operand of each of its GEMMs with a range taken
from that operand, per call: the input projection from every step of every
window of the call, each recurrent step from the hidden states of every
window at that step. So one window's values set the scale every other
window is rounded with (one window holding 100 among 127 put all 127 over
the threshold). Those ranges are ``[min(A, 0), max(A, 0)]`` of what the GEMM
reads; the sentinel form makes every row of every such operand hold the
range's two ends, so the range is the same in every call and a window's
score is its own.

How, for each LSTM layer of hidden size H (:func:`add_sentinels`):

* two *sentinel* units are appended (H + 2): no input or recurrent weights,
  gate biases i, f, o = :data:`SATURATE` and cell-gate bias +SATURATE for
  one, -SATURATE for the other. In float32 their gates are exactly 1 and
  +-1, so ``c_t = +-t`` and ``h_t = +-tanh(t)``: the largest |h| any unit can
  reach at step t (``|c_t| <= |c_{t-1}| + 1`` for every unit; up to ORT's
  rounding, see below). The recurrent
  GEMM of step t reads ``h_{t-1}``, so its range is ``+-tanh(t - 1)`` whatever
  the windows hold; the next layer's input GEMM reads every step, so its
  range is ``+-tanh(T)``;
* a layer reading another layer's output gets zero input weights for that
  layer's sentinels, and a Linear head zero rows: results are unchanged;
* the first layer's input (anything that is not an LSTM output: the
  scaled measurements) is made bounded: NaN becomes 0, values are clipped to
  ``[lo, hi]`` (the card's ``input_clip``, from the calibration samples'
  range widened by :data:`INPUT_MARGIN` of their span on each side) and two
  constant features ``lo`` and ``hi`` are appended, whose weights are 0. Only
  the network's input is clipped: the score still compares the
  reconstruction with the unclipped input, so a wild window scores wild,
  in its own row. Without the NaN step an all-NaN window made the min/max
  NaN for the whole call.

Then ``quantize_dynamic`` turns the layers into ``DynamicQuantizeLSTM``
with 7-bit weights (``reduce_range``), so that the file computes the same
integer sums on every CPU: ORT's u8 x s8 kernel for x86 without VNNI adds
pairs of products in 16-bit lanes with saturation (VPMADDUBSW; 255 x 127 x 2
overflows, 255 x 63 x 2 does not), VNNI, AMX and NEON do not saturate.
Measured with the S0 model, x86 (AMD EPYC, AVX2) against arm64 (NEON, under
qemu) on the same 397 windows: largest relative score difference 6.1 %
with 8-bit weights, 0.12 % with 7-bit, so the parity the export measures
holds where the file runs. The 8th bit was worth less than that: mean
relative score error against fp32 on 13,328 nominal simulator windows 0.053
(8-bit) and 0.081 (7-bit), decisions kept 99.985 % and 99.96 % (faulty
windows: 99.72 % and 99.65 %). The Linear head stays fp32
(:func:`~edgewatch.export.quantize.output_layer_nodes`).

When it fails: ORT's tanh in the LSTM is an approximation that is not
monotone in its last bits and reaches 1 + 2^-23: measured on this AMD EPYC
with crafted units, a unit whose i, f, o and cell gates all saturate at
every step can exceed a sentinel by up to 2 ulps, which would move a range
by 2.4e-7 relative for the whole call. Only units that saturate like a
sentinel get near it, so the export measures the headroom (:func:`headroom`:
the least gap between a sentinel and any real unit's |h|, on the calibration
windows, 512 windows at random corners of the clip range and windows all
NaN, +-inf or 0) and refuses the form below :data:`MIN_HEADROOM` (the S0
model: 0.0013, the bottleneck's last steps); ``--quantize auto`` then
exports fp32. The export's isolation check and the agent's load-time check
(:mod:`edgewatch.agent.isolation`) then run extreme companions (100, 1e6,
+-1e20, +-inf, NaN) against the file, the latter on the machine that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.errors import BadModelFile
from edgewatch.export.lstm_nodes import check_supported, constant, drop_unused

SATURATE = 1e4  # a gate bias far past where float32 sigmoid and tanh round to their limits (~17 and ~9)
INPUT_MARGIN = 0.5  # the clip range: the calibration samples' range widened by this share of its span, each side
N_SENTINELS = 2
# the least a sentinel must stay above every real unit: ~800x the 2.4e-7 by which ORT's tanh can overshoot
MIN_HEADROOM = 1e-4
N_CORNERS = 512  # windows at random corners of the clip range checked for headroom
# ops that keep an LSTM output's values and its last (unit) axis where it was
_KEEPS_UNITS = frozenset({"Squeeze", "Unsqueeze", "Identity", "Transpose"})


@dataclass(frozen=True)
class SentinelForm:
    """What the rewrite did: layers given sentinels, the first layer's input range (scaled units), headroom."""

    layers: int
    input_clip: tuple[float, float]
    headroom: float = float("inf")  # least gap between a sentinel and any real unit's |h| (see :func:`headroom`)
    windows: int = 0  # windows the headroom was measured on

    def line(self) -> str:
        return (f"sentinel int8: {self.layers} LSTM layers, input clipped to [{self.input_clip[0]:.4g}, "
                f"{self.input_clip[1]:.4g}] (scaled units); real units stay {self.headroom:.3g} or more below "
                f"the sentinels on {self.windows} windows (calibration and corners of the clip range)")


def sentinel_lstm_file(src: Path, dst: Path, calibration: np.ndarray, reduce_range: bool = True,
                       margin: float = INPUT_MARGIN) -> SentinelForm:
    """Write ``src`` with sentinel LSTMs, quantized to ``DynamicQuantizeLSTM``, to ``dst``."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgewatch.export.quantize import output_layer_nodes

    model = onnx.load(str(src))
    clip = input_clip_range(model, calibration, margin)
    layers = add_sentinels(model, clip)
    if layers == 0:
        return SentinelForm(0, clip)
    with tempfile.TemporaryDirectory(prefix=".edgewatch-sentinel-", dir=Path(dst).parent) as tmp:
        fp32 = Path(tmp) / "sentinel-fp32.onnx"
        onnx.save(model, str(fp32))
        quantize_dynamic(str(fp32), str(dst), weight_type=QuantType.QInt8, reduce_range=reduce_range,
                         nodes_to_exclude=output_layer_nodes(fp32))
    gap, n = headroom(dst, calibration)
    if gap < MIN_HEADROOM:
        from edgewatch.export.invariance import BatchDependentScores

        raise BatchDependentScores(
            f"sentinel int8: a real LSTM unit comes within {gap:.3g} of its layer's sentinels (need "
            f"{MIN_HEADROOM:g}), so ONNX Runtime's activation rounding could let one window move another's range; "
            "no file was written")
    return SentinelForm(layers, clip, gap, n)


def headroom(path: Path, calibration: np.ndarray, corners: int = N_CORNERS, seed: int = 0) -> tuple[float, int]:
    """The least gap, over every step of every sentinel layer, between the sentinel and the largest real |h|.

    Measured on the calibration windows, windows at random corners of the
    clip range (every value +-1e6: the clip takes them to its ends) and
    windows wholly NaN, +-inf or 0: where the reachable hidden states are
    widest. Returns (gap, windows measured).
    """
    import onnx
    import onnxruntime as ort

    from edgewatch.agent.model import session_options
    from edgewatch.contract import INPUT_NAME

    model = onnx.load(str(path))
    ys = [n.output[0] for n in model.graph.node if n.op_type == "DynamicQuantizeLSTM"]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in ys)
    session = ort.InferenceSession(model.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    shape = calibration.shape[1:]
    corner = np.where(rng.random((corners, *shape)) < 0.5, -1e6, 1e6)
    flat = np.stack([np.full(shape, v) for v in (np.nan, np.inf, -np.inf, 0.0)])
    x = np.concatenate([calibration, corner, flat]).astype(np.float32)
    gap = np.inf
    for at in range(0, len(x), 256):
        for y in session.run(ys, {INPUT_NAME: x[at:at + 256]}):
            y = y[:, 0]  # [T, B, H + 2]
            real = np.abs(y[..., :-N_SENTINELS]).max(axis=(1, 2))
            ends = np.minimum(y[..., -2].min(axis=1), -y[..., -1].max(axis=1))  # each step's smaller sentinel
            gap = min(gap, float((ends - real).min()))
    return gap, len(x)


def input_clip_range(model: "onnx.ModelProto", calibration: np.ndarray,  # noqa: F821
                     margin: float = INPUT_MARGIN) -> tuple[float, float]:
    """``[lo, hi]`` for the first layer's input: the calibration samples' range, widened by ``margin``."""
    import onnx
    import onnxruntime as ort

    from edgewatch.agent.model import session_options
    from edgewatch.contract import INPUT_NAME

    lstm_outputs = {n.output[0] for n in model.graph.node if n.op_type == "LSTM"}
    names = sorted({n.input[0] for n in model.graph.node if n.op_type == "LSTM"
                    and _origin(model.graph, n.input[0]) not in lstm_outputs})
    if not names:
        return (-1.0, 1.0)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in names if t not in known)
    session = ort.InferenceSession(probe.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])
    lo, hi = np.inf, -np.inf
    x = np.ascontiguousarray(calibration, dtype=np.float32)
    for at in range(0, len(x), 256):
        for value in session.run(names, {INPUT_NAME: x[at:at + 256]}):
            lo, hi = min(lo, float(value.min())), max(hi, float(value.max()))
    span = max(hi - lo, 1e-6)
    return (float(np.float32(lo - margin * span)), float(np.float32(hi + margin * span)))


def _origin(graph: "onnx.GraphProto", name: str) -> str:  # noqa: F821
    """The tensor ``name`` is a reshaped copy of (through value-keeping ops), or ``name`` itself."""
    producers = {o: n for n in graph.node for o in n.output}
    while name in producers and producers[name].op_type in _KEEPS_UNITS:
        name = producers[name].input[0]
    return name


def add_sentinels(model: "onnx.ModelProto", clip: tuple[float, float]) -> int:  # noqa: F821
    """Give every LSTM of ``model``'s main graph its two sentinel units, in place; returns how many.

    Raises :class:`BadModelFile` when an LSTM's output reaches anything but
    another LSTM or a MatMul with constant weights (through reshaping ops):
    those would read the sentinel units.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    if not lstms:
        return 0
    producers = {o: n for n in graph.node for o in n.output}
    for node in lstms:
        check_supported(node, producers)
        del node.input[5:]  # the initial states are zeros (checked): what ORT assumes without them
    drop_unused(graph)
    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    carriers: dict[str, int] = {}  # tensor holding an LSTM output with its sentinels last -> real units
    sanitized: dict[str, str] = {}
    new_nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []

    def init(name: str, value: np.ndarray) -> str:
        new_inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    for node in graph.node:
        reads = [i for i in node.input if i in carriers]
        if node.op_type == "LSTM":
            w, r, b = (constant(name, inits, consts) for name in node.input[1:4])
            hidden = int(r.shape[-1])
            x = node.input[0]
            if x in carriers:
                if carriers[x] != w.shape[-1]:
                    raise BadModelFile(f"LSTM {node.name!r} reads {w.shape[-1]} inputs from a layer of "
                                       f"{carriers[x]} units")
            else:
                if x not in sanitized:
                    sanitized[x], nodes = _bounded_input(x, clip, f"{node.name}/sentinel_input", init)
                    new_nodes.extend(nodes)
                x = sanitized[x]
            node.input[0] = x
            node.input[1] = init(f"{node.name}/sentinel_W", _grow_weights(w, hidden, w.shape[-1]))
            node.input[2] = init(f"{node.name}/sentinel_R", _grow_weights(r, hidden, hidden))
            node.input[3] = init(f"{node.name}/sentinel_B", _grow_bias(b, hidden))
            for attr in node.attribute:
                if attr.name == "hidden_size":
                    attr.i = hidden + N_SENTINELS
            for extra in node.output[1:]:
                if extra in used:
                    raise BadModelFile(f"LSTM {node.name!r}: its last hidden or cell state is read; the sentinel "
                                       "form supports layers read through their output sequence only")
            del node.output[1:]
            carriers[node.output[0]] = hidden
        elif reads:
            units = carriers[reads[0]]
            if node.op_type in _KEEPS_UNITS and node.input[0] == reads[0] and _keeps_last_axis(node, helper):
                carriers.update(dict.fromkeys(node.output, units))
            elif node.op_type == "MatMul" and node.input[0] == reads[0] and node.input[1] in inits:
                weight = numpy_helper.to_array(inits[node.input[1]])
                if weight.ndim != 2 or weight.shape[0] != units:
                    raise BadModelFile(f"MatMul {node.name!r} reads an LSTM of {units} units with weights "
                                       f"{list(weight.shape)}")
                pad = np.zeros((N_SENTINELS, weight.shape[1]), weight.dtype)
                node.input[1] = init(f"{node.name}/sentinel_rows", np.concatenate([weight, pad]))
            else:
                raise BadModelFile(f"{node.op_type} node {node.name!r} reads an LSTM's output; the sentinel form "
                                   "supports LSTM layers read by further LSTMs or a Linear (MatMul) head only")
        new_nodes.append(node)
    if any(o.name in carriers for o in graph.output):
        raise BadModelFile("an LSTM's output is a graph output; the sentinel form would expose its sentinel units")
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(new_inits)
    drop_unused(graph)
    return len(lstms)


def _keeps_last_axis(node: "onnx.NodeProto", helper) -> bool:  # noqa: ANN001, F821
    if node.op_type != "Transpose":
        return True
    perm = next((list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm"), None)
    return perm is not None and perm[-1] == len(perm) - 1


def _bounded_input(x: str, clip: tuple[float, float], prefix: str, init) -> tuple[str, list]:  # noqa: ANN001
    """Nodes turning ``x [T, B, F]`` into ``[T, B, F + 2]``: NaN -> 0, clipped to ``clip``, then lo and hi."""
    from onnx import helper

    lo, hi = (np.float32(v) for v in clip)
    zero, lo_n, hi_n = init(f"{prefix}/zero", np.float32(0)), init(f"{prefix}/lo", lo), init(f"{prefix}/hi", hi)
    pads = init(f"{prefix}/pads", np.array([0, 0, 0, 0, 0, 1], np.int64))
    nodes = [
        helper.make_node("IsNaN", [x], [f"{prefix}/isnan"], name=f"{prefix}/isnan"),
        helper.make_node("Where", [f"{prefix}/isnan", zero, x], [f"{prefix}/finite"], name=f"{prefix}/finite"),
        helper.make_node("Clip", [f"{prefix}/finite", lo_n, hi_n], [f"{prefix}/clipped"], name=f"{prefix}/clip"),
        helper.make_node("Pad", [f"{prefix}/clipped", pads, lo_n], [f"{prefix}/with_lo"], name=f"{prefix}/pad_lo"),
        helper.make_node("Pad", [f"{prefix}/with_lo", pads, hi_n], [f"{prefix}/bounded"], name=f"{prefix}/pad_hi"),
    ]
    return f"{prefix}/bounded", nodes


def _grow_weights(w: np.ndarray, hidden: int, n_in: int) -> np.ndarray:
    """``[1, 4H, n_in]`` -> ``[1, 4(H+2), n_in+2]``: each gate's rows in place, zeros for the sentinels."""
    h2 = hidden + N_SENTINELS
    out = np.zeros((1, 4 * h2, n_in + N_SENTINELS), np.float32)
    for gate in range(4):
        out[0, gate * h2:gate * h2 + hidden, :n_in] = w[0, gate * hidden:(gate + 1) * hidden, :n_in]
    return out


def _grow_bias(b: np.ndarray | None, hidden: int) -> np.ndarray:
    """``[1, 8H]`` -> ``[1, 8(H+2)]``; the sentinels' input biases saturate i, o, f and set g to +-1."""
    h2 = hidden + N_SENTINELS
    b = np.zeros((1, 8 * hidden), np.float32) if b is None else b
    out = np.zeros((1, 8 * h2), np.float32)
    for half in range(2):
        for gate in range(4):
            src = half * 4 * hidden + gate * hidden
            dst = half * 4 * h2 + gate * h2
            out[0, dst:dst + hidden] = b[0, src:src + hidden]
    for gate in range(3):  # ONNX gate order i, o, f, c
        out[0, gate * h2 + hidden:gate * h2 + h2] = SATURATE
    out[0, 3 * h2 + hidden] = SATURATE
    out[0, 3 * h2 + hidden + 1] = -SATURATE
    return out
