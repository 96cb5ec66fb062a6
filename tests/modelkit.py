"""A small, real edgewatch model file built with onnx.helper, for agent tests.

It needs no training: the graph scales the window, squares it and averages,
so ``feature_error[f]`` is the mean over time of ``((x_f - offset) * scale)^2``
and ``score`` the mean of those. Values near the offset score low; far away
score high. That makes the expected alerts of a test easy to reason about.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgewatch.contract import (FEATURE_ERROR_OUTPUT, INPUT_NAME, SCORE_OUTPUT, Decision, ModelCard,
                                PostProcess, Quantization, Scaler, ScoreStats, Task)


def make_card(window: int = 10, features: list[str] | None = None, threshold: float = 0.25, stride: int = 1,
              k: int = 2, n: int = 3, offset: float = 0.5, scale: float = 1.0, **extra) -> ModelCard:
    features = features or ["a", "b", "c", "d"]
    f = len(features)
    fields = dict(
        family="test-square", task=Task.RECONSTRUCT, sample_shape=[window, f], features=features,
        scaler=Scaler("standard", [offset] * f, [scale] * f),
        score="mean over time and features of the squared scaled input (test model)",
        threshold=threshold, threshold_method="fixed by the test", score_stats={
            "normal": ScoreStats(10, 0.01, 0.01, 0.01, 0.02, 0.03, 0.04)},
        quantization=Quantization.NONE, trained_on={"data": "none (hand-built)"}, window=window,
        stride=stride, decision=Decision(k, n), postprocess=PostProcess())
    fields.update(extra)
    return ModelCard(**fields)


def write_model(path: Path, card: ModelCard | None = None, props: dict[str, str] | None = None) -> Path:
    """Write the squaring model with ``card``'s metadata (or raw ``props``) to ``path``."""
    card = card or make_card()
    window, f = card.sample_shape
    offset = np.asarray(card.scaler.offset, np.float32)
    scale = np.asarray(card.scaler.scale, np.float32)
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "offset"], ["centred"]),
        helper.make_node("Mul", ["centred", "scale"], ["scaled"]),
        helper.make_node("Mul", ["scaled", "scaled"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "axis1"], [FEATURE_ERROR_OUTPUT], keepdims=0),
        helper.make_node("ReduceMean", [FEATURE_ERROR_OUTPUT, "axis1"], [SCORE_OUTPUT], keepdims=0),
    ]
    inits = [
        onnx.numpy_helper.from_array(offset, "offset"),
        onnx.numpy_helper.from_array(scale, "scale"),
        onnx.numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    graph = helper.make_graph(
        nodes, "square", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", window, f])],
        [helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info(FEATURE_ERROR_OUTPUT, TensorProto.FLOAT, ["batch", f])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for k, v in (card.to_props() if props is None else props).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path
