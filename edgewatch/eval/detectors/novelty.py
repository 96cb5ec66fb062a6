"""A multi-scale subsequence-novelty detector, built as an edgewatch model file.

Why this detector: most anomalies in NAB-like data (level shifts, spikes,
a daily pattern that changes shape) are moments when the recent shape of
the series has not been seen lately. The graph measures exactly that with
no training: for each scale ``(span, m)`` it takes the last ``m`` values and
finds the closest earlier stretch of ``m`` values within the last ``span``
rows (root-mean-square distance, in the series' own units). The score is
the sum over scales, so a novelty of short or long shape counts.

Units differ from stream to stream, so the graph's score is never compared
with a fixed threshold directly: the card's ``likelihood`` post-process
learns, per stream and online, the distribution of that score and reports
how far in its tail the current one lies (Numenta's anomaly likelihood),
then keeps one alert per event (``alert``/``hold``, ``refractory``).

How the defaults were chosen: the window (384 rows, about a day and a
third at 5-minute steps) must be full, and the likelihood's learning rows
(100) past, before the first scored row, and NAB places windows soon
after its probationary period (15 % of a file, as little as 169 rows):
384 + 100 rows is the shortest warm-up that did not cost more false
alarms than it caught early windows (512 + 150 missed four early windows;
256 lost more than it gained). The likelihood keeps Numenta's history
(8640) and re-estimation (100) settings. The shape length (one scale,
m = 48), the hold after an alert (200 rows) and the levels' range rows
(256) were chosen by leave-one-category-out over a 12-point grid
(:mod:`edgewatch.eval.loco`, ``edgewatch eval nab --loco``, run on the
default file): every standard-profile fold picked this point.
See docs/eval.md for the variants tried and their in-sample and
cross-validated scores.

The default NAB file no longer uses this graph (the same distance is
computed by the ``novelty`` post-process behind a pass-through graph,
:mod:`edgewatch.eval.detectors.novelty_levels`); it is kept as the
``novelty`` detector and for the graph-based pair. With ``levels`` given,
the file also carries the value-level novelty of :mod:`edgewatch.eval.detectors.levels`:
the graph outputs the window itself as ``aux`` (group ``window[384]``) and
the card's post-process is ``max(likelihood(score), levels(aux:window))``,
so one file alerts when either detector alerts, exactly as the two files
side by side did (the levels step sees the first window's rows at once,
then each new row).

Where it does badly: slow drifts (each step looks like the one before),
and periodic series whose period is longer than the window.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewatch.contract import (
    AUX_INPUT_PREFIX,
    AUX_OUTPUT,
    FEATURE_ERROR_OUTPUT,
    INPUT_NAME,
    MAX_KIND,
    SCORE_OUTPUT,
    Decision,
    ModelCard,
    PostProcess,
    Quantization,
    Scaler,
    Task,
)
from edgewatch.eval.detectors.levels import LevelsConfig
from edgewatch.files import replacing

FAMILY = "novelty"
AUX_WINDOW = "window"  # the aux group holding the window's raw values


@dataclass
class NoveltyConfig:
    """The graph's scales and the post-process; ``window`` is the longest span."""

    window: int = 384
    scales: list[tuple[int, int]] = field(default_factory=lambda: [(384, 48)])
    likelihood: dict[str, float] = field(default_factory=lambda: {
        "short": 1, "long": 8640, "learning": 100, "reestimate": 100, "min_std": 1e-9,
        "refractory": 30, "damp": 0.5, "alert": 0.5, "hold": 200})
    threshold: float = 0.5  # log-likelihood 0.5 = likelihood 0.99999, the alert level

    def validate(self) -> None:
        for span, m in self.scales:
            if not (2 * m <= span <= self.window and m >= 1):
                raise ValueError(f"scale (span={span}, m={m}) needs 2*m <= span <= window={self.window}")


def novelty_scores(windows: np.ndarray, config: NoveltyConfig) -> np.ndarray:
    """NumPy reference of the graph: ``windows`` is ``[batch, window]``; used to check the export."""
    from numpy.lib.stride_tricks import sliding_window_view

    v = np.asarray(windows, dtype=np.float64)
    total = np.zeros(len(v))
    for span, m in config.scales:
        part = v[:, -span:]
        subs = sliding_window_view(part, m, axis=1)[:, : span - 2 * m + 1]
        last = part[:, -m:][:, None, :]
        total += np.sqrt(((subs - last) ** 2).mean(axis=2).min(axis=1))
    return total


