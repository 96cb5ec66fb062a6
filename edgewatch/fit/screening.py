"""Which features a model of normal operation can rely on, and how; and whether "normal" is one state.

Decided from the normal data itself, by principle, with the reason kept
for the report:

* **constant** (one value throughout): no normal spread to learn; left out.
* **counter** (rises or falls by the same step every row: a row index, an
  operating-hours counter): not a measurement; left out.
* **copy** (the same value as an earlier feature in every row: a tag
  exported twice): left out, or the model would weigh that sensor twice.
* **totaliser** (only rises, and falls only back to the bottom of its
  range now and then: a flow totaliser reset at each shift change, a
  count of pieces made, a meter that rolls over; or rises in most rows
  and never falls): its level counts since the last reset, which no
  fault moves and a new shift or a rollover changes at will, and its rate
  is the flow it totals, torn at every reset; left out here, with what to
  export instead, and kept as its rate by ``edgewatch fit``
  (:mod:`edgewatch.fit.totalisers`: a wrap differenced modulo the
  counter's range, a reset held). A noisy measurement falls as often as it rises, and to
  anywhere in its range; a step number is a state (below).
* **too fine for float32** (its 32-bit rounding, which the agent and the
  model file compute in, exceeds ``FLOAT32_SHARE`` of its short-term
  noise: a running-hours counter at 12,345.67 that moves 0.01 at a time, a
  meter's total at 1,234,567.8): left out, with the figures. Kept, such a
  column failed the model's export parity check (exit 3) or would be
  scored on rounding noise. Not a totaliser (above): it is kept as its
  rate, which ``fit`` and the agent difference in 64-bit numbers, so a
  kWh meter in the millions moving 0.1 at a time gives its kW exactly.
* **drifting** (warms up, runs down: its level moves through the normal
  period): the mean of its last third differs from the mean of its first
  third by more than ``TREND_LIMIT`` times its own short-term noise (the
  row-to-row variation, ``sqrt(mean(diff²) / 2)``). Such a feature leaves
  any range the normal data shows while the machine is still normal, so
  its level would raise false alarms; it is scored by its *rate* (its
  slope over the window) instead, or left out (``Drifting``). Why five:
  with white noise of the same size the two means differ by about 0.12
  noise units at 400 rows, and a window-mean model already alarms on
  sustained shifts of one or two noise units; a level that moved five has
  moved as far as a fault would. On SKAB's 30 files (first 400 rows) the
  statistic's median is 3.9 for the motor temperature and 6.7 for the
  fluid's, 0.1-0.5 for the other sensors (docs/fit.md).
  A level that moved that far has drifted only when it also moved by more
  than ``SPREAD_LIMIT`` (one) of its own standard deviations over all the
  normal data: a steady drift moves its thirds' means about 2.3 standard
  deviations apart, a step between two operating points about 2, while a
  level that wanders to and fro (a load, the day's ambient temperature)
  over a range the normal data covers many times moves them well under
  one. Such a wandering level is a stable reference, and scoring it by its
  rate would lose its correlation with the others (a compressor's current
  following its load: a blocked inlet, flow down and current up, went
  unseen with the current scored by its rate).

**States and setpoints** (a valve's 0/1, a mode number 1/2/3, an
operator's setpoint that steps 60, 70, 80: at most ``STATE_VALUES``
distinct values, each held for stretches: unchanged in at least
``STATE_STILL`` of the rows, most values held ``STATE_HELD`` rows or more
between changes, where a coarse reading flickers between two values at
each crossing) are what the operator or the control system
chose: scored by their level, never by a rate, and the other features'
level change first -> last third is judged on what the states do not
explain (each feature less its mean in each combination of states). A
process value that follows its setpoint to another level is not drifting
(before, a temperature loop's PV, output and steam flow became rates when
the setpoint stood higher in the last third than in the first: a fouled
exchanger, the output at 80 % for the 44 % of normal, went unseen).

``operating_modes`` looks for distinct operating points: windows of the
normal data that fall into two groups far apart (2-means on the window
means, the groups more than ``MODE_SEPARATION`` pooled standard
deviations apart along the line joining them, the smaller holding at least
5 % of the windows; a steady trend splits at about 3.5). A model fitted on
both calls both normal and cannot tell a switch between them from a
fault; fitted on one, it flags the other. ``edgewatch fit`` warns and
says where each group lies. A step between two operating points also
moves the level between the first and last thirds, so the features that
step are scored by their rate like drifting ones: their level is not a
stable reference either way. (Keeping such steps as levels was tried:
on SKAB's other/13, whose first 160 rows run at another flow, it added a
false episode, and it makes the model blind to a level change inside
either mode; docs/fit.md.) The check runs on every measured feature,
drifting ones included, so the warning still comes.

NumPy only.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgewatch.wire.csv_states import describe, level_shown

TREND_LIMIT = 5.0
SPREAD_LIMIT = 1.0  # ... and by more than this many of its standard deviations over all the normal data
FLOAT32_SHARE = 0.01  # float32 rounding above this share of a feature's noise hides what fit saw from the agent
MODE_SEPARATION = 6.0
MODE_MIN_SHARE = 0.05


class Use(str, enum.Enum):
    LEVEL = "level"
    RATE = "rate"
    LEFT_OUT = "left out"


class Drifting(str, enum.Enum):
    """What to do with a drifting feature."""

    RATE = "rate"  # score its slope over the window
    LEAVE_OUT = "leave-out"
    KEEP = "keep"  # score its level anyway


@dataclass
class FeatureChoice:
    name: str
    use: Use
    reason: str
    trend: float = 0.0  # the level change first -> last third, in short-term noise units
    state: bool = False  # a state or setpoint: it moves only by a switch between the values it holds
    resets: int | None = None  # a totaliser: how often it fell back (``edgewatch fit`` keeps it as its rate)
    constant: float | None = None  # left out as constant: its one value (a totaliser's rate says it its own way)


def _noise(segments: list[np.ndarray]) -> float:
    d = np.concatenate([np.diff(s) for s in segments if len(s) > 1] or [np.zeros(1)])
    return float(np.sqrt(np.mean(d * d) / 2.0))


def _level_change(segments: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """The segments joined in time order, and |mean(last third) - mean(first third)| of them."""
    x = np.concatenate(segments)
    third = max(len(x) // 3, 1)
    return x, abs(float(x[-third:].mean() - x[:third].mean()))


def spread_share(segments: list[np.ndarray]) -> float:
    """|mean(last third) - mean(first third)| / the feature's standard deviation over all the normal data."""
    x, change = _level_change(segments)
    sd = float(x.std())
    return change / sd if sd > 0 else 0.0


