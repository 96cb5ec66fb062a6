"""``anomaly_score``: every family's score on one scale, where 1.0 is the model's threshold.

Why: each family scores in its own units (a squared error, a forecast
distance, a likelihood in [0, 1]), so a Prometheus rule, a dashboard line
or a ``--sensitivity`` knob would otherwise mean something else for every
model file. VictoriaMetrics' vmanomaly and anomalib settled on the same
answer: publish a normalised score whose threshold is 1 for every model.

Why not simply ``score / threshold``: a raw score's zero is not "normal".
A pca file's reconstruction error on normal data may sit at 80 % of its
threshold, so ``score / threshold`` would read 0.8 on a quiet machine and
a sensitivity of 2 would alert on everything; a score can be negative (a
log-likelihood), or a threshold near 0, where the ratio explodes. So the
scale is anchored at two points the card knows:

* 0 at the **origin**: the median score on normal data (``score_stats``,
  ``normal``, else ``train``) when it lies below the threshold; for a
  post-processed score (likelihood, levels, novelty, max), 0 itself, which
  those steps output for "nothing unusual" (their own scale is [0, 1]);
  otherwise 0 when the threshold is positive (``score / threshold``);
* 1 at the **threshold** (the card's, or ``--threshold``: raw units);
* and when neither fits (a threshold at or below 0 with no normal median
  under it) the origin is ``threshold - 1``: one raw unit per unit of
  anomaly_score.

``anomaly_score = sensitivity * (score - origin) / (threshold - origin)``:
linear, so monotone in the raw score. The agent alerts when it is above 1,
i.e. when the raw score is above ``origin + (threshold - origin) /
sensitivity``: ``--sensitivity 2`` alerts at half the distance from typical
to the threshold, 0.5 at twice it, the same meaning for every family.
``--threshold`` keeps its raw meaning and moves the 1.0 point.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from edgewatch.contract import ModelCard
from edgewatch.errors import BadOverride

MIN_SENSITIVITY, MAX_SENSITIVITY = 0.01, 100.0
# the largest anomaly_score reported: a capped raw score over a tiny span would otherwise become infinite
SCORE_CAP = float(np.finfo(np.float32).max)
NORMAL_STATS = ("normal", "train")  # the card's score statistics that describe normal data, in that order


class ScaleOrigin(str, enum.Enum):
    """Where anomaly_score 0 lies (the module docstring says when each applies)."""

    NORMAL_MEDIAN = "normal_median"
    POSTPROCESS_ZERO = "postprocess_zero"
    ZERO = "zero"
    UNIT_BELOW_THRESHOLD = "unit_below_threshold"


@dataclass(frozen=True)
class ScoreScale:
    """The map from a (post-processed) score to anomaly_score, and back to the raw level that alerts."""

    origin: float
    threshold: float
    sensitivity: float = 1.0
    basis: ScaleOrigin = ScaleOrigin.ZERO

    @property
    def span(self) -> float:
        return self.threshold - self.origin

    @property
    def level(self) -> float:
        """The score at which anomaly_score is 1: what the agent compares scores with (the threshold at 1)."""
        if self.sensitivity == 1.0:
            return self.threshold  # exactly, not origin + span
        return self.origin + self.span / self.sensitivity

    def score(self, raw: float) -> float:
        """anomaly_score of one score, within +-SCORE_CAP (NaN stays NaN)."""
        value = self.sensitivity * (float(raw) - self.origin) / self.span
        return value if value != value else max(-SCORE_CAP, min(SCORE_CAP, value))

    def scores(self, raw: np.ndarray) -> np.ndarray:
        """anomaly_score of a batch of scores (float64)."""
        out = (np.asarray(raw, dtype=np.float64) - self.origin) * (self.sensitivity / self.span)
        return np.clip(out, -SCORE_CAP, SCORE_CAP, out=out)

    def describe(self) -> str:
        """One line for logs and ``agent check``: what 0 and 1 are on this model's scale."""
        zero = {ScaleOrigin.NORMAL_MEDIAN: "the median score on normal data",
                ScaleOrigin.POSTPROCESS_ZERO: "the post-process's 'nothing unusual'",
                ScaleOrigin.ZERO: "a score of 0",
                ScaleOrigin.UNIT_BELOW_THRESHOLD: "one unit below the threshold"}[self.basis]
        text = f"anomaly_score 0 at score {self.origin:.6g} ({zero}), 1 at the threshold {self.threshold:.6g}"
        if self.sensitivity != 1.0:
            text += f"; sensitivity {self.sensitivity:g}: alerts above score {self.level:.6g}"
        return text


def scale_for(card: ModelCard, threshold: float, sensitivity: float = 1.0) -> ScoreScale:
    """The scale of ``card`` with the run's (finite) ``threshold`` and ``sensitivity``; see the module docstring."""
    sensitivity = check_sensitivity(sensitivity)
    threshold = float(threshold)
    if card.postprocess.kind != "none":
        if threshold > 0:
            return ScoreScale(0.0, threshold, sensitivity, ScaleOrigin.POSTPROCESS_ZERO)
    else:
        median = normal_median(card)
        if median is not None and median < threshold:
            return ScoreScale(median, threshold, sensitivity, ScaleOrigin.NORMAL_MEDIAN)
        if threshold > 0:
            return ScoreScale(0.0, threshold, sensitivity, ScaleOrigin.ZERO)
    return ScoreScale(threshold - 1.0, threshold, sensitivity, ScaleOrigin.UNIT_BELOW_THRESHOLD)


def normal_median(card: ModelCard) -> float | None:
    """The median raw score on normal data from the card's statistics, if it has one."""
    for name in NORMAL_STATS:
        stats = card.score_stats.get(name)
        if stats is not None and math.isfinite(stats.p50):
            return float(stats.p50)
    return None


def check_sensitivity(value: float) -> float:
    """``value`` as a float in [0.01, 100]; BadOverride (a usage error at start) otherwise."""
    try:
        s = float(value)
    except (TypeError, ValueError):
        s = math.nan
    if not (math.isfinite(s) and MIN_SENSITIVITY <= s <= MAX_SENSITIVITY):
        raise BadOverride(f"--sensitivity {value!r}: it must be between {MIN_SENSITIVITY:g} and {MAX_SENSITIVITY:g} "
                          "(1 alerts at the model's threshold, 2 at half the distance to it)")
    return s
