"""Quantizing an fp32 edgewatch ONNX file with ONNX Runtime's tools.

* ``Quantization.DYNAMIC_INT8``: ``quantize_dynamic``, int8 weights and
  activations quantized on the fly. It turns LSTMs into
  ``DynamicQuantizeLSTM`` and matmuls into ``MatMulInteger``; it leaves GRU
  nodes in fp32. The activation scale comes from each call's whole input,
  so a window's score depends on the other windows of its batch: the
  export's invariance check (:mod:`edgewatch.export.invariance`) refuses
  such files, and it is kept only to benchmark the LSTM-AE against the
  stream-isolated fp32 form (it was the fastest there). The *output layers* (weighted
  nodes with no weighted node after them, see :func:`output_layer_nodes`)
  stay fp32: a reconstruction score is the small difference of two nearly
  equal numbers, and quantizing the layer that produces the reconstruction
  put int8 rounding noise straight into it (measured on a small LSTM-AE:
  median relative score error 280 % and 69 % decision agreement with the
  output layer quantized; 3 % and 100 % with it in fp32). Weights keep
  the full 8 bits: ``reduce_range`` (7 bits) doubled the mean relative
  score error of the full-size LSTM-AE (0.05 -> 0.11) and cut decision
  agreement from 99.6 % to 98.6 %.
* ``Quantization.STATIC_QDQ_INT8``: ``quantize_static`` in QDQ format with
  activation ranges measured on calibration samples (MinMax). Quantizes
  convolutions and matmuls, not LSTM/GRU nodes. Best for CNNs. Everything
  after the last quantized layer (the output layers and the score's
  arithmetic, :func:`score_tail_nodes`) stays fp32. Activations are u8,
  weights s8 with 7 bits (``reduce_range``): the format ONNX Runtime
  documents for x86 without VNNI, where its u8·s8 kernels add pairs of
  products in saturating 16-bit lanes. Measured with the export's
  invariance check (one image alone vs in batches of up to 128, extreme
  pixels included) on this project's AMD EPYC (AVX2, no VNNI), full-size
  conv-AE: s8 activations with 8-bit weights moved the Fashion-MNIST
  model's score by 3.4·10⁻² relative, s8 activations with 7-bit weights the
  MNIST model's row errors by 2.8·10⁻² (each the other way round passed);
  u8 activations with 7-bit s8 weights, and u8 with u8 weights, gave a
  difference of exactly 0 on both, with 100 % of decisions kept and a
  mean score change of 8·10⁻⁴ against fp32; u8·s8 is the faster
  (batch 1: 6.5 vs 8.2 ms). The check still runs on every export.
* ``Quantization.SENTINEL_INT8``: every LSTM becomes ONNX Runtime's fused
  ``DynamicQuantizeLSTM`` with two sentinel units that fix its per-call
  ranges, and the first layer's input clipped to a range the card records
  (:mod:`edgewatch.export.sentinel`): the LSTM family's choice, the fastest
  stream-isolated form measured (docs/benchmarks.md). A file with no LSTM is
  refused (nothing to do).
* ``Quantization.UNROLLED_INT8``: every LSTM unrolled into int8
  ``MatMulIntegerToFloat`` gates with fixed hidden-state scales
  (:mod:`edgewatch.export.unroll`): batch-invariant too, 3.4x slower than
  the sentinel form at batch 1 and slower up to 32 windows a call, level at
  64 (about 500 nodes at window 10 cost more than their arithmetic at small
  batches); a file with no LSTM is refused.
* ``Quantization.NONE``: the file is copied unchanged.

:func:`quantized_op_counts` counts the quantized nodes in a file, so a
silent fall-back to fp32 (a family whose layers the quantizer skips) is
visible in the export report and can be asserted in tests.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgewatch.contract import INPUT_NAME, Quantization
from edgewatch.errors import BadInput

QUANTIZED_OP_TYPES = frozenset({
    "DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "MatMulInteger", "ConvInteger",
    "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QGemm", "QAttention",
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulIntegerToFloat",
})


@dataclass
class Quantized:
    """What quantizing wrote besides the file: card fields the graph now needs, and a line for the report."""

    card: dict[str, Any] = field(default_factory=dict)  # ModelCard fields (the sentinel form's ``input_clip``)
    detail: str = ""


def quantize_file(src: Path, dst: Path, quantization: Quantization,
                  calibration: np.ndarray | None = None, batch_size: int = 32) -> Quantized:
    """Write the quantized version of ``src`` to ``dst`` (metadata_props are kept)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    quantization = Quantization(quantization)
    if quantization is Quantization.NONE:
        shutil.copyfile(src, dst)
        return Quantized()
    if quantization is Quantization.UNROLLED_INT8:
        from edgewatch.export.unroll import unroll_lstm_file

        if unroll_lstm_file(src, dst, calibration=calibration) == 0:
            raise BadInput("unrolled int8 quantizes LSTM layers and this model has none: use another --quantize")
        return Quantized()
    if quantization is Quantization.SENTINEL_INT8:
        from edgewatch.export.sentinel import sentinel_lstm_file

        if calibration is None or len(calibration) == 0:
            raise BadInput("sentinel int8 sets its input range from calibration samples: train a checkpoint that "
                           "stores them or pass --calibration-data")
        with _quiet_preprocess_hint():
            form = sentinel_lstm_file(src, dst, calibration)
        if form.layers == 0:
            raise BadInput("sentinel int8 quantizes LSTM layers and this model has none: use another --quantize")
        return Quantized({"input_clip": list(form.input_clip)}, form.line())
    with _quiet_preprocess_hint():
        if quantization is Quantization.DYNAMIC_INT8:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                             nodes_to_exclude=output_layer_nodes(src))
            return Quantized()
        if calibration is None or len(calibration) == 0:
            raise BadInput("static int8 quantization needs calibration samples: train a checkpoint that "
                           "stores them or pass --calibration-data")
        quantize_static(str(src), str(dst), ArrayCalibrationReader(calibration, batch_size),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                        nodes_to_exclude=score_tail_nodes(src),
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    return Quantized()


WEIGHTED_OP_TYPES = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "RNN", "Loop"})


