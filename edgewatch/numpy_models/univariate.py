"""The default univariate detector's model file: a pass-through graph and the card that carries the detector.

Why here: ``edgewatch fit`` writes this file for a single-feature series
and ``edgewatch eval`` writes and scores it on NAB; both sit above this
layer, so the one builder lives below them (no fit -> eval arrow). The
graph passes each value through (window 1); the card's post-process,
``max(novelty, levels)``, holds the detector and its per-stream history
(:mod:`edgewatch.agent.postprocess`). What the settings are and the files
each was chosen on: :mod:`edgewatch.eval.detectors.novelty_levels` and
docs/eval.md. Written with :mod:`edgewatch.wire.onnx_write`, so neither
torch nor the onnx package is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgewatch.contract import (
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
from edgewatch.contract.postprocess import Edges, Handover, Margin, Overlap, Tail, Width
from edgewatch.files import replacing
from edgewatch.wire.onnx_write import Node, int64, model_bytes


def passthrough_graph(props: dict[str, str]) -> bytes:
    """``x [B, 1, 1]`` -> ``score [B]`` and ``feature_error [B, 1]``, both the value itself, with ``props``:
    the graph of every detector whose work is all in its post-process."""
    nodes = [Node("Squeeze", [INPUT_NAME, "axes12"], [SCORE_OUTPUT]),
             Node("Squeeze", [INPUT_NAME, "axis2"], [FEATURE_ERROR_OUTPUT])]
    outputs = {SCORE_OUTPUT: ["batch"], FEATURE_ERROR_OUTPUT: ["batch", 1]}
    return model_bytes(nodes, {INPUT_NAME: ["batch", 1, 1]}, outputs, {"axes12": int64([1, 2]), "axis2": int64([2])},
                       props, graph_name="edgewatch-passthrough")


def write_passthrough(out: str | os.PathLike[str], card: ModelCard) -> Path:
    """The pass-through graph with ``card`` as a model file (temporary file, then rename)."""
    out = Path(out)
    with replacing(out, suffix=".onnx") as tmp:
        tmp.write_bytes(passthrough_graph(card.to_props()))
    return out


FAMILY = "novelty-levels"


# The likelihood's rows per 384 rows of span (learning, hold, refractory): the fourth round's values, which a
# longer or shorter span scales in proportion (one alert per event of a length in proportion to the span).
PER_384 = {"learning": 100, "hold": 200, "refractory": 30}


def novelty_params(span: int, min_span: int = 0, ratio: float = 2, tail: Tail = Tail.GAUSSIAN) -> dict[str, float]:
    """The ``novelty`` part for a top span: m = span / 8 and the likelihood's rows in proportion to the span.

    ``tail`` Gaussian writes no ``tail`` parameter (the files of the rounds before the eighth)."""
    share = span / 384
    out = {"m": span // 8, "span": span, "min_span": min_span, "ratio": ratio, "short": 1, "long": 8640,
           "reestimate": 100, "min_std": 1e-9, "damp": 0.5, "alert": 0.5,
           **{k: round(v * share) for k, v in PER_384.items()}}
    return out if tail is Tail.GAUSSIAN else {**out, "tail": int(tail)}


# NAB's 5-minute interval: the rows chosen on its files (256 range rows, a 192-row top shape) read as time
REFERENCE_SECONDS = 300.0
# what each part decides per stream from its first rows: counts from 48 values, the interval from 16
SAMPLING = {"count_rows": 48, "interval_rows": 16}


def in_time(novelty: dict[str, float], levels: dict[str, float], range_min: int = 48,
            range_max: int = 1536) -> tuple[dict[str, float], dict[str, float]]:
    """The two parts with their row lengths read as time at :data:`REFERENCE_SECONDS` and counts stabilised.

    The levels' range becomes ``range_rows`` intervals of the stream's own
    time, within ``range_min`` .. ``range_max`` rows (the default ladder's
    shortest and longest spans); the top shape length becomes ``m``
    intervals of its time when the stream is coarser (never more than
    ``m`` rows). Streams without times keep the rows.
    """
    return ({**novelty, **SAMPLING, "m_seconds": novelty["m"] * REFERENCE_SECONDS},
            {**levels, **SAMPLING, "range_seconds": levels["range_rows"] * REFERENCE_SECONDS,
             "range_min": range_min, "range_max": range_max})


def default_parts(tail: Tail = Tail.STUDENT, edges: Edges = Edges.SYMMETRIC, handover: Handover = Handover.HOLD,
                  overlap: Overlap = Overlap.CORRECTED,
                  width: Width = Width.RANGE,
                  margin: Margin = Margin.EDGES) -> tuple[dict[str, float], dict[str, float]]:
    """The two parts of the default; ``edges`` from the minimum writes no ``edges`` parameter (the files
    before the ninth round), a fresh ``handover`` no ``handover`` (those before the tenth), independent
    ``overlap`` no ``overlap`` (those before the fourteenth), levels across the range no ``width``, new
    levels by their cells no ``margin``."""
    levels = {"bins": 8, "range_rows": 256, "rest": 100, "cap": 4096}
    if edges is not Edges.FROM_MINIMUM:
        levels["edges"] = int(edges)
    if width is not Width.RANGE:
        levels["width"] = int(width)
    if margin is not Margin.EDGES:
        levels["margin"] = int(margin)
    novelty = novelty_params(1536, 48, 2, tail)
    if handover is not Handover.FRESH:
        novelty["handover"] = int(handover)
    if overlap is not Overlap.INDEPENDENT:
        novelty["overlap"] = int(overlap)
    return in_time(novelty, levels)


@dataclass
class NoveltyLevelsConfig:
    """Parameters of the two post-process parts; the graph has none. The defaults are the shipped detector."""

    novelty: dict[str, float] = field(default_factory=lambda: default_parts()[0])
    levels: dict[str, float] = field(default_factory=lambda: default_parts()[1])
    threshold: float = 0.5  # the likelihood's alert level (0.99999); levels outputs 0 or 1
    # the composite's ``alert``: an output at or over it is one event for both parts (the novelty holds while the
    # alerted value stays in its latest stretch); 0 writes no parameter (the files before the thirteenth round)
    alert: float = 0.5


def make_card(config: NoveltyLevelsConfig, feature: str = "value", data: str = "") -> ModelCard:
    post = PostProcess(MAX_KIND, params={"alert": config.alert} if config.alert else {},
                       parts=[PostProcess("novelty", dict(config.novelty)), PostProcess("levels", dict(config.levels))])
    return ModelCard(
        family=FAMILY, task=Task.RECONSTRUCT, sample_shape=[1, 1], features=[feature],
        scaler=Scaler.identity(1),
        score="the current value; the post-process is the maximum of 'novelty' (likelihood of the RMS distance "
              "between the last m values and the nearest earlier m values within the last span; the span steps "
              "from min_span up to span as the stream's history grows, m in proportion) and 'levels' (1.0 when "
              "the value reaches a level never seen in the stream; with edges 1 a new extreme needs a level's margin "
              "on either side; with handover 1 a longer rung keeps the hold of the one it replaces; with overlap 1 a rung's "
              "spread is widened by the variance's bias for its overlapping distances), both per "
              "stream; with the max's alert, an alert is one event for both (the novelty holds while the alerted value "
              "stays in its latest stretch); with m_seconds, range_seconds and count_rows each stream's first rows set m and the levels' range from its "
              "sampling interval and tell whether it is counts (then read through Anscombe's transform)",
        threshold=config.threshold,
        threshold_method="likelihood alert level (log-likelihood 0.5 = likelihood 0.99999); levels gives 0 or 1",
        score_stats={}, quantization=Quantization.NONE,
        trained_on={"data": data or "none: both parts learn each stream online",
                    "tuned_on": "NAB subset (25 files) and its perturbed copies (edgewatch eval nab --perturb "
                                "all): the span ladder, which lengths follow time, the count rule; m/span, the "
                                "likelihood's rows per span and range_rows by leave-one-category-out on the 25 "
                                "files (fourth round), read as time at 5 minutes; the rest on principle"},
        window=1, horizon=0, stride=1, decision=Decision(k=1, n=1), postprocess=post)


def detector_bytes(config: NoveltyLevelsConfig | None = None, feature: str = "value", data: str = "") -> bytes:
    """The default detector's whole file for one feature, as bytes: what ``edgewatch fit`` writes for a
    single-feature series (nothing to train: both parts learn each stream online)."""
    return passthrough_graph(make_card(config or NoveltyLevelsConfig(), feature, data).to_props())
