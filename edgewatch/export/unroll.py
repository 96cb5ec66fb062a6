"""ONNX ``LSTM`` nodes unrolled into int8 MatMuls with fixed scales: int8 speed, batch-invariant scores.

Why: ONNX Runtime's only int8 LSTM is ``DynamicQuantizeLSTM``, which picks
the activation scale from the whole input tensor of each call, so a
window's score depends on the other windows of its batch (one window
holding 100 among 127 normal ones put all 127 over the threshold; the
sentinel form, :mod:`edgewatch.export.sentinel`, now fixes those ranges and
is faster, so this form stays as ``--quantize unrolled`` for comparison). The
window length is static in every edgewatch file, so the loop over time
can be unrolled and every gate written as a ``MatMulIntegerToFloat``
whose activation scale is *fixed* in the file: the MatMuls read hidden
states ``h = o * tanh(c)``, which lie in [-1, 1] by construction, so the
scale is 2/255 (uint8, zero point 128) of that range, narrowed to what the
calibration samples reach (x 1.25) when they stay well inside it. Each value
is quantized on its own, so a window's score is the same alone or in any
batch (a value beyond the range saturates in its own window only). An input projection of anything that is not a hidden
state (the scaled measurements of the first layer) stays fp32: a small
share of the work (4 x 640 of about 300k multiply-adds a step at S0), and
any input value, however extreme, stays exact.

Layout of one unrolled layer (input ``X [T, B, in]``, gates ``i f o c``):

* bounded input (another LSTM's ``Y``): ``Xq = Quantize(X)`` split into
  steps; per step one ``MatMulIntegerToFloat`` per gate over
  ``concat(Xq[t], hq)`` with the stacked ``[W; R]`` weights and the bias;
* other input: ``X @ W_g + b_g`` in fp32 per gate, split into steps; per
  step ``+ MatMulIntegerToFloat(hq, R_g)``;
* then ``c = f * c + i * g``, ``h = o * tanh(c)``, ``hq = Quantize(h)``;
  ``Y`` = the steps' ``h`` concatenated, as ``[T, 1, B, H]``.

One MatMul per gate, not one per step split four ways: the Split copies
cost as much as the int8 GEMMs saved (measured at S0, batch 128, CPU time
per window on a 2-core AMD EPYC: fp32 ``LSTM`` 135 µs, dynamic int8 93 µs,
unrolled with one MatMul and Splits 121 µs, one MatMul per gate 88 µs).

Only what the torch exporter writes for ``nn.LSTM`` is supported: forward
direction, default activations, no peepholes, no sequence lengths, no
clip, zero initial states. Anything else raises :class:`BadModelFile`
with the reason, so a family whose LSTM differs fails at export, not at
run time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgewatch.errors import BadModelFile
from edgewatch.export.lstm_nodes import (PASSTHROUGH, check_supported, constant, drop_unused,
                                            static_steps)


def unroll_lstm_file(src: Path, dst: Path, int8: bool = True, calibration: np.ndarray | None = None) -> int:
    """Write ``src`` with every LSTM node unrolled to ``dst``; returns how many were unrolled.

    With ``calibration`` samples, each layer's hidden-state scale covers what
    they reach (x :data:`RANGE_MARGIN`, at most [-1, 1]) instead of all of
    [-1, 1]: finer steps where the states stay small. A value beyond it
    saturates, in its own window only.
    """
    import onnx

    model = onnx.load(str(src))
    ranges = hidden_ranges(model, calibration) if int8 and calibration is not None else {}
    n = unroll_lstm(model, int8, ranges)
    onnx.save(model, str(dst))
    return n


RANGE_MARGIN = 1.25


def hidden_ranges(model: "onnx.ModelProto", calibration: np.ndarray) -> dict[str, float]:  # noqa: F821
    """Largest |value| of each LSTM node's input and hidden states on the calibration samples."""
    import onnx
    import onnxruntime as ort

    from edgewatch.agent.model import session_options
    from edgewatch.contract import INPUT_NAME

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    lstms = [n for n in probe.graph.node if n.op_type == "LSTM"]
    names = sorted({t for n in lstms for t in (n.input[0], n.output[0])})
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in names if t not in known)
    session = ort.InferenceSession(probe.SerializeToString(), session_options(1),
                                   providers=["CPUExecutionProvider"])
    peak = dict.fromkeys(names, 0.0)
    x = np.ascontiguousarray(calibration, dtype=np.float32)
    for lo in range(0, len(x), 256):
        for name, value in zip(names, session.run(names, {INPUT_NAME: x[lo:lo + 256]})):
            peak[name] = max(peak[name], float(np.abs(value).max(initial=0.0)))
    out = {n.name: max(peak[n.output[0]], peak[n.input[0]]) for n in lstms}
    out.update({n.name + "#own": peak[n.output[0]] for n in lstms})
    return out


