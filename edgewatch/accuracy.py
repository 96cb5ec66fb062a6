"""Point-wise and range-aware detection metrics (NumPy only).

Conventions used throughout: a higher score is more anomalous; a point is
flagged when ``score >= threshold``; labels are 0/1 per point; a region is
``(start, end)`` with ``end`` *inclusive*.

Why several metrics: AUC-PR ignores that anomalies come as ranges, and
point-adjusted F1 (a single hit counts the whole range) flatters weak
detectors so much that random scores look good (Kim et al., AAAI 2022), so
it is only ever reported beside plain F1. VUS-PR (Paparrizos et al., VLDB
2022) gives partial credit to detections near a range through a buffer and
averages over buffer sizes, so it does not hinge on one arbitrary margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def regions(labels_or_flags: np.ndarray) -> list[tuple[int, int]]:
    """Runs of non-zero values as ``(start, end)`` pairs, end inclusive."""
    x = np.asarray(labels_or_flags).astype(bool).astype(np.int8).ravel()
    if x.size == 0:
        return []
    d = np.diff(np.concatenate([[0], x, [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores for {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return s, y


def _cuts(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descending order of the scores and the positions where a threshold cut ends a tie."""
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    last = np.ones(ss.size, dtype=bool)
    last[:-1] = ss[1:] != ss[:-1]
    return order, last


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties counted half."""
    from edgewatch.errors import require

    rankdata = require("scipy.stats", "eval").rankdata
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both positive and negative labels")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_pr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: sum over thresholds of precision times the gain in recall.

    Equal to scikit-learn's ``average_precision_score`` (no interpolation).
    NaN when there is no positive label.
    """
    s, y = _check(scores, labels)
    if not y.any():
        return float("nan")
    order, last = _cuts(s)
    tp = np.cumsum(y[order])[last]
    flagged = (np.flatnonzero(last) + 1).astype(np.float64)
    precision = tp / flagged
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def _buffer_labels(y: np.ndarray, ranges: list[tuple[int, int]], window: int) -> np.ndarray:
    """Soft labels of the points *around* the ranges (0 inside them): ``sqrt(1 - d/window)`` for the
    ``window // 2`` points either side, where ``d`` is the distance to the range; overlapping buffers add
    up (capped at 1), as in TSB-AD."""
    n = y.size
    out = np.zeros(n)
    half = window // 2
    if half <= 0:
        return out
    d = np.arange(1, half + 1)
    w = np.sqrt(1.0 - d / window)
    for a, b in ranges:
        right = b + d
        ok = right < n
        np.add.at(out, right[ok], w[ok])
        left = a - d
        ok = left >= 0
        np.add.at(out, left[ok], w[ok])
    return np.where(y, 0.0, np.minimum(out, 1.0))


def _segments(ranges: list[tuple[int, int]], half: int, n: int) -> list[tuple[int, int]]:
    """The ranges widened by ``half`` points either side, merged where they touch (TSB-AD's rule)."""
    out = []
    a = max(ranges[0][0] - half, 0)
    for (_, b), (c, _) in zip(ranges[:-1], ranges[1:]):
        if b + half < c - half:
            out.append((a, b + half))
            a = c - half
    out.append((a, min(ranges[-1][1] + half, n - 1)))
    return out


def range_auc_pr(scores: np.ndarray, labels: np.ndarray, buffer: int, thresholds: int = 250) -> float:
    """Range-based AUC-PR with a buffer of ``buffer`` points (``buffer // 2`` either side of each range).

    The definition of TSB-AD's ``RangeAUC_volume_opt`` (Paparrizos et al.,
    VLDB 2022), written from its formulas: at each of ``thresholds``
    thresholds (the scores at evenly spaced ranks), a flagged point earns 1
    in a range and its soft label in a buffer; precision is that credit per
    flagged point; recall is the credit over ``P + B/2`` (``P`` the range
    points, ``B`` the credit earned in buffers), capped at 1, times the
    share of (merged, buffered) ranges with a flagged point; the area is the
    sum of precision times the gain in recall. A perfect detector gets 1 at
    any buffer.
    """
    s, y = _check(scores, labels)
    if not y.any():
        return float("nan")
    return _RangePR(s, y, thresholds).area(buffer)


