"""A value-level novelty detector (contextOSE-like, first level), built as an edgewatch model file.

Why: the novelty detector compares the recent shape with the last 384
rows only, so a value that goes where the stream has never been, slowly
or after a long quiet spell, can look ordinary to it. A context detector
in the manner of NAB's contextOSE quantises the value into a small
alphabet over a fixed range and reports contexts never seen before; on
NAB the level that pays is the shortest context, the current level alone
(longer contexts fired on ordinary noise; docs/eval.md has the figures).

The graph only passes the window's last value through; the history (the
frozen range and the set of levels seen, bounded) lives in the card's
``levels`` post-process (``edgewatch.agent.postprocess``), per stream.
Its output is 1.0 on a new level, else 0.0, so it is meant to be run
beside the novelty file with the same alert level 0.5: alert when either
alerts (``edgewatch eval nab --detector novelty-levels`` scores that max).

Defaults: 8 levels (contextOSE's 3 bits) and one alert per event (a
rest of 100 rows) on principle; the range is learnt on a stream's first
256 rows, a value chosen by leave-one-category-out (``edgewatch eval nab
--loco``) between 256 and 384 (the novelty window). In the one-file
default (:mod:`edgewatch.eval.detectors.novelty_levels`, a pass-through
graph) it speaks as soon as its range is known, as this file does; in a
file whose graph has a longer window it speaks from that window's first
full row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgewatch.contract import (
    Decision,
    ModelCard,
    PostProcess,
    Quantization,
    Scaler,
    Task,
)
from edgewatch.numpy_models.univariate import write_passthrough

FAMILY = "levels"


@dataclass
class LevelsConfig:
    """Parameters of the ``levels`` post-process; the graph has none."""

    params: dict[str, float] = field(default_factory=lambda: {"bins": 8, "range_rows": 256, "rest": 100,
                                                              "cap": 4096})
    threshold: float = 0.5


def make_card(config: LevelsConfig, feature: str = "value") -> ModelCard:
    return ModelCard(
        family=FAMILY, task=Task.RECONSTRUCT, sample_shape=[1, 1], features=[feature],
        scaler=Scaler.identity(1),
        score="the current value; the levels post-process reports 1.0 when it reaches a level (1/bins of the "
              "range of the first range_rows values, unclipped) never seen before in the stream",
        threshold=config.threshold,
        threshold_method="levels post-process: outputs are 0 or 1; 0.5 matches the novelty file's alert level",
        score_stats={}, quantization=Quantization.NONE,
        trained_on={"data": "none: the post-process learns each stream's range online",
                    "tuned_on": "NAB subset (25 files), on the principles in edgewatch.eval.detectors.levels"},
        window=1, horizon=0, stride=1, decision=Decision(k=1, n=1),
        postprocess=PostProcess("levels", dict(config.params)))


def write_model(out: str | os.PathLike[str], config: LevelsConfig | None = None) -> Path:
    """Write the detector as a model file (temporary file, then rename)."""
    return write_passthrough(out, make_card(config or LevelsConfig()))
