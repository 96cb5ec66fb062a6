"""The wrong model says so within a minute: each stream's first rows against the card's training range.

A model fitted at one operating point and run at another scores every
window as anomalous, and the KS drift check only speaks after hundreds of
messages (SKAB: a pca file fitted on the anomaly-free run, mean flow 125,
replayed on a valve experiment at flow 32 flagged 725 of 725 rows as one
episode, with no warning). So the first ``rows`` messages of every stream
(120 by default) are compared, in blocks of ``block`` rows, with the range
each feature had in training (``ModelCard.training_range``: the features
whose level the score uses; without it, every feature's 0-100 % quantiles
of the drift reference), less those the reference names ``unchecked``
(read by their rate, or not at all: their level in the first rows says
nothing about the model). The range is widened by a quarter of its width on
each side (and a millionth of its magnitude, so that a feature constant in
training is not flagged by float rounding). When more than half of a
block's rows of a feature lie outside, the stream gets one ``drift`` event
with ``check: "range"``, the features, how far their recent mean lies from
the range in training standard deviations, and a sentence saying so.

Why blocks and a majority, not a single row: one spike is the detector's
business; a stream whose recent rows *mostly* sit where the model never
saw data is the operator's (another machine, another unit, another mode).
It fires at most once per stream; the running KS check takes over later.

NumPy only; per stream it keeps two small arrays for the first rows and
nothing after them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgewatch.agent.windows import group_by_slot
from edgewatch.contract import ModelCard

BLOCK = 30
ROWS = 120
WIDEN = 0.25  # of the training range's width, on each side
REASON_FEATURES = 3


@dataclass
class RangeFinding:
    """One stream whose recent rows sit outside the training range."""

    slot: int
    features: list[str]
    outside: dict[str, dict[str, float]] = field(default_factory=dict)  # feature -> value, low, high, std_away, share
    n: int = 0  # rows in the block

    def reason(self) -> str:
        parts = []
        for name in self.features[:REASON_FEATURES]:
            o = self.outside[name]
            side = "above" if o["value"] > o["high"] else "below"
            parts.append(f"{name} at {o['value']:.4g} is {o['std_away']:.3g} training std {side} its training "
                         f"range {o['low']:.4g}..{o['high']:.4g} ({o['share']:.0%} of the last {self.n} rows "
                         "outside)")
        more = len(self.features) - REASON_FEATURES
        tail = f"; and {more} more feature(s)" if more > 0 else ""
        scaled = [(name, f) for name in self.features[:REASON_FEATURES]
                  if (f := power_of_ten_off(self.outside[name])) is not None]
        swapped = [(a, b) for i, a in enumerate(self.features) for b in self.features[i + 1:]
                   if _within(self.outside[a]["value"], self.outside[b]) and _within(self.outside[b]["value"],
                                                                                    self.outside[a])]
        hint = "".join(f" {a} and {b} each read values of the other's training range: are their inputs swapped? "
                       "(Modbus ?registers=, OPC UA and MQTT ?columns= are in the model's order.)" for a, b in swapped)
        hint += "".join(f" {name} reads {f:g} times its training values: is it sent without its scale (or in "
                       f"another unit)? Then multiply its scale by {1 / f:g} (Modbus: ADDR:TYPE:SCALE in "
                       "?registers=)." for name, f in scaled)
        return ("the data is not what the model was made for: " + "; ".join(parts) + tail + "." + hint
                + (" Otherwise, is it" if hint else " Is it") + " another machine or operating point? Fit a model "
                  "on normal data from this one (edgewatch fit).")


def _within(value: float, o: dict[str, float]) -> bool:
    """``value`` inside ``o``'s training range as widened for the check itself (:data:`WIDEN` of its width)."""
    slack = WIDEN * (o["high"] - o["low"])
    return o["low"] - slack <= value <= o["high"] + slack


def power_of_ten_off(o: dict[str, float]) -> float | None:
    """10, 100, 0.1, ... when ``o``'s value over that factor lies in its training range: a raw register (x10).

    Only where the factor can be told: the widened range keeps one sign (a value near zero divided by ten is
    near zero too) and spans less than a decade, so it and its image ten times up or down do not overlap. On
    a range of 10..100, a reading of 130 is as likely a range 30 % exceeded as a scale off by ten, and is not
    called a scale.
    """
    slack = WIDEN * (o["high"] - o["low"])
    low, high = o["low"] - slack, o["high"] + slack
    if not low * high > 0 or max(abs(low), abs(high)) >= 10.0 * min(abs(low), abs(high)):
        return None
    for k in (1, 2, 3, -1, -2, -3):
        if _within(o["value"] / 10.0 ** k, o):
            return 10.0 ** k
    return None