def unroll_lstm(model: "onnx.ModelProto", int8: bool = True,  # noqa: F821 - onnx is imported lazily
                ranges: dict[str, float] | None = None) -> int:
    """Replace the LSTM nodes of ``model``'s main graph in place; returns how many were replaced.

    With ``int8``, every MatMul whose input is an LSTM hidden state (the
    recurrent ones, and the input projection of a layer fed by another
    LSTM) becomes a ``MatMulIntegerToFloat`` with int8 per-column weights
    and a *fixed* activation scale: a hidden state ``o * tanh(c)`` lies in
    [-1, 1] by construction, so the scale 2/255 needs no calibration and
    never saturates. An input projection of anything else (the scaled
    measurements) stays fp32: it is a small share of the work (4 x 640 of
    about 300k multiply-adds a step at S0) and keeps any input value,
    however extreme, exact.
    """
    import onnx

    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: v.type.tensor_type.shape for v in
              list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    producers = {o: n for n in graph.node for o in n.output}
    bounded: set[str] = set()  # tensors known to lie in [-1, 1]
    new_nodes: list[onnx.NodeProto] = []
    count = 0
    for node in graph.node:
        if node.op_type != "LSTM":
            new_nodes.append(node)
            if node.op_type in PASSTHROUGH and node.input and node.input[0] in bounded:
                bounded.update(node.output)
            continue
        count += 1
        steps = static_steps(node, shapes)
        weights = [constant(name, inits, consts) for name in node.input[1:4]]
        check_supported(node, producers)
        builder = _Layer(node.name or f"lstm{count}", steps, *weights, int8=int8)
        outputs = list(node.output) + [""] * (3 - len(node.output))
        bounded_input = node.input[0] in bounded
        # the scale serves the layer's own states and, when it reads another layer's, those too
        reach = (ranges or {}).get(node.name, 1.0) if bounded_input else _own_range(ranges, node)
        h_range = float(min(1.0, RANGE_MARGIN * reach)) if reach > 0 else 1.0
        new_nodes.extend(builder.nodes(node.input[0], outputs, input_bounded=bounded_input, h_range=h_range))
        graph.initializer.extend(builder.initializers)
        bounded.update(o for o in outputs if o)
    if count:
        del graph.node[:]
        graph.node.extend(new_nodes)
        drop_unused(graph)
        if int8 and not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return count


def _own_range(ranges: dict[str, float] | None, node: "onnx.NodeProto") -> float:  # noqa: F821
    """An unbounded input (measurements) is fp32 in the graph, so only the layer's own states count."""
    return (ranges or {}).get(node.name + "#own", (ranges or {}).get(node.name, 1.0))


# a hidden state in [-1, 1] as uint8: q = round(h / scale) + 128
H_SCALE = np.float32(2.0 / 255.0)
H_ZERO = np.uint8(128)
# weights in 7 bits (+-63): x86 CPUs without VNNI multiply uint8 by int8 with VPMADDUBSW, which adds pairs
# of products into int16 and saturates (255 * 127 * 2 > 32767); at +-63 no pair can. Measured on the S0
# model against PyTorch: 8-bit weights, mean relative score error 4.6 % (max 0.80); 7-bit, 2.3 % (max 0.21)
WEIGHT_MAX = 63