def output_layer_nodes(path: Path) -> list[str]:
    """Names of the weighted nodes that no other weighted node follows (the last layer of each path).

    They are kept in fp32: their output is compared with the input (or the
    target) to make the score, so their rounding error is the score's.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    nodes = list(graph.node)
    memo: dict[int, bool] = {}

    def weighted_downstream(i: int) -> bool:
        if i not in memo:
            memo[i] = False  # the graph is acyclic; this only guards against malformed files
            memo[i] = any(nodes[j].op_type in WEIGHTED_OP_TYPES or weighted_downstream(j)
                          for out in nodes[i].output for j in consumers.get(out, []))
        return memo[i]

    return [n.name for i, n in enumerate(nodes)
            if n.op_type in WEIGHTED_OP_TYPES and n.op_type != "Loop" and not weighted_downstream(i)]


SCORE_HEAD_SCOPE = "/score_head/"  # nodes of a scorer's submodule named ``score_head``


def score_tail_nodes(path: Path) -> list[str]:
    """The nodes static QDQ leaves in fp32: the score's arithmetic and the layers whose output it reads.

    Static QDQ would otherwise put fixed int8 scales on the arithmetic that
    turns activations into the score (differences, logs, reductions, a
    density's whitening). Measured on the conv-AE's combined image score:
    quantizing that arithmetic kept 52 % of decisions; with it in fp32 but
    the encoder stages whose feature statistics feed the density in int8,
    per-channel weight rounding still moved the distance's z-score by 0.11
    on average (0.48 at worst, small model). So in fp32 stay:

    * every node after the last quantized layer of its path (the output
      layers of :func:`output_layer_nodes` and what follows them);
    * the nodes of a ``score_head`` submodule (its MatMul is arithmetic,
      not a layer), and every layer whose output reaches them through
      unweighted nodes only;
    * every other reader of a tensor the head reads (the conv-AE's head
      reads the raw input pixels, which the network's scaling also reads).

    Fixed scales keep what remains batch-invariant.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    nodes = list(graph.node)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    head = {i for i, n in enumerate(nodes) if SCORE_HEAD_SCOPE in n.name}
    fp32 = head | {i for i, n in enumerate(nodes) if n.name in set(output_layer_nodes(path))}
    layers = {i for i, n in enumerate(nodes) if n.op_type in WEIGHTED_OP_TYPES} - head

    def reaches_head(i: int, seen: set[int]) -> bool:
        for out in nodes[i].output:
            for j in consumers.get(out, []):
                if j in head:
                    return True
                if j not in seen and j not in layers:
                    seen.add(j)
                    if reaches_head(j, seen):
                        return True
        return False

    fp32 |= {i for i in layers if reaches_head(i, set())}
    # a tensor the head reads must not be quantized for another reader: the quantizer puts one
    # Quantize/Dequantize pair on it and routes *every* reader through the rounded copy
    head_reads = {name for i in head for name in nodes[i].input}
    fp32 |= {i for i, n in enumerate(nodes) if i not in head and head_reads.intersection(n.input)}
    memo: dict[int, bool] = {}

    def feeds_quantized_layer(i: int) -> bool:
        if i not in memo:
            memo[i] = False
            memo[i] = any((j in layers and j not in fp32) or feeds_quantized_layer(j)
                          for out in nodes[i].output for j in consumers.get(out, []))
        return memo[i]

    return [n.name for i, n in enumerate(nodes) if i in fp32 or not feeds_quantized_layer(i)]


def quantized_op_counts(path: Path) -> dict[str, int]:
    """Quantized node types and how many of each the file holds (subgraphs included)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: Counter[str] = Counter()

    def walk(graph: "onnx.GraphProto") -> None:
        for node in graph.node:
            if node.op_type in QUANTIZED_OP_TYPES:
                counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return dict(sorted(counts.items()))


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds calibration samples to ``quantize_static`` in batches of the graph's input."""

    def __init__(self, samples: np.ndarray, batch_size: int = 32) -> None:
        self.samples = np.ascontiguousarray(samples, dtype=np.float32)
        self.batch_size = batch_size
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = ({INPUT_NAME: self.samples[i:i + self.batch_size]}
                         for i in range(0, len(self.samples), self.batch_size))


@contextmanager
def _quiet_preprocess_hint() -> Iterator[None]:
    """ORT logs a 'consider pre-processing' warning on the root logger for every call."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(max(previous, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(previous)
