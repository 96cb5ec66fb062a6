"""A running drift check inside the agent: recent inputs per stream versus the training data.

The model file carries a :class:`~edgewatch.contract.DriftReference` (101
quantiles per feature of the training inputs). The agent hands every batch of
accepted messages to :meth:`DriftWatch.observe_many`, which copies them into a
bounded ring buffer per stream (cheap, vectorised), and asks
:meth:`DriftWatch.due_events` now and then; streams that received
``check_every`` new messages since their last check are tested.

The test is a Kolmogorov-Smirnov test per feature with a Bonferroni
correction (drift when any ``p < alpha / n_checked``). Features the
reference names in ``unchecked`` (the model reads their rate, not their
level, or ignores them) are left out: their level moves through the normal
data, so testing it flagged the model's own training data (replaying the
normal file of ``edgewatch fit`` raised ``drift`` on its warming
temperature). The log says so once, when the watch is built. The reference is a
set of quantiles, not a sample, so the statistic is taken against the
piecewise-linear CDF through those quantiles (exact at each quantile, within
one percent between them; point masses such as a constant feature are kept
as jumps), and the p-value is the two-sample one: the exact KS distribution
at the effective size ``n_e = n m / (n + m)`` where ``n`` is the reference
size and ``m`` the recent sample, as ``scipy.stats.ks_2samp(mode="asymp")``
does. With a large reference this becomes the one-sample test.

A reference with operating points (``modes``: a pump that runs and stops)
is used point by point: each row of the recent sample goes to its nearest
point, and the sample is tested against the mixture of the points' own
quantiles weighted by its share in each, so a two-hour stop is compared
with the training data's stops (tested against the whole mix it raised
``drift`` on every long stop of normal operation).

When it misleads: KS assumes independent draws. Consecutive measurements of
a slow or cyclic signal are not; a window of 512 consecutive points covering
part of a load cycle differs from the whole-cycle training distribution
without any drift. Use ``keep_every`` so that the sample spans several
cycles (e.g. keep every 10th message), or a larger ``sample_size``.

NumPy and SciPy only: no torch, no onnx.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from edgewatch.agent.watch.range_check import FirstRowsRange
from edgewatch.contract import DriftReference
from edgewatch.contract.drift_reference import check_reference
from edgewatch.errors import BadInput

log = logging.getLogger("edgewatch.agent")

MIN_SAMPLE = 20  # below this the KS p-value means little; such streams are not checked


@dataclass
class DriftEvent:
    """The outcome of one KS check of one stream; ``features`` lists those that drifted."""

    slot: int
    features: list[str]
    statistic: dict[str, float]
    p_value: dict[str, float]
    alpha: float  # the Bonferroni-corrected level each p-value was compared with
    n: int  # inputs in the recent sample
    n_reference: int
    check: str = "ks"  # or "range": a stream's first rows outside the training range (agent/watch/range_check.py)
    reason: str = ""
    outside: dict[str, dict[str, float]] = field(default_factory=dict)  # range: feature -> value, low, high...
    # ks against a reference with operating points: the recent sample's share in each (the mixture's weights)
    modes: list[float] | None = None

    @property
    def drifted(self) -> bool:
        return bool(self.features)


def _interp(x: np.ndarray, j: np.ndarray, knots: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """CDF through ``knots`` given each point's knot index ``j`` (any shape; knots along axis 0)."""
    q = knots.shape[0]
    lo = np.clip(j - 1, 0, q - 1)
    hi = np.clip(j, 0, q - 1)
    k_lo, k_hi = _take(knots, lo), _take(knots, hi)
    width = k_hi - k_lo
    t = np.where(width > 0, (x - k_lo) / np.where(width > 0, width, 1.0), 0.0)
    cdf = probs[lo] + t * (probs[hi] - probs[lo])
    return np.where(j == 0, 0.0, np.where(j == q, 1.0, cdf))


