"""Detector names accepted by ``edgewatch eval nab --detector``."""

from __future__ import annotations

import enum
import tempfile
from pathlib import Path

from edgewatch.errors import BadInput
from edgewatch.eval.detectors.baselines import NullDetector, RandomDetector, WindowedGaussianDetector


class BuiltIn(str, enum.Enum):
    NULL = "null"
    RANDOM = "random"
    WINDOWED_GAUSSIAN = "windowed-gaussian"
    NOVELTY = "novelty"
    LEVELS = "levels"
    NOVELTY_LEVELS = "novelty-levels"
    LEVELS_IN_SPREAD = "levels-in-spread"
    LEVELS_MARGIN = "levels-margin"
    THIRTEENTH_ROUND = "thirteenth-round"
    TENTH_ROUND = "tenth-round"
    NINTH_ROUND = "ninth-round"
    EIGHTH_ROUND = "eighth-round"
    SEVENTH_ROUND = "seventh-round"
    FIFTH_ROUND = "fifth-round"
    FOURTH_ROUND = "fourth-round"
    NOVELTY_LEVELS_PAIR = "novelty-levels-pair"
    RESONANCE = "resonance"


NAMES = [b.value for b in BuiltIn]


def resolve(name: str, seed: int = 42, stride: int = 1):  # noqa: ANN201 - a runner.Detector
    """A built-in detector by name, or ``model:PATH`` for any edgewatch model file of one feature.

    ``novelty``, ``levels`` and ``novelty-levels`` are written to temporary
    model files and run from there, so their figures are those of the files
    ``edgewatch eval make-detector`` writes. ``novelty-levels`` is the one
    file carrying both (a pass-through graph; its post-process is the maximum
    of the ``novelty`` kind, its span stepped from 48 to 1536 rows, and the
    ``levels`` kind, each with its lengths in the stream's own time and
    counts stabilised, decided per stream from its first 48 rows, and the
    novelty's likelihood read through Student's predictive tail, a new
    extreme a level beyond the range on either side, a longer rung keeping
    the hold of the one it replaces, an alert one event for both parts,
    a rung's spread widened for its overlapping distances);
    ``levels-in-spread`` is the same file with the levels as wide in each
    stream's own spread whatever rows its range took (``width`` 1; the
    sixteenth round's candidate, not adopted); ``levels-margin`` the same
    file with a value new only a whole level from every value the stream
    has shown (``margin`` 1; its second candidate);
    ``thirteenth-round`` is the same file with the distances read as
    independent (the thirteenth round's default), ``tenth-round`` that with
    each part alone after an alert (the tenth round's), ``ninth-round`` that with
    each rung's hold afresh (the ninth round's), ``eighth-round``
    that with the levels counted from the range's minimum (the eighth
    round's), ``seventh-round`` that with the Gaussian tail
    (the seventh round's), ``fifth-round`` the same with every length in rows and no
    counts (the fifth round's default), ``fourth-round`` the one before (one
    384-row span), both kept to compare on every table;
    ``novelty-levels-pair`` is the fourth round as two separate files (the
    distance in a 384-row graph, the levels on their own), equal to
    ``fourth-round`` up to the graph's float32 distances; ``resonance`` is
    the ARTime-like post-process (:mod:`edgewatch.agent.postprocess.resonance`),
    kept for comparison.
    """
    from edgewatch.eval.runner import MaxEnsemble, ModelDetector

    if name.startswith("model:"):
        path = Path(name[len("model:"):])
        return ModelDetector(path, stride=stride)
    try:
        which = BuiltIn(name)
    except ValueError:
        raise BadInput(f"unknown detector {name!r}: use one of {', '.join(NAMES)} or model:PATH.onnx") from None
    if which is BuiltIn.NULL:
        return NullDetector()
    if which is BuiltIn.RANDOM:
        return RandomDetector(seed)
    if which is BuiltIn.WINDOWED_GAUSSIAN:
        return WindowedGaussianDetector()
    from edgewatch.eval.detectors import levels, novelty, novelty_levels, resonance

    with tempfile.TemporaryDirectory(prefix="edgewatch-novelty-") as tmp:  # sessions hold the graphs
        rounds = {BuiltIn.NOVELTY_LEVELS: novelty_levels.NoveltyLevelsConfig,
                  BuiltIn.LEVELS_IN_SPREAD: novelty_levels.levels_in_spread,
                  BuiltIn.LEVELS_MARGIN: novelty_levels.levels_margin,
                  BuiltIn.THIRTEENTH_ROUND: novelty_levels.thirteenth_round,
                  BuiltIn.TENTH_ROUND: novelty_levels.tenth_round,
                  BuiltIn.NINTH_ROUND: novelty_levels.ninth_round,
                  BuiltIn.EIGHTH_ROUND: novelty_levels.eighth_round,
                  BuiltIn.SEVENTH_ROUND: novelty_levels.seventh_round,
                  BuiltIn.FIFTH_ROUND: novelty_levels.fifth_round, BuiltIn.FOURTH_ROUND: novelty_levels.fourth_round}
        if which in rounds:
            config = rounds[which]()
            one = ModelDetector(novelty_levels.write_model(Path(tmp) / f"{which.value}.onnx", config), stride=stride)
            one.name = which.value
            return one
        if which is BuiltIn.RESONANCE:
            art = ModelDetector(resonance.write_model(Path(tmp) / "resonance.onnx"), stride=stride)
            art.name = which.value
            return art
        nov = ModelDetector(novelty.write_model(Path(tmp) / "novelty.onnx"), stride=stride)
        lev = ModelDetector(levels.write_model(Path(tmp) / "levels.onnx"), stride=stride)
    nov.name, lev.name = "novelty", "levels"
    if which is BuiltIn.NOVELTY:
        return nov
    if which is BuiltIn.LEVELS:
        return lev
    return MaxEnsemble("novelty-levels-pair", [nov, lev])