def trend_statistic(segments: list[np.ndarray]) -> float:
    """|mean(last third) - mean(first third)| / short-term noise, over the segments in time order."""
    _, change = _level_change(segments)
    noise = _noise(segments)
    if noise <= 0.0:
        return 0.0 if change == 0.0 else float("inf")
    return change / noise


def _is_counter(segments: list[np.ndarray]) -> bool:
    d = np.concatenate([np.diff(s) for s in segments if len(s) > 1] or [np.zeros(0)])
    if d.size < 2 or not (np.all(d > 0) or np.all(d < 0)):
        return False
    return float(np.ptp(d)) <= 1e-9 * max(abs(float(d.mean())), 1e-300)


STATE_VALUES = 10  # a state or setpoint column takes at most this many values
STATE_STILL = 0.9  # ... and is unchanged from one row to the next in at least this share of its rows
STATE_HELD = 10  # ... and holds a value for this many rows or more between most of its changes


def _is_state(segments: list[np.ndarray]) -> bool:
    """Few values, each held for stretches. A coarse reading (whole degrees) also takes few values, but where it
    crosses from one to the next its noise flickers it back and forth: most of its runs are a row or two."""
    x = np.concatenate(segments)
    d = np.concatenate([np.diff(s) for s in segments if len(s) > 1] or [np.zeros(0)])
    if d.size < 20 or float(np.mean(d == 0)) < STATE_STILL or len(np.unique(x)) > STATE_VALUES:
        return False
    runs = np.concatenate([np.diff(np.flatnonzero(np.diff(s) != 0)) for s in segments if len(s) > 1] or [[]])
    return runs.size == 0 or float(np.median(runs)) >= STATE_HELD


def _state_text(x: np.ndarray, codes: Mapping[str, float] | None = None) -> str:
    values = np.unique(x)
    held = len(x) / max(int(np.count_nonzero(np.diff(x))) + 1, 1)
    if codes is not None:
        unseen = [t for t, c in codes.items() if c not in values]
        return (f"{describe(codes)} (text in the file, each state held {held:.0f} rows on average"
                + (f"; {', '.join(unseen)} not in the rows kept" if unseen else "") + "): scored by its code; the "
                "others' level changes are judged on what it does not explain; a text the normal data never "
                "held is counted unknown_state by the agent")
    return (f"a state or setpoint (values {', '.join(f'{v:.6g}' for v in values)}, each held {held:.0f} rows on "
            "average): scored by its level; the others' level changes are judged on what it does not explain")