def _take(knots: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return knots[idx] if knots.ndim == 1 else np.take_along_axis(knots, idx, axis=0)


def ks_statistics(sample: np.ndarray, knots: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per column of ``sample`` ``[m, F]``: sup distance between its ECDF and the reference CDF.

    ``knots`` is ``[Q, F]``, evenly spaced quantiles; or ``[K, Q, F]``, the
    quantiles of ``K`` operating points, with ``weights`` ``[K]`` (summing
    to one): the reference is then their mixture. Both CDFs are monotone
    and the sample's is constant between its points, so the supremum is
    reached at a sample point, from the right or from the left; ties in the
    sample are handled (a discrete feature against a discrete reference).
    """
    # Compare at float32 precision: references are summaries of float32 training
    # arrays, and a sample value 0.4 must equal a knot stored as float32(0.4)
    # (else a discrete feature's whole level lands on the wrong side of the knot).
    x = np.sort(np.asarray(sample, dtype=np.float32).astype(np.float64), axis=0)
    knots = np.asarray(knots, dtype=np.float32).astype(np.float64)
    if knots.ndim == 2:
        knots, weights = knots[None], np.ones(1)
    elif weights is None or len(weights) != knots.shape[0]:
        raise ValueError("a mixture reference needs one weight per operating point")
    m, f = x.shape
    probs = np.linspace(0.0, 1.0, knots.shape[1])
    idx = np.broadcast_to(np.arange(m)[:, None], x.shape)
    new_run = np.ones(x.shape, dtype=bool)
    new_run[1:] = x[1:] != x[:-1]
    run_end = np.ones(x.shape, dtype=bool)
    run_end[:-1] = new_run[1:]
    first = np.maximum.accumulate(np.where(new_run, idx, 0), axis=0)  # first index of each value's run
    last = np.minimum.accumulate(np.where(run_end, idx, m)[::-1], axis=0)[::-1]  # last index of the run
    cdf_right = np.zeros(x.shape)
    cdf_left = np.zeros(x.shape)
    j_right = np.empty(x.shape, dtype=np.intp)
    j_left = np.empty(x.shape, dtype=np.intp)
    for w, kn in zip(np.asarray(weights, dtype=np.float64), knots):
        if w == 0:
            continue
        for c in range(f):
            j_right[:, c] = np.searchsorted(kn[:, c], x[:, c], side="right")
            j_left[:, c] = np.searchsorted(kn[:, c], x[:, c], side="left")
        cdf_right += w * _interp(x, j_right, kn, probs)
        cdf_left += w * _interp(x, j_left, kn, probs)
    right = np.abs((last + 1) / m - cdf_right)
    left = np.abs(first / m - cdf_left)
    return np.maximum(right.max(axis=0), left.max(axis=0))


def ks_statistic_vs_quantiles(sample: np.ndarray, knots: np.ndarray) -> float:
    """One feature: :func:`ks_statistics` of a 1-D sample against its quantiles."""
    return float(ks_statistics(np.asarray(sample, dtype=np.float64)[:, None],
                               np.asarray(knots, dtype=np.float64)[:, None])[0])


def kolmogorov_sf(statistic: np.ndarray | float, n: float) -> np.ndarray:
    """P(D_n >= d) for the two-sided KS statistic, by the Kolmogorov series with Stephens' correction.

    ``lambda = (sqrt(n) + 0.12 + 0.11 / sqrt(n)) * d`` and
    ``Q(lambda) = 2 * sum_k (-1)^(k-1) exp(-2 k^2 lambda^2)`` (Stephens 1970),
    accurate to a few parts in a thousand for n >= 5 in the tail that
    matters here. NumPy only: importing ``scipy.stats`` for ``kstwo`` alone
    costs the agent about 60 MiB of resident memory.
    """
    d = np.asarray(statistic, dtype=np.float64)
    rn = math.sqrt(max(n, 1.0))
    lam = (rn + 0.12 + 0.11 / rn) * d
    k = np.arange(1, 101, dtype=np.float64)
    terms = np.exp(-2.0 * np.multiply.outer(lam * lam, k * k)) * np.where(k % 2 == 1, 1.0, -1.0)
    q = 2.0 * terms.sum(axis=-1)
    q = np.where(lam < 0.2, 1.0, q)  # the series converges slowly near 0, where Q = 1 to 1e-9
    return np.clip(q, 0.0, 1.0)


def kolmogorov_isf(p: float, n: float) -> float:
    """The statistic ``d`` with ``kolmogorov_sf(d, n) = p`` (bisection; the sf falls monotonically)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(kolmogorov_sf(mid, n)) > p:
            lo = mid
        else:
            hi = mid
    return hi


def ks_pvalue(statistic: np.ndarray | float, n: int, n_reference: int) -> np.ndarray:
    """Two-sided KS p-value at the effective size of a two-sample test."""
    en = n * n_reference / (n + n_reference)
    return kolmogorov_sf(statistic, max(1.0, en))


def _groups(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal values in sorted ``s``: starts, lengths, values, and each item's rank in its run."""
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    counts = np.diff(np.append(starts, s.size))
    rank = np.arange(s.size) - np.repeat(starts, counts)
    return starts, counts, s[starts], rank


class DriftWatch:
    """Bounded samples of recent inputs per stream, KS-tested against the model's reference.

    Streams are small integer slot ids given by the agent; buffers grow to
    the largest slot seen. Memory is ``slots * sample_size * n_features * 8``
    bytes (16 streams, 512, 4 features: 256 kB).
    """

    def __init__(self, reference: DriftReference, features: list[str], sample_size: int = 512,
                 check_every: int = 512, alpha: float = 0.05, keep_every: int = 1,
                 min_statistic: float = 0.0, min_sample: int = MIN_SAMPLE, max_slots: int | None = None,
                 first_rows: FirstRowsRange | None = None) -> None:
        check_reference(reference, len(features), list(features))
        if sample_size < MIN_SAMPLE:
            raise ValueError(f"sample_size must be at least {MIN_SAMPLE}")
        if check_every < 1 or keep_every < 1:
            raise ValueError("check_every and keep_every must be at least 1")
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be between 0 and 1")
        self.reference = reference
        self.features = list(features)
        self.sample_size = int(sample_size)
        self.check_every = int(check_every)
        self.keep_every = int(keep_every)
        self.alpha = float(alpha)
        # the features whose level is tested: the KS test reads only these columns of the sample
        self._checked = np.asarray(reference.checked(self.features), dtype=np.intp)
        self.checked_features = [self.features[j] for j in self._checked]
        self._all_checked = len(self.checked_features) == len(self.features)
        self.alpha_corrected = self.alpha / max(1, len(self.checked_features))
        # A feature drifts when its KS p-value is under alpha_corrected AND its
        # statistic is at least min_statistic: with hundreds of correlated
        # inputs, significance alone also flags harmless differences.
        self.min_statistic = float(min_statistic)
        self.min_sample = max(MIN_SAMPLE, min(int(min_sample), self.sample_size))
        self._knots = np.asarray(reference.quantiles, dtype=np.float64).T[:, self._checked].copy()  # [Q, checked]
        self._modes = reference.modes
        if self._modes is not None:
            self._mode_cols = np.asarray([self.features.index(f) for f in self._modes.features], dtype=np.intp)
            self._mode_knots = np.asarray(self._modes.quantiles, dtype=np.float64)[:, self._checked].transpose(0, 2, 1)
            self._mode_n = np.asarray(self._modes.n, dtype=np.float64)
            log.info("drift check: each stream is compared with the %d operating points of the training data it "
                     "runs in (told apart by %s), weighted by its recent time in each",
                     len(self._modes.n), ", ".join(self._modes.features))
        self._n_features = len(self.features)
        # float32: the KS test compares at float32 precision anyway (see ks_statistics), and the sample
        # is most of a stream's memory (512 x n_features values)
        self._buf = np.zeros((0, self.sample_size, self._n_features), dtype=np.float32)
        self.max_slots = max_slots  # streams the agent holds at most: growth stops there
        self._pos = np.zeros(0, dtype=np.intp)  # next write position in each ring
        self._counters = np.zeros((0, 3), dtype=np.intp)
        self._views()
        self.checks_run = 0
        self._critical_cache: dict[tuple[int, int], float] = {}
        self._drifting: dict[int, tuple[str, ...]] = {}  # streams whose last check found drift
        self._slack = self.check_every  # rows that can arrive before any stream is due
        self.first_rows = first_rows  # each stream's first rows against the training range
        if reference.unchecked:
            log.info("drift check: not testing the level of %s",
                     "; ".join(f"{name}: {why}" for name, why in reference.unchecked.items()))

    # -- feeding ---------------------------------------------------------------------

    def _grow(self, slot: int) -> None:
        cap = max(slot + 1, 2 * self._pos.size, 4)
        if self.max_slots:
            cap = max(slot + 1, min(cap, self.max_slots))
        extra = cap - self._pos.size
        self._buf = np.concatenate([self._buf, np.zeros((extra, self.sample_size, self._n_features), np.float32)])
        self._pos = np.concatenate([self._pos, np.zeros(extra, dtype=np.intp)])
        self._counters = np.concatenate([self._counters, np.zeros((extra, 3), dtype=np.intp)])
        self._views()

    def _views(self) -> None:
        # one array for the three per-stream counters, so a batch updates them in one operation
        self._count = self._counters[:, 0]  # rows kept since reset
        self._seen = self._counters[:, 1]  # rows observed since reset (for keep_every)
        self._since = self._counters[:, 2]  # rows observed since the last check

    def observe_many(self, slots: np.ndarray, rows: np.ndarray, order: np.ndarray | None = None) -> None:
        """Record one batch of accepted inputs: ``rows[i]`` (``[n_features]``) came from ``slots[i]``.

        Rows of one slot are taken in batch order. Non-finite rows are
        ignored (the agent should have refused them already). Called for
        every batch, so the usual cases (one row; one row per stream) take
        a short path. ``order``: ``slots``' stable argsort, when the caller
        has it already (the agent's column-wise batches): one sort less.
        """
        rows = np.asarray(rows, dtype=np.float64)
        slots = np.asarray(slots)
        if rows.ndim != 2 or rows.shape[1] != self._n_features or slots.size != rows.shape[0]:
            raise BadInput(f"observe_many needs rows [n, {self._n_features}] for n slots, "
                           f"got rows {rows.shape} for {slots.size} slots")
        n = rows.shape[0]
        if n == 0:
            return
        if slots.dtype.kind not in "iu" or slots.ndim != 1:
            slots = slots.astype(np.intp).ravel()
        if self.first_rows is not None and slots.min() >= 0:
            self.first_rows.observe(slots, rows)
        if n == 1:
            slot = int(slots[0])
            if slot < 0:
                raise BadInput("stream slots must be non-negative integers")
            if slot >= self._pos.size:
                self._grow(slot)
            if math.isfinite(float(rows.sum())):
                self._observe_one(slot, rows[0])
            return
        if not math.isfinite(float(rows.sum())):  # one sum is cheaper than a per-row mask
            finite = np.isfinite(rows).all(axis=1)
            slots, rows, order = slots[finite], rows[finite], None
            if slots.size == 0:
                return
        try:
            per_slot = np.bincount(slots)
        except ValueError:
            raise BadInput("stream slots must be non-negative integers") from None
        if per_slot.size > self._pos.size:
            self._grow(per_slot.size - 1)
        self._slack -= slots.size
        if self.keep_every == 1 and per_slot.max() == 1:
            # the usual batch: at most one message per stream
            where = self._pos[slots]
            self._buf[slots, where] = rows
            self._pos[slots] = (where + 1) % self.sample_size
            self._counters[slots] += 1
            return
        if order is None:
            order = np.argsort(slots, kind="stable")
        self._observe_grouped(slots[order], rows[order])

    def _observe_grouped(self, s: np.ndarray, r: np.ndarray) -> None:
        starts, counts, uniq, rank = _groups(s)
        self._since[uniq] += counts
        if self.keep_every > 1:
            kept = (self._seen[s] + rank) % self.keep_every == 0
            self._seen[uniq] += counts
            s, r = s[kept], r[kept]
            if s.size == 0:
                return
            starts, counts, uniq, rank = _groups(s)
        else:
            self._seen[uniq] += counts
        last = rank >= np.repeat(counts, counts) - self.sample_size  # a ring holds only the newest
        where = (self._pos[s] + rank) % self.sample_size
        self._buf[s[last], where[last]] = r[last]
        self._pos[uniq] = (self._pos[uniq] + counts) % self.sample_size
        self._count[uniq] += counts

    def _observe_one(self, slot: int, row: np.ndarray) -> None:
        self._slack -= 1
        self._since[slot] += 1
        seen = self._seen[slot]
        self._seen[slot] = seen + 1
        if self.keep_every > 1 and seen % self.keep_every:
            return
        pos = self._pos[slot]
        self._buf[slot, pos] = row
        self._pos[slot] = (pos + 1) % self.sample_size
        self._count[slot] += 1

    def reset(self, slot: int) -> None:
        """Forget a stream's recent inputs (after a reconnect, or when the stream is gone)."""
        if 0 <= slot < self._pos.size:
            self._pos[slot] = 0
            self._counters[slot] = 0
        if self.first_rows is not None:
            self.first_rows.reset(slot)

    def sample(self, slot: int) -> np.ndarray:
        """The stream's recent sample ``[m, n_features]`` (order not meaningful)."""
        if not 0 <= slot < self._pos.size:
            return np.zeros((0, self._n_features))
        m = min(int(self._count[slot]), self.sample_size)
        return self._buf[slot, :m].copy() if m < self.sample_size else self._buf[slot].copy()

    # -- checking --------------------------------------------------------------------

    def _statistics(self, x: np.ndarray) -> tuple[np.ndarray, int, list[float] | None]:
        """KS distance per checked feature (``self.checked_features`` order), the reference's size, the mode shares.

        With operating points the reference is their mixture weighted by
        the sample's own shares: a sample drawn point by point (stratified)
        spreads less about it than independent draws would, so the usual
        p-value is, if anything, conservative. Its size is the one whose
        variance the mixture's estimate has, ``1 / sum(w_k^2 / n_k)``: the
        point's own ``n_k`` for a sample in one point, ``n`` for the
        training shares.
        """
        xc = x if self._all_checked else x[:, self._checked]
        if self._modes is None:
            return ks_statistics(xc, self._knots), int(self.reference.n), None
        label = self._modes.assign(x[:, self._mode_cols])
        w = np.bincount(label, minlength=self._mode_n.size) / x.shape[0]
        n_ref = max(2, int(round(1.0 / float((w * w / self._mode_n).sum()))))
        return ks_statistics(xc, self._mode_knots, w), n_ref, [float(v) for v in w]

    def _critical(self, n: int, n_ref: int) -> float:
        """The KS statistic above which ``p < alpha_corrected`` at sample size ``n`` (cached)."""
        crit = self._critical_cache.get((n, n_ref))
        if crit is None:
            en = max(1.0, n * n_ref / (n + n_ref))
            crit = kolmogorov_isf(self.alpha_corrected, en)
            if len(self._critical_cache) > 4096:  # mode shares vary the reference's size: keep the cache bounded
                self._critical_cache.clear()
            self._critical_cache[(n, n_ref)] = crit
        return crit

    def _event(self, slot: int, x: np.ndarray, d: np.ndarray, n_ref: int, shares: list[float] | None) -> DriftEvent:
        p = ks_pvalue(d, x.shape[0], n_ref)
        names = self.checked_features
        drifted = [name for name, pv, dv in zip(names, p, d)
                   if pv < self.alpha_corrected and dv >= self.min_statistic]
        return DriftEvent(slot=int(slot), features=drifted,
                          statistic={n: float(v) for n, v in zip(names, d)},
                          p_value={n: float(v) for n, v in zip(names, p)},
                          alpha=self.alpha_corrected, n=int(x.shape[0]), n_reference=n_ref, modes=shares)

    def _range_events(self) -> list[DriftEvent]:
        if self.first_rows is None or not self.first_rows.findings:
            return []
        out = []
        for found in self.first_rows.take():
            out.append(DriftEvent(slot=found.slot, features=list(found.features), statistic={}, p_value={},
                                  alpha=self.alpha_corrected, n=found.n, n_reference=int(self.reference.n),
                                  check="range", reason=found.reason(), outside=found.outside))
            self._drifting[found.slot] = tuple(found.features)
        return out

    def due_events(self) -> list[DriftEvent]:
        """Check every stream that saw ``check_every`` messages since its last check; return the changes.

        An event is returned when a stream starts drifting or drifts in
        another set of features, and when a drifting stream comes back (an
        event with no ``features``): one episode of drift is two events, not
        one per check. A quiet check costs a sort per feature; p-values are
        computed only when a statistic passes the cached critical value.
        Streams whose first rows left the training range come first (one
        ``check="range"`` event each; a later KS check that finds nothing
        ends it with ``drift_end``).
        """
        events = self._range_events()
        if self._slack > 0 or not self._since.size or not self._checked.size:
            return events  # no stream can have reached check_every yet (or no feature is tested): skip the scan
        for slot in np.flatnonzero(self._since >= self.check_every):
            slot = int(slot)
            x = self.sample(slot)
            if x.shape[0] < self.min_sample:
                continue
            self._since[slot] = 0
            self.checks_run += 1
            d, n_ref, shares = self._statistics(x)
            quiet = d.max() < max(self._critical(x.shape[0], n_ref) * (1 - 1e-9), self.min_statistic)
            if quiet and slot not in self._drifting:
                continue
            event = self._event(slot, x, d, n_ref, shares)
            state = tuple(event.features)
            if state != self._drifting.get(slot, ()):
                events.append(event)
                if state:
                    self._drifting[slot] = state
                else:
                    del self._drifting[slot]
        self._slack = self.check_every - int(self._since.max())
        return events