def build_graph(config: NoveltyConfig, window_aux: bool = False):  # noqa: ANN201 - returns onnx.ModelProto
    """The ONNX graph: input ``x`` [B, window, 1] raw, outputs ``score`` [B] and ``feature_error`` [B, 1].

    With ``window_aux`` it also outputs ``aux`` [B, window]: the window's raw values, for a post-process
    that must see every row of the stream (the levels step).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    config.validate()
    w = config.window
    nodes = []
    inits = [numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")]
    nodes.append(helper.make_node("Squeeze", ["x", "axis2"], ["v"]))  # [B, W]
    parts = []
    for i, (span, m) in enumerate(config.scales):
        starts = np.arange(w - span, w - span + span - 2 * m + 1, dtype=np.int64)
        idx = starts[:, None] + np.arange(m, dtype=np.int64)[None, :]
        inits.append(numpy_helper.from_array(idx, f"idx{i}"))
        inits.append(numpy_helper.from_array(np.arange(w - m, w, dtype=np.int64), f"last{i}"))
        nodes += [
            helper.make_node("Gather", ["v", f"idx{i}"], [f"subs{i}"], axis=1),  # [B, J, m]
            helper.make_node("Gather", ["v", f"last{i}"], [f"lastv{i}"], axis=1),  # [B, m]
            helper.make_node("Unsqueeze", [f"lastv{i}", "axis1"], [f"last3{i}"]),  # [B, 1, m]
            helper.make_node("Sub", [f"subs{i}", f"last3{i}"], [f"diff{i}"]),
            helper.make_node("Mul", [f"diff{i}", f"diff{i}"], [f"sq{i}"]),
            helper.make_node("ReduceMean", [f"sq{i}"], [f"msd{i}"], axes=[2], keepdims=0),  # [B, J]
            helper.make_node("ReduceMin", [f"msd{i}"], [f"min{i}"], axes=[1], keepdims=0),  # [B]
            helper.make_node("Sqrt", [f"min{i}"], [f"nn{i}"]),
        ]
        parts.append(f"nn{i}")
    nodes.append(helper.make_node("Sum", parts, [SCORE_OUTPUT]))
    nodes.append(helper.make_node("Unsqueeze", [SCORE_OUTPUT, "axis1"], [FEATURE_ERROR_OUTPUT]))
    outputs = [helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, ["batch"]),
               helper.make_tensor_value_info(FEATURE_ERROR_OUTPUT, TensorProto.FLOAT, ["batch", 1])]
    if window_aux:
        nodes.append(helper.make_node("Identity", ["v"], [AUX_OUTPUT]))
        outputs.append(helper.make_tensor_value_info(AUX_OUTPUT, TensorProto.FLOAT, ["batch", w]))
    graph = helper.make_graph(
        nodes, "edgewatch_novelty",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", w, 1])],
        outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgewatch")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_card(config: NoveltyConfig, feature: str = "value", levels: LevelsConfig | None = None) -> ModelCard:
    """The card; with ``levels`` the post-process is the max of likelihood(score) and levels(aux:window)."""
    likelihood = PostProcess("likelihood", dict(config.likelihood))
    if levels is None:
        post, aux, extra = likelihood, [], ""
    else:
        if levels.threshold != config.threshold:
            raise ValueError(f"the levels step alerts at {levels.threshold}, the novelty at {config.threshold}: "
                             "one file has one alert level")
        post = PostProcess(MAX_KIND, parts=[likelihood, PostProcess("levels", dict(levels.params),
                                                                    AUX_INPUT_PREFIX + AUX_WINDOW)])
        aux = [f"{AUX_WINDOW}[{config.window}]"]
        extra = ("; the maximum of that and the levels post-process on the window's values (1.0 when the value "
                 "reaches a level never seen in the stream)")
    return ModelCard(
        family=FAMILY, task=Task.RECONSTRUCT, sample_shape=[config.window, 1], features=[feature],
        scaler=Scaler.identity(1),
        score="sum over scales (span, m) of the RMS distance between the last m values and the nearest "
              f"earlier m values within the last span rows; scales {config.scales}; then the likelihood "
              "post-process (per stream)" + extra,
        threshold=config.threshold,
        threshold_method="likelihood post-process alert level (log-likelihood 0.5 = likelihood 0.99999)",
        score_stats={}, quantization=Quantization.NONE,
        trained_on={"data": "none: a fixed statistic; the post-process adapts online to each stream",
                    "tuned_on": "NAB subset (25 files), on the principles in edgewatch.eval.detectors.novelty"},
        window=config.window, horizon=0, stride=1, decision=Decision(k=1, n=1),
        postprocess=post, aux=aux)


def write_model(out: str | os.PathLike[str], config: NoveltyConfig | None = None, check: bool = True,
                levels: LevelsConfig | None = None) -> Path:
    """Write the detector as a model file (temporary file, then rename) and check it scores like NumPy.

    With ``levels`` the one file also carries the value-level novelty (see the module's docstring).
    """
    import onnx

    config = config or NoveltyConfig()
    model = build_graph(config, window_aux=levels is not None)
    make_card(config, levels=levels).write_into(model)
    out = Path(out)
    with replacing(out, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))
        if check:
            from edgewatch.agent.model import ScoringModel

            rng = np.random.default_rng(0)
            x = np.cumsum(rng.normal(size=(8, config.window)), axis=1) * 10 + 100
            batch = ScoringModel(tmp).score_many(x[:, :, None].astype(np.float32))
            want = novelty_scores(x.astype(np.float32), config)
            if not np.allclose(batch.scores, want, rtol=1e-3, atol=1e-3):
                raise RuntimeError(f"exported novelty graph disagrees with NumPy: {batch.scores[:3]} vs {want[:3]}")
            if levels is not None and not np.array_equal(batch.aux, x.astype(np.float32)):
                raise RuntimeError("exported novelty graph's aux output is not the window")
    return out