def _state_key(states: list[list[np.ndarray]]) -> np.ndarray | None:
    """Per row, the number of its combination of the states' values (None without states)."""
    if not states:
        return None
    return np.unique(np.stack([np.concatenate(s) for s in states], axis=1), axis=0, return_inverse=True)[1].ravel()


def _unexplained(cols: list[np.ndarray], key: np.ndarray | None) -> list[np.ndarray]:
    """``cols`` less its mean in each combination of the states' values (row by row, segments kept)."""
    if key is None:
        return cols
    x = np.concatenate(cols)
    means = np.bincount(key, weights=x) / np.bincount(key)
    return np.split(x - means[key], np.cumsum([len(c) for c in cols])[:-1])


TOTALISER_RISING = 0.5  # one that never falls rises in at least this share of its rows (a staircase: few)
TOTALISER_RESET = 0.1  # one that falls falls only to the bottom tenth of its range (a reset to zero, a rollover)


def _resets(segments: list[np.ndarray]) -> int | None:
    """How many times a column that only rises fell back (0: it never did); None when it is not such a column.

    A column that falls, only ever to the bottom of its range, may rise in few rows (a count of pieces made, a
    few a minute); one that never falls must rise in most rows to be told from a staircase (a setpoint raised
    step by step)."""
    rows = [s for s in segments if len(s) > 1]
    d = np.concatenate([np.diff(s) for s in rows] or [np.zeros(0)])
    after = np.concatenate([s[1:][np.diff(s) < 0] for s in rows] or [np.zeros(0)])
    x = np.concatenate(segments)
    span = float(np.ptp(x)) if x.size else 0.0
    rises = int(np.count_nonzero(d > 0))
    if d.size < 20 or span <= 0.0 or rises < 3 or after.size * 10 > rises:
        return None
    if not after.size:
        return 0 if rises >= TOTALISER_RISING * d.size else None
    if float(after.max()) > float(x.min()) + TOTALISER_RESET * span:
        return None  # it falls to other values than its start: a measurement
    return int(after.size)


