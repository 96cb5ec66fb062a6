"""One feature: the univariate detector instead of pca (the seam for the NAB detector).

A single series has no correlations for T²+Q to watch; the project's best
single-series detector is NAB's ``novelty-levels`` file (a pass-through
graph; in the card, the maximum of a subsequence-novelty likelihood and a
new-level step, both learning each stream online: docs/eval.md). ``fit``
writes that detector with the user's feature name. Its settings come from
NAB, not from the user's data: the normal data is only run through it, as
the agent would from its first row, and its episodes counted and reported
(the report used to say "not checked" while a single-sensor pump file with
a load cycle gave it 3 episodes in 33 minutes). It stays the choice when
it raises some: it alarms on what is new to a stream, so ordinary normal
data gives it some (0.1 to 1 a day on the first 15 % of six NAB files,
its probation there), while ``--family pca``, quiet on such data, sees only a
sustained shift of a few standard deviations of the window mean; the
report says so and leaves the trade to the user. The file is built in
:mod:`edgewatch.numpy_models.univariate`, the one builder ``eval`` uses too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgewatch.files import replacing
from edgewatch.fit.states import card_fields
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
    card = replace(card, **card_fields(data, [feature]))
    with replacing(out, suffix=".onnx") as tmp:
        tmp.write_bytes(passthrough_graph(card.to_props()))
        ScoringModel(tmp)  # ONNX Runtime loads it and the card validates before the file is kept
    choice = FeatureChoice(feature, Use.LEVEL, "the only feature: a univariate detector that learns each stream "
                                               "online (novelty of its recent shape, levels never seen)")
    recipe = Recipe([feature], [], 1, 1, 1, 1, why={
        "window": "one value at a time; the detector keeps its own history (the last 384 values)",
        "threshold": card.threshold_method, "debounce": "one alert per event (the detector holds after an alert)"})
    episodes, first_day = _episodes_on(data, out)
    checked = HoldoutResult(data.rows, data.seconds, episodes, {feature: episodes} if episodes else {}, whole=True)
    report = FitReport(str(out), card.family, data.rows, data.seconds, data.step, data.notes, [choice], recipe,
                       card.threshold, 0, checked, [])
    report.family_note = " (one feature: NAB's univariate detector, settings from NAB, not from this data)"
    if episodes:
        report.warnings.append(
            f"the detector raised {episodes} episode(s) on this normal data: it learns online and alarms on what is "
            "new to the stream (a shape or level not seen before), so expect about as many on live data like it. "
            "For a quieter model that sees only sustained shifts of the level: --family pca"
            + (f". {first_day} of them came on the stream's first day, while it learned: 'agent run "
               "--quiet-start 86400' holds those (and a fault on that day)" if first_day else ""))
    return report


def _episodes_on(data: NormalData, model: Path) -> tuple[int, int]:
    """The episodes the agent raises on the normal data, each segment a fresh stream, as a replay would; and how
    many of them start on a segment's first day (its first 86,400 s: what ``--quiet-start 86400`` holds; 0 when
    the data has no times)."""
    from edgewatch.agent.offline import run_series
    from edgewatch.agent.runtime import DriftSettings, Overrides, load_runtime

    runtime = load_runtime(model, Overrides(), drift_settings=DriftSettings(every=0))
    total = first_day = 0
    for i, seg in enumerate(data.segments):
        times = data.times[i] if data.times else None
        episodes = run_series(runtime, seg, times).episodes
        total += len(episodes)
        if times is not None and len(times):
            first_day += sum(ep.start_ts - float(times[0]) < 86400.0 for ep in episodes)
    return total, first_day