class FirstRowsRange:
    """Counts, per stream, the first ``rows`` rows outside the widened training range, block by block."""

    def __init__(self, features: list[str], low: np.ndarray, high: np.ndarray, std: np.ndarray,
                 watched: np.ndarray, rows: int = ROWS, block: int = BLOCK) -> None:
        if block < 1 or rows < block:
            raise ValueError(f"need 1 <= block <= rows, got block={block}, rows={rows}")
        self.features = list(features)
        low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        slack = WIDEN * (high - low) + 1e-6 * np.maximum(np.abs(low), np.abs(high)) + 1e-12
        self.low, self.high = low - slack, high + slack
        self.range_low, self.range_high = low, high
        self.std = np.where(np.asarray(std, dtype=np.float64) > 0, std, np.maximum(high - low, 1e-12))
        self.watched = np.asarray(watched, dtype=bool)
        self.rows, self.block = int(rows), int(block)
        f = len(self.features)
        self._count = np.zeros(0, dtype=np.int64)  # rows seen per slot (stops at rows)
        self._outside = np.zeros((0, f), dtype=np.int32)
        self._sum = np.zeros((0, f))
        self.findings: list[RangeFinding] = []

    def _grow(self, slot: int) -> None:
        extra = max(slot + 1, 2 * self._count.size, 4) - self._count.size
        self._count = np.concatenate([self._count, np.zeros(extra, dtype=np.int64)])
        self._outside = np.concatenate([self._outside, np.zeros((extra, self._outside.shape[1]), np.int32)])
        self._sum = np.concatenate([self._sum, np.zeros((extra, self._sum.shape[1]))])

    def observe(self, slots: np.ndarray, rows: np.ndarray) -> None:
        """Feed accepted rows (``[n, F]``) of ``slots`` in arrival order; cheap once streams are past their rows.

        Column-wise: each slot's rows are summed in segments that end where
        a block ends, and only the blocks that end in this batch are judged
        one by one, in the order their last rows arrived (a stream's finding
        stops its count, so a later block of it in the same batch is not
        judged). Row by row it cost most of the agent's time while streams
        were in their first rows.
        """
        if slots.size == 0:
            return
        top = int(slots.max())
        if top >= self._count.size:
            self._grow(top)
        if (self._count[slots] >= self.rows).all():
            return
        at = np.flatnonzero((self._count[slots] < self.rows) & np.isfinite(rows).all(axis=1))
        if at.size == 0:
            return
        g = group_by_slot(slots[at])  # by slot, arrival order kept
        at, distinct, group, rank = at[g.order], g.slots, g.group, g.rank
        before = self._count[distinct]
        taken = rank < (self.rows - before)[group]  # a stream's rows past ``rows`` are not counted
        at, group, rank = at[taken], group[taken], rank[taken]
        if at.size == 0:
            return
        x = rows[at].astype(np.float64)
        mask = ((x < self.low) | (x > self.high)).astype(np.int64)
        self._count[distinct] = before + np.bincount(group, minlength=distinct.size)
        # segments: each slot's rows cut after every row that ends a block; summed each on its own
        ends = (before[group] + rank + 1) % self.block == 0
        cut = np.flatnonzero(np.concatenate([[True], (group[1:] != group[:-1]) | ends[:-1]]))
        seg_out, seg_tot = np.add.reduceat(mask, cut, axis=0), np.add.reduceat(x, cut, axis=0)
        seg_group = group[cut]
        opens = np.concatenate([[True], seg_group[1:] != seg_group[:-1]])  # a slot's first segment: add its carry
        seg_out[opens] += self._outside[distinct]
        seg_tot[opens] += self._sum[distinct]
        seg_end = np.concatenate([cut[1:], [at.size]]) - 1
        complete = ends[seg_end]
        closes = np.concatenate([seg_group[1:] != seg_group[:-1], [True]])  # a slot's last segment
        carry = closes & ~complete
        self._outside[distinct] = 0
        self._sum[distinct] = 0.0
        self._outside[distinct[seg_group[carry]]] = seg_out[carry]
        self._sum[distinct[seg_group[carry]]] = seg_tot[carry]
        stopped: set[int] = set()
        done = np.flatnonzero(complete)
        for k in done[np.argsort(at[seg_end[done]], kind="stable")].tolist():  # in the order the blocks ended
            slot = int(distinct[seg_group[k]])
            if slot not in stopped and self._judge(slot, seg_out[k], seg_tot[k]):
                stopped.add(slot)
        for slot in stopped:  # one finding per stream
            self._count[slot] = self.rows
            self._outside[slot] = 0
            self._sum[slot] = 0.0

    def _judge(self, slot: int, outside: np.ndarray, total: np.ndarray) -> bool:
        """A finished block of ``slot``: a finding when most of its rows of a watched feature lay outside."""
        share = outside / self.block
        mean = total / self.block
        hit = np.flatnonzero(self.watched & (share > 0.5))
        if hit.size == 0:
            return False
        away = np.where(mean > self.range_high, mean - self.range_high, self.range_low - mean) / self.std
        order = hit[np.argsort(-away[hit])]
        self.findings.append(RangeFinding(
            slot, [self.features[j] for j in order],
            {self.features[j]: {"value": float(mean[j]), "low": float(self.range_low[j]),
                                "high": float(self.range_high[j]), "std_away": float(away[j]),
                                "share": float(share[j])} for j in order}, self.block))
        return True

    def reset(self, slot: int) -> None:
        """A stream that reconnected is checked again from its next row."""
        if 0 <= slot < self._count.size:
            self._count[slot] = 0
            self._outside[slot] = 0
            self._sum[slot] = 0.0

    def take(self) -> list[RangeFinding]:
        out, self.findings = self.findings, []
        return out


def range_check_for(card: ModelCard, rows: int = ROWS) -> FirstRowsRange | None:
    """The check a card asks for: its training range, else every feature's span in the drift reference.

    Features the reference names ``unchecked`` are not watched.
    """
    ref = card.drift_reference
    if ref is None or rows <= 0:
        return None
    low = np.array([q[0] for q in ref.quantiles], dtype=np.float64)
    high = np.array([q[-1] for q in ref.quantiles], dtype=np.float64)
    watched = np.array([f not in ref.unchecked for f in card.features])  # not a feature read by its rate
    if card.training_range is not None:
        watched &= np.array([f in card.training_range for f in card.features])
        for j, f in enumerate(card.features):
            if f in card.training_range:
                low[j], high[j] = card.training_range[f]
    if not watched.any():
        return None
    return FirstRowsRange(card.features, low, high, np.asarray(ref.std, dtype=np.float64), watched,
                          rows=rows, block=min(BLOCK, rows))
