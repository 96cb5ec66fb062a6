"""One feature: the univariate detector instead of pca (the seam for the NAB detector).

A single series has no correlations for T²+Q to watch; the project's best
single-series detector is NAB's ``novelty-levels`` file (a pass-through
graph; in the card, the maximum of a subsequence-novelty likelihood and a
new-level step, both learning each stream online: docs/eval.md). ``fit``
writes that detector with the user's feature name. Its settings come from
NAB, not from the user's data: the normal data is only checked and
reported here. The file is built in :mod:`edgewatch.numpy_models.univariate`,
the one builder ``eval`` uses too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgewatch.files import replacing
from edgewatch.numpy_models.univariate import NoveltyLevelsConfig, make_card, passthrough_graph

if TYPE_CHECKING:
    from edgewatch.fit.normal_data import NormalData
    from edgewatch.fit.report import FitReport


def fit_univariate(data: NormalData, out: Path) -> FitReport:
    from edgewatch.agent.model import ScoringModel
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