def screen_features(features: list[str], segments: list[np.ndarray], drifting: Drifting = Drifting.RATE,
                    texts: Mapping[str, Mapping[str, float]] | None = None) -> list[FeatureChoice]:
    """One choice per feature, with its reason (see the module docstring).

    ``texts``: the codes of the features that are text state columns
    (``Run``/``Stop``): states by what they are, however often they change
    (an alarm that toggles every few rows is no drifting level), named
    with their texts.
    """
    texts = texts or {}
    out = []
    seen: dict[bytes, tuple[str, np.ndarray]] = {}
    state = [j for j in range(len(features)) if np.ptp(np.concatenate([s[:, j] for s in segments])) > 0
             and (features[j] in texts or _is_state([s[:, j] for s in segments]))]
    combo = _state_key([[s[:, j] for s in segments] for j in state])
    for j, name in enumerate(features):
        cols = [s[:, j] for s in segments]
        x = np.concatenate(cols)
        key = hashlib.sha1(x.tobytes()).digest()
        if key in seen and np.array_equal(seen[key][1], x):
            out.append(FeatureChoice(name, Use.LEFT_OUT, f"a copy of {seen[key][0]} (the same value in every row)"))
            continue
        seen[key] = (name, x)
        lo, hi = float(x.min()), float(x.max())
        if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1.0):
            coarse = ("; if it is a coarse reading that sat on one step (a whole °C, a 0.1 bar step), nothing it "
                      "does is watched: export it with more decimals, or add normal data in which it moves"
                      if lo == round(lo, 1) and lo != 0.0 else "")  # 0: a spare channel, most often
            out.append(FeatureChoice(name, Use.LEFT_OUT, f"constant ({lo:.6g}) in the normal data: no normal "
                                                         f"spread to learn{coarse}", constant=lo))
            continue
        if _is_counter(cols):
            out.append(FeatureChoice(name, Use.LEFT_OUT, "a counter (the same step every row, like a row "
                                                         "number): not a measurement"))
            continue
        noise = _noise(cols)
        rounding = float(np.max(np.abs(x - x.astype(np.float32))))
        resets = _resets(cols)
        # a totaliser is kept as its rate, differenced in float64 by fit and the agent alike: its level's rounding
        # never reaches the model (a kWh meter at 1,234,567.8 moving 0.1: its kW was left out as too fine)
        if rounding > FLOAT32_SHARE * noise and resets is None:
            out.append(FeatureChoice(name, Use.LEFT_OUT, f"too fine for the agent's 32-bit numbers: at {hi:.8g} they "
                                                         f"round by up to {rounding:.2g}, against a row-to-row noise "
                                                         f"of {noise:.2g}: a running-hours counter or a meter's "
                                                         "total? To watch it, export its rate (the power, not the "
                                                         "energy) as a column"))
            continue
        if j in state:
            out.append(FeatureChoice(name, Use.LEVEL, _state_text(x, texts.get(name)), state=True))
            continue
        if resets is not None:
            when = (f"falls back to its start {resets} time(s), a shift change or a rollover" if resets else
                    "never falls")
            out.append(FeatureChoice(name, Use.LEFT_OUT, f"a totaliser: it only rises ({when}), so its level "
                                                         "counts since the last reset, which no fault moves, and "
                                                         "its rate is torn at every reset. To watch what it totals, "
                                                         "export that rate (the flow, the power, the pieces a "
                                                         "minute) as a column", resets=resets))
            continue
        own = _unexplained(cols, combo)
        t = trend_statistic(own)
        if t > TREND_LIMIT and spread_share(own) <= SPREAD_LIMIT:  # wanders to and fro over a range it covers
            out.append(FeatureChoice(name, Use.LEVEL, f"steady in the normal data (its level wanders {t:.1f} times "
                                     "its short-term noise, over a range the normal data covers again and again)"))
            continue
        if t > TREND_LIMIT and drifting is not Drifting.KEEP:
            why = (f"drifts through the normal data: its level moved {t:.1f} times its short-term noise from the "
                   "first to the last third")
            if drifting is Drifting.RATE:
                out.append(FeatureChoice(name, Use.RATE, why + "; scored by its rate (slope over the window), "
                                                               "not its level", t))
            else:
                out.append(FeatureChoice(name, Use.LEFT_OUT, why, t))
            continue
        out.append(FeatureChoice(name, Use.LEVEL, "steady in the normal data" if t <= TREND_LIMIT else
                                 f"drifts ({t:.1f} x its noise) but kept by --drifting keep", t))
    return out


@dataclass
class Mode:
    share: float
    first_row: int  # of the windows in the group, in the normal data's row numbering
    last_row: int
    centre: dict[str, float] = field(default_factory=dict)  # feature -> mean raw value


@dataclass
class ModeFinding:
    separation: float  # pooled standard deviations between the two closest groups
    modes: list[Mode]
    features: list[str]  # the features that differ most, first

    def describe(self, states: Mapping[str, Mapping[str, float]] | None = None) -> str:
        """The report's warning; ``states``: the text state columns' codes, so that a point says ``Unoccupied``.

        Each point is named by its share of the windows and the first and last rows it is seen in: a point the
        machine comes back to (a stop, the night) is seen through the whole file, and ``rows 0-20159`` read as
        one stretch of rows in it."""
        count = {2: "two", 3: "three", 4: "four"}.get(len(self.modes), str(len(self.modes)))
        states = states or {}
        groups = "; ".join(f"{md.share:.0%} of the windows, seen from row {md.first_row} to row {md.last_row}: "
                           + ", ".join(f"{f} {level_shown(md.centre[f], states.get(f))}" for f in self.features[:3])
                           for md in self.modes)
        return (f"the normal data holds {count} distinct operating points, at least {self.separation:.0f} standard "
                f"deviations apart: {groups}. The model calls each of them normal and cannot tell a switch between "
                "them from a fault; a point not among them is flagged. If one of them is a fault, remove those rows; "
                "keep stops and start-ups that are part of normal operation (without them every stop is an alert); "
                "if the machine runs at other points too, add data from them.")


MAX_MODES = 4