class _Layer:
    """The nodes and weights of one unrolled LSTM layer, one MatMul per gate (no Split copies)."""

    def __init__(self, name: str, steps: int, w: np.ndarray, r: np.ndarray, b: np.ndarray | None,
                 int8: bool = False) -> None:
        hidden = r.shape[-1]
        bias = np.zeros(8 * hidden, np.float32) if b is None else b.reshape(-1)
        bias = bias[:4 * hidden] + bias[4 * hidden:]
        gate = {name: k for k, name in enumerate("iofc")}  # ONNX gate order
        rows = {g: slice(k * hidden, (k + 1) * hidden) for g, k in gate.items()}
        self.name, self.steps, self.hidden, self.int8 = name, steps, hidden, int8
        self.w_t = {g: np.ascontiguousarray(w[0][sl].T) for g, sl in rows.items()}  # [in, H]
        self.r_t = {g: np.ascontiguousarray(r[0][sl].T) for g, sl in rows.items()}  # [H, H]
        self.bias = {g: np.ascontiguousarray(bias[sl]) for g, sl in rows.items()}
        self.initializers: list = []

    def _init(self, suffix: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = f"{self.name}/{suffix}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def _int8(self, suffix: str, w_t: np.ndarray, scale: np.ndarray) -> str:
        return self._init(suffix, np.clip(np.round(w_t / scale), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8))

    def nodes(self, x: str, outputs: list[str], input_bounded: bool = False, h_range: float = 1.0) -> list:
        from onnx import helper

        p, nodes = self.name, []

        def node(op: str, inputs: list[str], suffix: str, n_out: int = 1, domain: str = "",
                 **attrs: object) -> list[str]:
            outs = [f"{p}/{suffix}" if n_out == 1 else f"{p}/{suffix}_{i}" for i in range(n_out)]
            nodes.append(helper.make_node(op, inputs, outs, name=f"{p}/{suffix}", domain=domain or None, **attrs))
            return outs

        steps, gates = self.steps, "ifoc"
        split_steps = self._init("split_steps", np.ones(steps, np.int64))

        def per_step(value: str, suffix: str) -> list[str]:
            return node("Split", [value, split_steps], suffix, n_out=steps, axis=0) if steps > 1 else [value]

        bias = {g: self._init(f"bias_{g}", self.bias[g]) for g in gates}
        pre: dict[str, list[str]] = {}  # fp32 input projections per gate and step (unbounded input)
        weights: dict[str, tuple[str, str, str]] = {}  # int8 (input+recurrent, input only, scale) per gate
        if self.int8:
            h_scale = self._init("h_scale", np.float32(H_SCALE * h_range))
            h_zero = self._init("h_zero", H_ZERO)
            for g in gates:
                stacked = np.concatenate([self.w_t[g], self.r_t[g]]) if input_bounded else self.r_t[g]
                scale = (np.maximum(np.abs(stacked).max(axis=0), 1e-12) / WEIGHT_MAX).astype(np.float32)
                n_in = self.w_t[g].shape[0] if input_bounded else 0
                weights[g] = (self._int8(f"WR_q_{g}", stacked, scale),
                              self._int8(f"W_q_{g}", stacked[:n_in], scale) if input_bounded else "",
                              self._init(f"WR_scale_{g}", scale))
        if self.int8 and input_bounded:
            xq = per_step(node("QuantizeLinear", [x, h_scale, h_zero], "input_quantize")[0], "input_steps")
        else:
            for g in gates:
                (xw,) = node("MatMul", [x, self._init(f"W_t_{g}", self.w_t[g])], f"input_matmul_{g}")
                (xwb,) = node("Add", [xw, bias[g]], f"input_bias_{g}")
                pre[g] = per_step(xwb, f"input_steps_{g}")
        if not self.int8:
            r_t = {g: self._init(f"R_t_{g}", self.r_t[g]) for g in gates}

        def gate_input(g: str, t: int, h: str | None, hq: str | None, a: str | None) -> str:
            if self.int8 and input_bounded:
                wr, w_only, scale = weights[g]
                inputs = [a, wr if h is not None else w_only, h_scale, scale, h_zero, "", bias[g]]
                return node("MatMulIntegerToFloat", inputs, f"t{t}/z_{g}", domain="com.microsoft")[0]
            if h is None:
                return pre[g][t]
            if self.int8:
                wr, _, scale = weights[g]
                (hr,) = node("MatMulIntegerToFloat", [hq, wr, h_scale, scale, h_zero], f"t{t}/recurrent_{g}",
                             domain="com.microsoft")
            else:
                (hr,) = node("MatMul", [h, r_t[g]], f"t{t}/recurrent_{g}")
            return node("Add", [pre[g][t], hr], f"t{t}/z_{g}")[0]

        h = hq = c = None
        hs = []
        for t in range(steps):
            a = None
            if self.int8 and input_bounded:
                a = xq[t] if h is None else node("Concat", [xq[t], hq], f"t{t}/a", axis=-1)[0]
            z = {g: gate_input(g, t, h, hq, a) for g in gates}
            (i,) = node("Sigmoid", [z["i"]], f"t{t}/i")
            (f,) = node("Sigmoid", [z["f"]], f"t{t}/f")
            (o,) = node("Sigmoid", [z["o"]], f"t{t}/o")
            (gg,) = node("Tanh", [z["c"]], f"t{t}/g")
            (ig,) = node("Mul", [i, gg], f"t{t}/i_g")
            if c is None:
                c = ig
            else:
                (fc,) = node("Mul", [f, c], f"t{t}/f_c")
                (c,) = node("Add", [fc, ig], f"t{t}/c")
            (tc,) = node("Tanh", [c], f"t{t}/tanh_c")
            (h,) = node("Mul", [o, tc], f"t{t}/h")
            if self.int8 and t + 1 < steps:
                (hq,) = node("QuantizeLinear", [h, h_scale, h_zero], f"t{t}/h_quantize")
            hs.append(h)
        y_out, yh_out, yc_out = outputs[:3]
        if y_out:
            (seq,) = node("Concat", hs, "concat", axis=0) if len(hs) > 1 else (hs[0],)
            axes = self._init("axes", np.array([1], np.int64))
            nodes.append(helper.make_node("Unsqueeze", [seq, axes], [y_out], name=f"{p}/Y"))
        if yh_out:
            nodes.append(helper.make_node("Identity", [h], [yh_out], name=f"{p}/Y_h"))
        if yc_out:
            nodes.append(helper.make_node("Identity", [c], [yc_out], name=f"{p}/Y_c"))
        return nodes
