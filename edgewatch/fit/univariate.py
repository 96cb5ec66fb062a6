"""One feature: the univariate detector instead of pca (the seam for the NAB detector).

A single series has no correlations for T²+Q to watch; the project's best
single-series detector is NAB's ``novelty-levels`` file (a pass-through
graph; in the card, the maximum of a subsequence-novelty likelihood and a
new-level step, both learning each stream online: docs/eval.md). ``fit``
writes that detector with the user's feature name. Its settings come from
NAB, not from the user's data: the normal data is only checked and
reported here. When the univariate detector is rebuilt, this module is the
one place to follow it (``edgewatch.eval.detectors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgewatch.contract import FEATURE_ERROR_OUTPUT, INPUT_NAME, SCORE_OUTPUT
from edgewatch.wire.onnx_write import Node, int64, model_bytes
from edgewatch.files import replacing

if TYPE_CHECKING:
    from edgewatch.fit.normal_data import NormalData
    from edgewatch.fit.report import FitReport


def passthrough_graph(props: dict[str, str]) -> bytes:
    """``x [B, 1, 1]`` -> ``score [B]`` and ``feature_error [B, 1]``, both the value itself."""
    nodes = [Node("Squeeze", [INPUT_NAME, "axes12"], [SCORE_OUTPUT]),
             Node("Squeeze", [INPUT_NAME, "axis2"], [FEATURE_ERROR_OUTPUT])]
    return model_bytes(nodes, {INPUT_NAME: ["batch", 1, 1]}, {SCORE_OUTPUT: ["batch"], FEATURE_ERROR_OUTPUT: ["batch", 1]},
                       {"axes12": int64([1, 2]), "axis2": int64([2])}, props, graph_name="edgewatch-univariate")


def fit_univariate(data: NormalData, out: Path) -> FitReport:
    from edgewatch.agent.model import ScoringModel
    from edgewatch.eval.detectors.novelty_levels import NoveltyLevelsConfig, make_card
    from edgewatch.fit.choosing import HoldoutResult, Recipe
    from edgewatch.fit.report import FitReport
    from edgewatch.fit.screening import FeatureChoice, Use

    feature = data.features[0]
    card = make_card(NoveltyLevelsConfig(), feature)
    card.trained_on = {**card.trained_on, "by": "edgewatch fit", "data": [Path(f).name for f in data.notes.files]}
    with replacing(out, suffix=".onnx") as tmp:
        tmp.write_bytes(passthrough_graph(card.to_props()))
        ScoringModel(tmp)  # ONNX Runtime loads it and the card validates before the file is kept
    choice = FeatureChoice(feature, Use.LEVEL, "the only feature: a univariate detector that learns each stream "
                                               "online (novelty of its recent shape, levels never seen)")
    recipe = Recipe([feature], [], 1, 1, 1, 1, why={
        "window": "one value at a time; the detector keeps its own history (the last 384 values)",
        "threshold": card.threshold_method, "debounce": "one alert per event (the detector holds after an alert)"})
    report = FitReport(str(out), card.family, data.rows, data.seconds, data.step, data.notes, [choice], recipe,
                       card.threshold, 0, HoldoutResult(0, None, 0, skipped="the detector learns online"), [])
    report.family_note = " (one feature: NAB's univariate detector, settings from NAB, not from this data)"
    return report