def operating_modes(features: list[str], segments: list[np.ndarray], window: int) -> ModeFinding | None:
    """Two to ``MAX_MODES`` groups of window means far apart (see the module docstring), or None.

    The most groups whose every pair is more than ``MODE_SEPARATION`` pooled
    standard deviations apart, each holding ``MODE_MIN_SHARE`` of the windows.
    More groups than there are splits a group, or a steady trend, into parts
    about 3.5 apart, under the limit; fewer merges two points and pools their
    spread (three speeds were one point and the rest, 4 apart: no warning).
    """
    for finding in _groupings(features, segments, window):
        if finding.separation >= MODE_SEPARATION:
            return finding
    return None


def phases(features: list[str], segments: list[np.ndarray], window: int) -> ModeFinding | None:
    """The grouping of window means (2 to ``MAX_MODES`` groups, each ``MODE_MIN_SHARE`` of the windows) whose
    closest two groups lie furthest apart, however close; None when no grouping keeps every group.

    For a cycle that moves through its phases without a gap (a batch's fill,
    heat, hold and drain: its ramps join the points, which lie 5.2-5.4 pooled
    deviations apart, under ``MODE_SEPARATION``), when the one model of all of
    it is blind inside each phase; ``edgewatch fit`` keeps a model per phase
    only when the held-out data says it is no worse (fit/pipeline.py)."""
    found = list(_groupings(features, segments, window))
    return max(found, key=lambda f: f.separation) if found else None


def _groupings(features: list[str], segments: list[np.ndarray], window: int):  # noqa: ANN202 - Iterator[ModeFinding]
    """For k = ``MAX_MODES`` down to 2, k-means' groups of the window means, each with ``MODE_MIN_SHARE`` of them."""
    parts, rows = [], []
    at = 0
    for s in segments:
        if len(s) >= window:
            parts.append(sliding_window_view(s, window, axis=0).mean(axis=-1))
            rows.append(at + np.arange(len(s) - window + 1))
        at += len(s)
    if not parts:
        return
    m = np.concatenate(parts)
    row = np.concatenate(rows)
    if len(m) < 20:
        return
    sd = m.std(axis=0)
    z = (m - m.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    for k in range(MAX_MODES, 1, -1):
        label = _k_means(z, k)
        if label is None:
            continue
        groups = [label == g for g in range(k)]
        if min(g.mean() for g in groups) < MODE_MIN_SHARE:
            continue
        pairs = [(_separation(z, groups[i], groups[j]), i, j) for i in range(k) for j in range(i + 1, k)]
        closest = min(pairs)
        centres = np.stack([z[g].mean(axis=0) for g in groups])
        order = np.argsort(-np.ptp(centres, axis=0))
        modes = [Mode(float(g.mean()), int(row[g].min()), int(row[g].max() + window - 1),
                      {f: float(m[g, j].mean()) for j, f in enumerate(features)}) for g in groups]
        modes.sort(key=lambda md: md.first_row)
        yield ModeFinding(closest[0], modes, [features[j] for j in order])


MODE_SAMPLE = 20_000  # windows k-means runs on (every n-th; overlapping windows repeat each other)


def _k_means(z: np.ndarray, k: int, rounds: int = 30) -> np.ndarray | None:
    """Lloyd's k-means started from ``k`` equal slices of the first principal component (deterministic, and a
    short excursion of a few windows does not seed a group of its own); None when a group empties. Fitted on
    at most ``MODE_SAMPLE`` evenly spaced windows, then every window goes to its nearest centre."""
    sample = z[::max(len(z) // MODE_SAMPLE, 1)]
    _, _, vt = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    pc = sample @ vt[0]
    label = np.searchsorted(np.quantile(pc, np.arange(1, k) / k), pc)
    for _ in range(rounds):
        if np.bincount(label, minlength=k).min() == 0:
            return None
        c = np.stack([sample[label == g].mean(axis=0) for g in range(k)])
        new = _nearest(sample, c)
        if (new == label).all():
            break
        label = new
    label = _nearest(z, c)
    return None if np.bincount(label, minlength=k).min() == 0 else label


def _nearest(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmin((centres * centres).sum(axis=1)[None] - 2.0 * z @ centres.T, axis=1)


def _separation(z: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """The two groups' distance along the line joining their centres, in their pooled standard deviation."""
    ca, cb = z[a].mean(axis=0), z[b].mean(axis=0)
    u = (ca - cb) / max(float(np.linalg.norm(ca - cb)), 1e-300)
    pa, pb = z[a] @ u, z[b] @ u
    pooled = np.sqrt((pa.var() * len(pa) + pb.var() * len(pb)) / (len(pa) + len(pb)))
    return float(abs(pa.mean() - pb.mean()) / max(pooled, 1e-300))
