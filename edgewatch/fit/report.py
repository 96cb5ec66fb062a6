"""The plain report of a fit: what was read, what the model uses and why, what it expects and cannot see.

Written for the person who will be woken by its alerts, not for the one
who wrote it: every left-out feature has its reason, the false-alarm
estimate says on how much data it rests, and the blind spots are listed
in the units of the data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgewatch.fit.choosing import HoldoutResult, Recipe, duration_text
from edgewatch.fit.normal_data import EVENT, ReadNotes
from edgewatch.fit.screening import FeatureChoice, ModeFinding, Use
from edgewatch.wire.csv_states import level_shown


@dataclass
class FeatureRange:
    name: str
    use: Use
    p01: float
    p99: float
    low: float
    high: float
    smallest_change: float  # a sustained change of this feature alone that crosses the threshold (raw units)
    std: float
    noise: float = 0.0  # short-term (row-to-row) noise, sqrt(mean(diff^2) / 2)


@dataclass
class PointRanges:
    """One operating point of a per-point model: where it lies, and the smallest change it sees there."""

    levels: dict[str, float]  # the point's centre (raw units), in the features the assignment reads
    ranges: list[FeatureRange]  # smallest_change: this point's own

    def name(self, number: int, states: Mapping[str, Mapping[str, float]] | None = None) -> str:
        """``point 2 (AHU1 Occupancy Unoccupied, ...)``: a text state column by its text (``level_shown``)."""
        states = states or {}
        return f"point {number} (" + ", ".join(f"{f} {level_shown(v, states.get(f))}"
                                               for f, v in list(self.levels.items())[:4]) + ")"


@dataclass
class FitReport:
    out: str
    family: str
    rows: int
    seconds_of_data: float | None
    step: float | None
    notes: ReadNotes
    choices: list[FeatureChoice]
    recipe: Recipe
    threshold: float
    components: int
    holdout: HoldoutResult
    ranges: list[FeatureRange]
    modes: ModeFinding | None = None
    points: list[PointRanges] = field(default_factory=list)  # a pca per operating point: what each sees
    warnings: list[str] = field(default_factory=list)
    family_note: str = ""
    signed_by: str = ""
    bytes: int = 0
    elapsed: float = 0.0

    def lines(self) -> list[str]:
        out = [f"read      {line}" for line in read_lines(self.notes.layouts)]
        out += [f"          {line}" for line in _reading_notes(self.notes)]
        span = f" ({duration_text(self.seconds_of_data)} at one row every {self.step:.3g} s)" if self.step else ""
        out.append(f"normal    {self.rows:,} rows{span}")
        out.append("features")
        constant = [c.name for c in self.choices if c.use is Use.LEFT_OUT and c.reason.startswith("constant (")]
        many = len(constant) > MANY_CONSTANT
        shown = [c for c in self.choices if not (many and c.name in constant)]
        groups = _verdict_groups(shown) if len(self.choices) > WIDE_REPORT else {}
        for c in shown:
            group = groups.get((c.use, _verdict(c)), [])
            use = "state" if c.name in self.notes.states and c.use is Use.LEVEL else c.use.value  # a text state
            if len(group) <= GROUP_MIN:
                out.append(f"  {use:9s} {c.name:24s} {c.reason}")
            elif group[0] is c:  # a wide export: one line per verdict, where its first feature stood
                rate = _RATE if c.use is Use.RATE else ""
                out.append(f"  {use:9s} {len(group)} features, each {_verdict(c)}{rate}: "
                           f"{_some([g.name for g in group], GROUP_SHOWN, self._listed())}")
        if many:  # a wide export of spare channels: one line, not hundreds
            out.append(f"  {'left out':9s} {len(constant)} constant columns (one value each in the normal data: no "
                       f"normal spread to learn): {_some(constant)}")
        for name, example in self.notes.text_columns.items():
            out.append(f"  {'left out':9s} {name:24s} text, not a number (e.g. {example!r})")
        for name, share in self.notes.mostly_empty.items():
            out.append(f"  {'left out':9s} {name:24s} {share:.0%} of its cells are blank")
        for name in self.notes.ignored:
            out.append(f"  {'left out':9s} {name:24s} --ignore")
        events = [name for name, what in self.notes.housekeeping.items() if what == EVENT]
        for name, what in self.notes.housekeeping.items():
            if what != EVENT:
                out.append(f"  {'left out':9s} {name:24s} the logger's own {what} (a TOA5 table's standard column), "
                           f"not the equipment; --columns chooses it with the others")
        if events:
            out.append(f"  {'left out':9s} {len(events)} HOBOware event columns ('Logged' where the logger saw it "
                       f"happen), not measurements: {', '.join(events)}")
        for name in self.notes.label_columns:
            out.append(f"  {'label':9s} {name:24s} not a feature" + (
                f"; its {self.notes.labelled_rows:,} rows marked anomalous were left out of the normal data"
                if self.notes.labelled_rows else ""))
        r = self.recipe
        parts = f"; {self.components} principal component(s)" if self.components else ""
        out.append(f"model     {self.family}{self.family_note}; {r.why['window']}{parts}")
        out.append(f"          threshold {self.threshold:.4g}: {r.why['threshold']}")
        out.append(f"          {r.why['debounce']}")
        if "points" in r.why:
            out.append(f"          {r.why['points']}")
        out.append(f"expected  {self.holdout.describe()}")
        if self.ranges:
            out.append("range     the operating range learnt (1st..99th percentile; min..max):")
        wide = len(self.ranges) > WIDE_REPORT
        for fr in self.ranges[:GROUP_SHOWN] if wide else self.ranges:
            out.append(f"  {fr.name:24s} {fr.p01:.4g} .. {fr.p99:.4g}   ({fr.low:.4g} .. {fr.high:.4g})"
                       + ("   (scored by its rate)" if fr.use is Use.RATE else ""))
        if wide:
            out.append(f"  ... and {len(self.ranges) - GROUP_SHOWN} more{self._listed()}")
        out.append("cannot see")
        out += [f"  - {line}" for line in self.blind_spots()]
        for w in self.warnings:
            out.append(f"WARNING   {w}")
        sign = f", signed by {self.signed_by}" if self.signed_by else ""
        out.append(f"wrote     {self.out} ({self.bytes:,} bytes{sign}) in {self.elapsed:.1f} s")
        return out

    def _listed(self) -> str:
        return f"; all listed by `edgewatch agent check {Path(self.out).name}`"

    def _cut(self, items: list) -> tuple[int, str]:
        """How many of a list to name in the report: all of an ordinary file's, the first few of a wide export's."""
        return (GROUP_SHOWN, self._listed()) if len(self.ranges) > WIDE_REPORT else (len(items), "")

    def blind_spots(self) -> list[str]:
        out = []
        left = [c.name for c in self.choices if c.use is Use.LEFT_OUT] + list(self.notes.text_columns) + \
            list(self.notes.mostly_empty) + list(self.notes.ignored) + \
            [name for name, what in self.notes.housekeeping.items() if what != EVENT]
        if left:
            out.append(f"anything in {_some(left) if len(left) > MANY_CONSTANT else ', '.join(left)} (left out)")
        for where, ranges in ([("", self.ranges)] if not self.points else
                              [(f"in {pt.name(i + 1, self.notes.states)}, ", pt.ranges)
                               for i, pt in enumerate(self.points)]):
            # a text state changes only by a switch to another of its texts (a new text is unknown_state): a
            # "sustained change smaller than 8.44e-07" of Run/Stop is none it can make
            levels = [fr for fr in ranges if fr.use is Use.LEVEL and np.isfinite(fr.smallest_change)
                      and fr.name not in self.notes.states]
            if levels:
                parts = _some([f"{fr.name} {fr.smallest_change:.3g} ({fr.smallest_change / fr.std:.2g} std)"
                               if fr.std > 0 else f"{fr.name} {fr.smallest_change:.3g}" for fr in levels],
                              *self._cut(levels))
                out.append(f"{where}a sustained change of one feature alone smaller than: {parts}; a one-row spike "
                           f"must be about {self.recipe.window} times larger (it is averaged over the window)")
        rates = [fr for fr in self.ranges if fr.use is Use.RATE and np.isfinite(fr.smallest_change)]
        if rates:
            unit = "per second" if self.step else "per row"
            per = 1.0 / self.step if self.step else 1.0
            parts = _some([f"{fr.name} {fr.smallest_change * per:.3g} {unit}" for fr in rates], *self._cut(rates))
            out.append(f"the level of {_some([fr.name for fr in rates], *self._cut(rates))}: only how fast it "
                       f"changes (a change of pace smaller than {parts} is not seen)")
        if self.seconds_of_data:
            out.append(f"changes slower than the {duration_text(self.seconds_of_data)} of normal data, and operating points "
                       "that are not in it (they will be flagged, or trip the agent's range check)")
        else:
            out.append("changes slower than the normal data's span, and operating points that are not in it")
        out.append("a change in the shape of a signal that keeps each feature's window mean (a vibration "
                   "spectrum at equal RMS)")
        if self.points:
            out.append("a switch to another of the operating points at the wrong time: each point is normal, "
                       "whenever it comes")
        if len(self.ranges) > 1:
            out.append("a sensor frozen at a normal value (stuck, or its gateway repeating the last reading): its "
                       "window mean stays normal, so only its broken link with the others shows, when they move "
                       "by more than their noise")
        else:
            out.append("a sensor frozen at a normal value (stuck, or its gateway repeating the last reading)")
        return out

    def wide_warning(self) -> str | None:
        """The one model's :func:`wide_states_warning`; with a model per point, each point's own, naming the points
        inside which it still holds (a batch's fill and drain ramps: the level moves through its whole range)."""
        if not self.points:
            return wide_states_warning(self.ranges, self.notes.states)
        blind = [(i, wide_features(pt.ranges)) for i, pt in enumerate(self.points)]
        blind = [(i, w) for i, w in blind if w]
        if not blind:
            return None
        parts = "; ".join(f"{self.points[i].name(i + 1, self.notes.states)}: {_shown(w, self.notes.states)}"
                          for i, w in blind)
        return (f"with a model per operating point, a feature's change is still seen only when it is about as large "
                f"as its whole normal range inside {parts}. Such a point spans a ramp or several states, and a fault "
                "inside it that stays within that range is not seen; inside the other points the model sees the "
                "smaller changes listed under 'cannot see'")


def read_lines(layouts: list[tuple[str, int, str]]) -> list[str]:
    """One line per file, or per run of files read alike (a logger's file per day, a kiln's per firing):
    29 daily files made 29 lines of the same words before the report's first verdict."""
    runs: list[list[tuple[str, int, str]]] = []
    for item in layouts:
        if runs and runs[-1][-1][2] == item[2]:
            runs[-1].append(item)
        else:
            runs.append([item])
    out = []
    for run in runs:
        if len(run) == 1:
            out.append(f"{run[0][0]}: {run[0][1]:,} rows; {run[0][2]}")
            continue
        each = [r for _, r, _ in run]
        spread = f"{each[0]:,} each" if min(each) == max(each) else f"{min(each):,} to {max(each):,} a file"
        out.append(f"{len(run)} files, {run[0][0]} .. {run[-1][0]}: {sum(each):,} rows ({spread}); {run[0][2]}")
    return out


def _reading_notes(n: ReadNotes) -> list[str]:
    out = []
    if n.filled:
        out.append("filled " + ", ".join(f"{v:,} {k}" for k, v in n.filled.items()) + " blank cell(s) from the "
                   "last value")
    for name, bridge in n.on_change.items():
        out.append(f"{name}: rows written on change (no column has a value in 90 % of them: a deadband or "
                   f"report-by-exception export): a blank holds the last value, and a silence is a gap only past "
                   f"{duration_text(bridge)} (10 of the slowest column's own steps)")
    for name, (step, share) in n.slow.items():
        out.append(f"{name} is logged every {duration_text(step)} (blank in {share:.0%} of the rows): each row holds its last "
                   f"value, as the agent does between its messages")
    for name, marks in n.beyond.items():
        said = ", ".join(f"{count:,} '{text}'" for text, count in sorted(marks.items(), key=lambda m: -m[1]))
        share = sum(marks.values()) / max(n.rows_read, 1)
        out.append(f"{name}: {said} ({share:.1%} of the rows): the instrument's mark for a value beyond its range "
                   f"(the sensor saturates in the normal data), a blank held from the last value, as the agent holds "
                   f"it; what lies beyond the range is not seen")
    if n.bad_cells:
        out.append("text in numeric columns, read as blank: " + ", ".join(f"{k} {v:,}" for k, v in n.bad_cells.items()))
    if n.dropped_rows:
        out.append(f"dropped {n.dropped_rows:,} row(s) with a blank no earlier value could fill")
    if n.bad_times:
        out.append(f"dropped {n.bad_times:,} row(s) whose time could not be read")
    out += n.long_exports
    if n.clock_changes:
        out.append(f"the clocks went back an hour {n.clock_changes} time(s) (daylight saving; the times have no zone): "
                   f"the times run on through it instead of repeating that hour; the hour from {_wall_clock(n.fall_backs)} "
                   "comes twice (a clock change to winter time? the export is in local time): its rows are kept in "
                   "file order, none dropped")
    if n.spring_forwards:
        out.append(f"the hour from {_wall_clock(n.spring_forwards)} is missing (a clock change to summer time? the "
                   "export is in local time): not a gap, the rows on each side are one stretch")
    if n.repeated_times:
        first = datetime.fromtimestamp(n.first_repeated or 0.0, timezone.utc)
        out.append(f"{n.repeated_times:,} row(s) have the same time as the row before (the first at "
                   f"{first:%Y-%m-%d %H:%M:%S}): kept in file order, none dropped")
    if n.reversed_order:
        out.append("the rows were newest first: turned around")
    if n.out_of_order:
        out.append(f"{n.out_of_order:,} row(s) out of time order: sorted by time")
    if n.gaps:
        out.append(f"{n.gaps} gap(s) in time: windows do not span them" + _longest_gap(n))
    if n.ragged:
        where = "" if len(n.files) < 2 else " (" + ", ".join(f"{name}: {count:,}" for name, count in
                                                             list(n.ragged_files.items())[:3]) + (
            f" and {len(n.ragged_files) - 3} more file(s)" if len(n.ragged_files) > 3 else "") + ")"
        out.append(f"skipped {n.ragged:,} line(s) with another number of fields than the header, or cut off at "
                   f"the file's end{where}")
    return out


def _wall_clock(times: list[float]) -> str:
    """Times as the file wrote them (naive wall-clock times are read as UTC), a few of them."""
    shown = [f"{datetime.fromtimestamp(t, timezone.utc):%Y-%m-%d %H:%M}" for t in times[:3]]
    return ", ".join(shown) + (f" and {len(times) - 3} more" if len(times) > 3 else "")


def _longest_gap(n: ReadNotes) -> str:
    if n.longest_gap is None:
        return ""
    at, length = n.longest_gap
    start = datetime.fromtimestamp(at, timezone.utc)
    end = datetime.fromtimestamp(at + length, timezone.utc)
    return (f"; the longest {duration_text(length)}, from {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} "
            "(UTC, or the file's own clock when its times have no zone; a shutdown is fine: the model learns the "
            "rows on each side)")


def feature_ranges(values: np.ndarray, choices: list[FeatureChoice], features: list[str], scale: np.ndarray,
                   basis: np.ndarray, threshold: float) -> list[FeatureRange]:
    """Per model feature: its learnt range and the smallest sustained change alone that crosses the threshold.

    The score of a window whose feature ``f`` alone moved by ``d`` (raw
    units, every row) is ``(d * scale_f)^2 * ||basis_f||^2`` more than a
    centred window's, so ``d = sqrt(threshold) / (scale_f * ||basis_f||)``;
    for a rate feature the same holds for its slope per row.
    """
    use = {c.name: c.use for c in choices}
    out = []
    for j, name in enumerate(features):
        x = values[:, j]
        norm = float(np.linalg.norm(basis[j])) * float(scale[j])
        change = float(np.sqrt(threshold) / norm) if norm > 0 else float("nan")  # nan: not a pca basis
        p01, p99 = np.quantile(x, [0.01, 0.99])
        d = np.diff(x)
        out.append(FeatureRange(name, use[name], float(p01), float(p99), float(x.min()), float(x.max()), change,
                                float(x.std()), float(np.sqrt(np.mean(d * d) / 2.0)) if d.size else 0.0))
    return out


WIDE_NOISE = 10.0  # the smallest change seen, in short-term noise units, above which ...
WIDE_RANGE = 0.5  # ... and in shares of the feature's 1st..99th percentile range: the model sees only the extremes


def wide_states_warning(ranges: list[FeatureRange], states: Mapping[str, object] | None = None) -> str | None:
    """A warning when most level features are seen only once they change by half their normal range or more,
    and by many times their noise: the normal data moves between states far apart (a batch's fill, heat, hold
    and drain), one model of all of them spans them all, and a fault inside one state goes unseen (walk-through:
    a batch tank's level falling 8 % in the hold, where the model needed 71 %). On short steady data the
    smallest change is a few noise units, and no warning comes."""
    wide = wide_features(ranges)
    if not wide:
        return None
    return ("the model sees a feature's change only when it is about as large as its whole normal range ("
            f"{_shown(wide, states)}): the normal data moves between states far apart (a batch cycle's phases, runs and "
            "stops), and a fault inside one state that stays within that range is not seen. This model catches what leaves "
            "the normal states altogether; for what matters inside one phase, watch that phase's own data (a model "
            "fitted on its rows alone flags the other phases)")


def conv1d_advice(torch: bool, rows: int, min_rows: int, longer: str = "") -> str:
    """What else to try when the pca kept is blind inside the states: the conv1d-ae, which ``fit`` tries only with
    torch and ``min_rows`` rows, and, where pca raises no false episode held out, a held-out part long enough to
    tell the two apart (``longer``: how much normal data that takes, and how much there is; "" when enough). Why
    say it: on an air handler's runs and stops (docs/fit.md, seventh walk-through) the one pca missed a cooling-coil
    fault that the conv1d-ae, one model of every point, caught 154 min on."""
    if torch and rows >= min_rows:
        return ""  # tried or not trained: the line under 'model' says why
    need = [] if torch else ["torch installed (the edgewatch[train] extra)"]
    need += [] if rows >= min_rows else [f"{min_rows:,} rows or more (here {rows:,})"]
    need += [longer] if longer else []
    return (f". With {' and '.join(need)}, `fit` also tries a conv1d-ae, one model of every state that can see a "
            "change inside one, and keeps it when it does better on the held-out part")


def wide_features(ranges: list[FeatureRange]) -> list[FeatureRange]:
    """The level features seen only at half their normal range and ten times their noise, when they are most of
    the level features (else none): the condition of :func:`wide_states_warning`."""
    levels = [fr for fr in ranges if fr.use is Use.LEVEL and np.isfinite(fr.smallest_change) and fr.p99 > fr.p01]
    wide = [fr for fr in levels if fr.smallest_change >= WIDE_NOISE * fr.noise
            and fr.smallest_change >= WIDE_RANGE * (fr.p99 - fr.p01)]
    return wide if levels and len(wide) * 2 > len(levels) else []


def _shown(wide: list[FeatureRange], states: Mapping[str, object] | None = None) -> str:
    """The first few blind features as examples, text state columns left out where others remain: a state changes
    only by a switch to another of its texts, so "Supply Fan Status 1.24 of its 0..1" read as nonsense."""
    named = [fr for fr in wide if fr.name not in (states or {})] or wide
    return ", ".join(f"{fr.name} {fr.smallest_change:.3g} of its {fr.p01:.4g}..{fr.p99:.4g}" for fr in named[:4])


MANY_CONSTANT = 10  # more constant columns than this are listed on one line


WIDE_REPORT = 20  # with more features than this (a historian export of hundreds of tags) the report groups them:
GROUP_MIN = 3  # features sharing one verdict, more than this many, take one line
GROUP_SHOWN = 5  # naming the first few
_RATE = "; scored by its rate (slope over the window), not its level"


def _verdict(c: FeatureChoice) -> str:
    """The choice's reason without its own figures: 'steady in the normal data' for every steady feature, whatever
    its level wandered; the features sharing it share one line of a wide report."""
    return re.split(r" \(|: |; ", c.reason, maxsplit=1)[0]


def _verdict_groups(choices: list[FeatureChoice]) -> dict[tuple[Use, str], list[FeatureChoice]]:
    groups: dict[tuple[Use, str], list[FeatureChoice]] = {}
    for c in choices:
        groups.setdefault((c.use, _verdict(c)), []).append(c)
    return groups


def _some(names: list[str], shown: int = 8, where: str = "") -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more{where})" if len(names) > shown else "")
