"""Each feature's range in training, from the card: what the live page and ``edgewatch plot`` scale it to.

Why: drawn on one axis, SKAB's voltage (about 230) flattens its vibration
(about 0.03) and the flow drop behind an alert into one line. Each feature
is drawn in its own lane, scaled so that its training range fills the same
band, and a value outside that band is what a reader should notice.

Only what the card records as the training data's own span counts: the
``training_range`` of a feature (the features whose level the score relies
on), else the 0 % and 100 % quantiles of the drift reference, else a
min-max scaler's ``offset .. offset + 1/scale``. A standard scaler's mean
and deviation say nothing exact about the span, and identity says nothing,
so those features get ``None`` and are drawn by the span of the data shown.
"""

from __future__ import annotations

import math

from edgewatch.contract import ModelCard

Range = tuple[float, float]


def feature_ranges(card: ModelCard) -> list[Range | None]:
    """``[low, high]`` in raw units per feature of ``card`` (card order), or None where the card has no span."""
    out: list[Range | None] = []
    ref, given, scaler = card.drift_reference, card.training_range or {}, card.scaler
    for j, name in enumerate(card.features):
        span: Range | None = None
        if name in given:
            span = (float(given[name][0]), float(given[name][1]))
        elif ref is not None and j < len(ref.quantiles) and ref.quantiles[j]:
            span = (float(ref.quantiles[j][0]), float(ref.quantiles[j][-1]))
        elif scaler.kind == "minmax" and scaler.scale[j]:
            span = (float(scaler.offset[j]), float(scaler.offset[j]) + 1.0 / float(scaler.scale[j]))
        out.append(span if span is not None and all(map(math.isfinite, span)) and span[0] <= span[1] else None)
    return out