class _RangePR:
    """What every buffer size shares: the order of the scores, the cuts and the points flagged at each."""

    def __init__(self, s: np.ndarray, y: np.ndarray, thresholds: int) -> None:
        n = s.size
        self.s, self.y, self.ranges = s, y, regions(y)
        self.order = np.argsort(-s, kind="stable")
        desc = s[self.order]
        self.cuts = desc[np.linspace(0, n - 1, thresholds).astype(int)]
        self.flagged = n - np.searchsorted(desc[::-1], self.cuts, side="left")  # points with score >= each cut
        self.in_range = np.cumsum(y[self.order])[self.flagged - 1]

    def area(self, buffer: int) -> float:
        s, y, n = self.s, self.y, self.s.size
        buf = _buffer_labels(y, self.ranges, buffer)
        in_buffer = np.cumsum(buf[self.order])[self.flagged - 1]
        segs = _segments(self.ranges, buffer // 2, n)
        seg_max = np.sort([s[a:b + 1].max() for a, b in segs])
        found = len(segs) - np.searchsorted(seg_max, self.cuts, side="left")  # segments with a point >= cut
        tp = self.in_range + in_buffer
        recall = np.minimum(tp / (float(y.sum()) + in_buffer / 2.0), 1.0) * (found / len(segs))
        precision = tp / self.flagged
        return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def vus_pr(scores: np.ndarray, labels: np.ndarray, max_buffer: int | None = None, thresholds: int = 250) -> float:
    """Volume under the range-PR surface: :func:`range_auc_pr` averaged over every buffer 0..max_buffer.

    Agrees with TSB-AD's ``generate_curve(..., slidingWindow=max_buffer, version="opt")``
    (checked against tsb-ad 1.5 in docs/eval.md). ``max_buffer`` defaults to
    the median length of the anomalous ranges (at least 2); TSB-AD's
    benchmark passes the series' period estimate instead, so pass that for
    figures comparable with its tables.
    """
    s, y = _check(scores, labels)
    if not y.any():
        return float("nan")
    if max_buffer is None:
        max_buffer = max(2, int(np.median([b - a + 1 for a, b in regions(y)])))
    pr = _RangePR(s, y, thresholds)
    return float(np.mean([pr.area(b) for b in range(int(max_buffer) + 1)]))


@dataclass
class BestF1:
    """The best point-wise F1 over a threshold search; flagged means ``score >= threshold``."""

    f1: float
    threshold: float
    precision: float
    recall: float


def _prf(tp: np.ndarray, flagged: np.ndarray, positives: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    precision = np.divide(tp, flagged, out=np.zeros_like(tp, dtype=np.float64), where=flagged > 0)
    recall = tp / positives if positives else np.zeros_like(tp, dtype=np.float64)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return f1, precision, recall


def best_f1(scores: np.ndarray, labels: np.ndarray, lo_pct: float = 50, hi_pct: float = 99) -> BestF1:
    """The threshold between two score percentiles that maximises F1.

    Searching only between percentiles (50th to 99th by default) keeps the
    threshold from sitting on a handful of extreme points. Every distinct
    score in that range is tried (exact, one sort).
    """
    s, y = _check(scores, labels)
    if not 0 <= lo_pct <= hi_pct <= 100:
        raise ValueError(f"need 0 <= lo_pct <= hi_pct <= 100, got {lo_pct}, {hi_pct}")
    lo, hi = np.percentile(s, [lo_pct, hi_pct])
    order, last = _cuts(s)
    ss = s[order][last]
    tp = np.cumsum(y[order])[last].astype(np.float64)
    flagged = (np.flatnonzero(last) + 1).astype(np.float64)
    f1, p, r = _prf(tp, flagged, float(y.sum()))
    ok = (ss >= lo) & (ss <= hi)
    if not ok.any():
        i = int(np.argmin(np.abs(ss - hi)))
    else:
        idx = np.flatnonzero(ok)
        i = int(idx[np.argmax(f1[idx])])
    return BestF1(float(f1[i]), float(ss[i]), float(p[i]), float(r[i]))


def point_adjust(flags: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Flags after point adjustment: a range with any flagged point is flagged whole."""
    f = np.asarray(flags).astype(bool).ravel().copy()
    y = np.asarray(labels).astype(bool).ravel()
    for a, b in regions(y):
        if f[a:b + 1].any():
            f[a:b + 1] = True
    return f


def f1_at(flags: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(F1, precision, recall) of 0/1 flags."""
    f = np.asarray(flags).astype(bool).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    f1, p, r = _prf(np.array([float((f & y).sum())]), np.array([float(f.sum())]), float(y.sum()))
    return float(f1[0]), float(p[0]), float(r[0])


@dataclass
class F1Report:
    """Plain and point-adjusted F1 at the same threshold: PA-F1 never travels alone."""

    threshold: float
    f1: float
    precision: float
    recall: float
    pa_f1: float
    pa_precision: float
    pa_recall: float

    def __str__(self) -> str:
        return (f"F1 {self.f1:.3f} (P {self.precision:.3f} R {self.recall:.3f}) | "
                f"point-adjusted F1 {self.pa_f1:.3f} (P {self.pa_precision:.3f} R {self.pa_recall:.3f}) "
                f"at threshold {self.threshold:.6g}")


def f1_report(scores: np.ndarray, labels: np.ndarray, threshold: float | None = None,
              lo_pct: float = 50, hi_pct: float = 99) -> F1Report:
    """F1 and point-adjusted F1 at ``threshold`` (default: the best-F1 threshold)."""
    s, y = _check(scores, labels)
    if threshold is None:
        threshold = best_f1(s, y, lo_pct, hi_pct).threshold
    flags = s >= threshold
    f1, p, r = f1_at(flags, y)
    pf1, pp, pr = f1_at(point_adjust(flags, y), y)
    return F1Report(float(threshold), f1, p, r, pf1, pp, pr)
