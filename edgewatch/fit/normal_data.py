"""From the files a user calls "normal operation" to clean segments of numbers, saying what was done.

Reading is :mod:`edgewatch.wire.csv_table`'s (separator, decimal mark and
time column sniffed). Here the files become one table of features:

* features are the numeric columns every file has (``columns`` chooses
  them, ``ignore`` drops some), and its text state columns (2 to 10
  distinct texts, ``Run``/``Stop``: :mod:`edgewatch.fit.states`) coded as
  numbers; other text columns and labels are never features, and a column
  left blank by more than 90 % of the rows is left out, a row counting as
  holding a value when the column's last value is at most ``HOLD_STEPS`` of
  the column's *own* typical steps old: a bearing temperature logged once
  a minute beside a vibration logged every second is blank in 98 % of the
  cells but holds a value in every row, and is kept; a tag that wrote in
  the first hour of a day and then stopped is left out;
* rows a label column marks anomalous (``anomaly`` = 1) are not normal
  operation and are dropped;
* a blank or NaN cell is filled from the last value of its column
  (``Fill.LAST``, the default: sensors logged at different rates leave
  blanks) or its row is dropped (``Fill.DROP``); rows before a column's
  first value are dropped either way;
* rows (and files) are put in time order, and the data is cut into
  segments at every file boundary and every gap in time longer than ``GAP_STEPS`` typical
  steps, so that no window of the model spans two stretches that were not
  one.

Every count is kept in :class:`ReadNotes` for the report.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewatch.contract.card import HOLD_STEPS  # a value is recent for this many of its column's own steps
from edgewatch.errors import BadInput
from edgewatch.fit.states import code_state_columns
from edgewatch.wire.csv_long import long_format, read_long
from edgewatch.wire.csv_table import CsvTable, fill_forward, read_csv_table, sniff_layout

GAP_STEPS = 10  # a time gap longer than this many typical steps cuts the data
FOLDER_FILES = (".csv", ".csv.gz", ".tsv")  # a folder's files that are read (a day's export rotated into gzip)
MOSTLY_EMPTY = 0.9  # a column with more rows holding no recent value than this share is left out
# a feature logged at least this many times the rows' step is logged more slowly than the rows (the card then says
# each feature's step): halfway between every row (1, up to a jittered clock) and every other row (2)
SLOWER_THAN_ROWS = 1.5
ON_CHANGE_SHARE = 0.9  # rows written on change: no column holds a value in this share of them (a clock: one does in all)


class Fill(str, enum.Enum):
    LAST = "last"  # a missing cell takes the last value of its column
    DROP = "drop"  # a row with a missing cell is dropped


@dataclass
class ReadNotes:
    """What reading did, in counts, for the report."""

    files: list[str] = field(default_factory=list)
    layouts: list[tuple[str, int, str]] = field(default_factory=list)  # per file (name, rows, how it was read)
    rows_read: int = 0
    text_columns: dict[str, str] = field(default_factory=dict)  # name -> example cell
    states: dict[str, dict[str, int]] = field(default_factory=dict)  # text state column -> {text: code}
    label_columns: list[str] = field(default_factory=list)
    labelled_rows: int = 0  # rows a label marks anomalous, dropped
    mostly_empty: dict[str, float] = field(default_factory=dict)  # name -> share missing, left out
    slow: dict[str, tuple[float, float]] = field(default_factory=dict)  # kept, logged slowly: name -> (its step, blank share)
    steps: dict[str, float] = field(default_factory=dict)  # feature -> its own median step (s); empty without times
    ignored: list[str] = field(default_factory=list)  # by the user
    filled: dict[str, int] = field(default_factory=dict)  # feature -> cells filled from the last value
    bad_cells: dict[str, int] = field(default_factory=dict)  # feature -> text cells in a numeric column
    housekeeping: dict[str, str] = field(default_factory=dict)  # the logger's own column -> what it measures
    beyond: dict[str, dict[str, int]] = field(default_factory=dict)  # feature -> its out-of-range marks (+Over) by text
    dropped_rows: int = 0  # rows with a missing cell that could not be filled, or dropped by Fill.DROP
    bad_times: int = 0  # rows whose time could not be read, dropped
    clock_changes: int = 0  # daylight-saving fall-backs the times were run on through
    fall_backs: list[float] = field(default_factory=list)  # wall-clock start of each repeated hour (epoch s)
    spring_forwards: list[float] = field(default_factory=list)  # wall-clock start of each skipped hour (epoch s)
    repeated_times: int = 0  # rows with the time of the row before (kept, in file order)
    first_repeated: float | None = None  # the first such time (epoch s)
    on_change: dict[str, float] = field(default_factory=dict)  # file written on change -> the silence it bridges (s)
    long_exports: list[str] = field(default_factory=list)  # files read as one row per tag and time, pivoted
    out_of_order: int = 0  # rows that were not in time order (the data was sorted)
    totalisers: dict[str, dict] = field(default_factory=dict)  # feature kept as its rate -> the card's entry (fit)
    reversed_order: bool = False  # the export was newest first
    gaps: int = 0
    longest_gap: tuple[float, float] | None = None  # (epoch s of its last row before, its length in s)
    ragged: int = 0  # lines with a different number of fields, skipped
    ragged_files: dict[str, int] = field(default_factory=dict)  # file name -> its such lines


@dataclass
class NormalData:
    """Clean normal operation: segments of ``[rows, F]`` float64 in time order, with their times."""

    features: list[str]
    segments: list[np.ndarray]
    times: list[np.ndarray] | None  # epoch seconds per segment, or None when the files have no time
    notes: ReadNotes

    @property
    def rows(self) -> int:
        return sum(len(s) for s in self.segments)

    @property
    def step(self) -> float | None:
        """The typical time between rows (median), in seconds; None without times."""
        if not self.times:
            return None
        steps = np.concatenate([np.diff(t) for t in self.times if len(t) > 1] or [np.zeros(0)])
        steps = steps[steps > 0]
        return float(np.median(steps)) if steps.size else None

    @property
    def seconds(self) -> float | None:
        """The time the rows stand for: each segment's span and one step (rows written on change are
        irregular, so their count times the median step would undercount the hours they cover)."""
        step = self.step
        if step is None or not self.times:
            return None
        return float(sum(max(len(s) * step, float(t[-1] - t[0]) + step) if len(t) else len(s) * step
                         for s, t in zip(self.segments, self.times)))

    def logged_every(self, features: Sequence[str]) -> dict[str, float] | None:
        """Each of ``features``' own step (s) for the card's ``logged_every``, when one is logged more slowly than
        the rows (``SLOWER_THAN_ROWS`` of their step); else None, and the card is written as before.

        Why: ``fit`` filled a slow tag's blanks from its last value, so the model knows it held for its own step;
        the live agent holds its first value that long (not three of the rows' steps) and names it as slow only
        well beyond it. Why not always: a file whose every tag is in every row gains nothing by it (the agent
        falls back on the rows' interval), and its model file stays byte for byte what it was."""
        rows, steps = self.step, self.notes.steps
        if rows is None or not all(f in steps for f in features):
            return None
        if not any(steps[f] >= SLOWER_THAN_ROWS * rows for f in features):
            return None
        return {f: float(f"{steps[f]:.6g}") for f in features}

    def values(self) -> np.ndarray:
        return np.concatenate(self.segments)

    def select(self, features: Sequence[str]) -> NormalData:
        idx = [self.features.index(f) for f in features]
        return NormalData(list(features), [s[:, idx] for s in self.segments], self.times, self.notes)

    def split(self, holdout: float) -> tuple[NormalData, NormalData]:
        """(first part, last ``holdout`` share of the rows), in time order; a segment may be cut in two."""
        cut = int(round(self.rows * (1.0 - holdout)))
        head: list[np.ndarray] = []
        tail: list[np.ndarray] = []
        head_t: list[np.ndarray] = []
        tail_t: list[np.ndarray] = []
        at = 0
        for i, seg in enumerate(self.segments):
            t = self.times[i] if self.times else None
            a = min(max(cut - at, 0), len(seg))
            if a:
                head.append(seg[:a])
                head_t.append(t[:a] if t is not None else None)
            if a < len(seg):
                tail.append(seg[a:])
                tail_t.append(t[a:] if t is not None else None)
            at += len(seg)
        times = self.times is not None
        return (NormalData(self.features, head, head_t if times else None, self.notes),
                NormalData(self.features, tail, tail_t if times else None, self.notes))


def csv_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The CSV files named, a folder standing for its ``*.csv``, ``*.csv.gz`` and ``*.tsv`` files in name order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.name.lower().endswith(FOLDER_FILES) and q.is_file())
            if not found:
                raise BadInput(f"folder {p} holds no .csv, .csv.gz or .tsv file")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise BadInput(f"{p} does not exist")
    if not out:
        raise BadInput("no data given: name one or more CSV files or a folder of them")
    return out


def read_normal_data(paths: Sequence[str | os.PathLike[str]], *, time_column: str | None = None,
                     columns: Sequence[str] | None = None, ignore: Sequence[str] = (), fill: Fill = Fill.LAST,
                     rows: int | None = None, progress: Callable[[str, int], None] | None = None,
                     decimal: str | None = None) -> NormalData:
    """Read, choose the features, fill or drop gaps, order by time and cut at gaps; see the module docstring.

    ``rows``: only the first rows of each file (SKAB's protocol: the first
    400 rows of an experiment are its normal part). ``decimal``: the
    files' decimal mark when their numbers cannot tell (``fit --decimal``);
    None: found from each file.

    Fails with :class:`BadInput` when a named column is missing or not
    numeric, when the files do not share their feature columns, or when no
    row or no feature is left (the message says which and why).
    """
    notes = ReadNotes()
    tables: list[CsvTable] = []
    for path in csv_files(paths):
        layout = sniff_layout(path, time_column, decimal=decimal)
        table = read_csv_table(path, layout, max_rows=rows,
                               progress=(lambda n, p=path: progress(str(p), n)) if progress else None)
        long = long_format(table)
        if long is not None:
            table = read_long(layout, long)
            notes.long_exports.append(f"{path.name}: a long export (one row per tag and time): one column per "
                                      f"'{long.tag_column}' ({len(long.tags)}), values from '{long.value_column}', "
                                      f"one row per time ({table.rows:,})" + _grid_note(table))
        tables.append(table)
        notes.files.append(str(path))
        notes.layouts.append((path.name, table.rows, layout.describe()))
        notes.rows_read += table.rows
        notes.ragged += table.ragged
        if table.ragged:
            notes.ragged_files[path.name] = notes.ragged_files.get(path.name, 0) + table.ragged
        notes.bad_times += table.bad_times
        notes.clock_changes += table.clock_changes
        notes.fall_backs += table.fall_backs
        notes.spring_forwards += [wall for _, wall in table.spring_forwards]
        if table.times is not None and table.bad_times == table.rows:
            raise BadInput(_unreadable_times(table))
        notes.text_columns.update(table.text_columns)
        for name in table.labels:
            if name not in notes.label_columns:
                notes.label_columns.append(name)
    notes.states = code_state_columns(tables)
    for name in notes.states:
        notes.text_columns.pop(name, None)
    features = _choose_features(tables, columns, ignore, notes)
    notes.states = {name: codes for name, codes in notes.states.items() if name in features}
    has_times = all(t.times is not None for t in tables)
    if has_times:
        notes.steps = {f: step for f in features if (step := _own_step(tables, f)) > 0}
    segments: list[np.ndarray] = []
    seg_times: list[np.ndarray] = []
    seg_file: list[int] = []
    for file_index, table in enumerate(tables):
        x = np.stack([table.numeric[f] for f in features], axis=1)
        for name, count in table.bad.items():
            if name in features:
                notes.bad_cells[name] = notes.bad_cells.get(name, 0) + count
        for name, marks in table.beyond.items():
            if name in features:
                for text, count in marks.items():
                    notes.beyond.setdefault(name, {})[text] = notes.beyond.get(name, {}).get(text, 0) + count
        keep = np.ones(len(x), dtype=bool)
        for label in table.labels.values():
            anomalous = label > 0.5
            notes.labelled_rows += int(anomalous.sum())
            keep &= ~anomalous
        t = table.times if has_times else None
        if t is not None:
            keep &= np.isfinite(t)
        x, t = x[keep], (t[keep] if t is not None else None)
        bridge = _on_change_silence(x, t)
        if bridge is not None:
            notes.on_change[Path(table.path).name] = bridge
        for part, pt in _time_order(x, t, notes, [at for at, _ in table.spring_forwards], bridge):
            part, pt = _fill(part, pt, features, fill, notes)
            if len(part):
                segments.append(part)
                seg_times.append(pt if pt is not None else np.zeros(0))
                seg_file.append(file_index)
    if has_times:  # files in time order too, whatever their names: the held-out part is the latest
        order = sorted(range(len(segments)), key=lambda i: float(seg_times[i][0]))
        segments, seg_times = [segments[i] for i in order], [seg_times[i] for i in order]
        _gaps_between_files(seg_times, [seg_file[i] for i in order], notes)
    segments_kept = [s for s in segments if len(s)]
    if not segments_kept:
        raise BadInput("no complete row of normal data is left after dropping rows with missing values or "
                       "labelled anomalous; check the files (or give --fill last)")
    return NormalData(features, segments_kept, seg_times if has_times else None, notes)


def _gaps_between_files(seg_times: list[np.ndarray], seg_file: list[int], notes: ReadNotes) -> None:
    """Count a gap between one file's last row and the next file's first as a gap inside a file is counted.

    Why: a month of one-file-per-day exports with a day the logger was off, or a file cut off at noon, read as
    one even month; the windows were already cut at every file's end, but the report said nothing of the
    missing day. The same rule as inside a file: longer than ``GAP_STEPS`` typical steps (the median step of all
    the rows)."""
    if len(seg_times) < 2:
        return
    steps = np.concatenate([np.diff(t) for t in seg_times if len(t) > 1] or [np.zeros(0)])
    steps = steps[steps > 0]
    if steps.size == 0:
        return
    limit = GAP_STEPS * float(np.median(steps))
    for i in range(1, len(seg_times)):
        if seg_file[i] == seg_file[i - 1]:
            continue  # a cut inside one file: counted where it was cut
        last, first = float(seg_times[i - 1][-1]), float(seg_times[i][0])
        if first - last > limit:
            notes.gaps += 1
            if notes.longest_gap is None or first - last > notes.longest_gap[1]:
                notes.longest_gap = (last, first - last)


def _grid_note(table: CsvTable) -> str:
    if table.grid_step is None:
        return ""
    return (f"; the tags have their own times, so each is held on a grid of the fastest tag's step "
            f"({table.grid_step:g} s), the last value in each step, a slower tag's held between its values")


_TIME_OF_DAY = re.compile(r"\d{1,2}[:.]\d{2}([:.]\d{2}([.,]\d+)?)?(\s*[AaPp][Mm])?")


def _unreadable_times(table: CsvTable) -> str:
    lay = table.layout
    column = (f"the columns '{lay.date_column}' and '{lay.time_column}'" if lay.date_column
              else f"the time column '{lay.time_column}'")
    example = str(table.time_example or "").strip()
    if not lay.date_column and _TIME_OF_DAY.fullmatch(example):  # a logger's clock without its calendar
        return (f"{table.path}: the time column '{lay.time_column}' holds a time of day alone (e.g. {example!r}), "
                "with no date: the rows cannot be put in order across midnight or told apart from another day's. "
                "Export the date with it (one column '2024-03-09 10:14:33', or a Date column beside the Time "
                "column), or name another column with --time-column NAME")
    return (f"{table.path}: no time in {column} could be read (e.g. {table.time_example!r}). Times read: "
            "2024-03-09 10:14:33 (T, Z or an offset allowed), 09.03.2024, 13/03/2024 or 03/13/2024 with an "
            "optional AM/PM, 04-Mar-2024, epoch seconds or milliseconds, or a Date and a Time column. Name the "
            "right column with --time-column NAME, or export the times in one of these forms")


def _choose_features(tables: list[CsvTable], columns: Sequence[str] | None, ignore: Sequence[str],
                     notes: ReadNotes) -> list[str]:
    first = tables[0]
    numeric = [c for c in first.numeric]
    for t in tables[1:]:
        missing = [c for c in numeric if c not in t.numeric]
        if missing and columns is None:
            raise BadInput(f"{t.path} lacks the numeric columns {missing} that {first.path} has; give the same "
                           "columns in every file, or choose the features with --columns")
    everywhere = [c for c in numeric if all(c in t.numeric for t in tables)]
    if columns:
        unknown = [c for c in columns if not any(c in t.layout.header for t in tables)]
        if unknown:
            raise BadInput(f"--columns {unknown}: no such column; the files have {first.layout.header}")
        text = [c for c in columns if c not in everywhere]
        if text:
            raise BadInput(f"--columns {text}: not numeric in every file (text or labels); numeric columns: "
                           f"{everywhere}")
        chosen = list(columns)
    else:
        chosen = everywhere
    unknown = [c for c in ignore if c not in first.layout.header]
    if unknown:
        raise BadInput(f"--ignore {unknown}: no such column; the files have {first.layout.header}")
    notes.ignored = [c for c in ignore if c in chosen]
    chosen = [c for c in chosen if c not in ignore]
    if not columns:
        notes.housekeeping = {c: what for c in [*notes.text_columns, *chosen]
                              if (what := _housekeeping(first.layout.logger, c))}
        chosen = [c for c in chosen if c not in notes.housekeeping]
        for c in notes.housekeeping:
            notes.text_columns.pop(c, None)
    rows = sum(t.rows for t in tables)
    for c in list(chosen):
        share = sum(int(np.isnan(t.numeric[c]).sum()) for t in tables) / max(rows, 1)
        if share <= MOSTLY_EMPTY:
            continue
        held = sum(_rows_holding(t.numeric[c], t.times) for t in tables)
        if held >= (1.0 - MOSTLY_EMPTY) * rows:  # logged more slowly than the rows, through the whole file
            notes.slow[c] = (_own_step(tables, c), share)
        elif not columns:  # --columns chose it: kept as it is
            notes.mostly_empty[c] = share
            chosen.remove(c)
    if chosen and all(c in notes.states for c in chosen):
        raise BadInput(f"no numeric feature column is left, only the text state column(s) {chosen}: a state says "
                       "which operating point the machine is in, not how it runs; export the measurements beside it "
                       f"(the header: {first.layout.header})")
    if not chosen:
        raise BadInput("no numeric feature column is left (text columns: "
                       f"{sorted(notes.text_columns) or 'none'}, mostly empty: {sorted(notes.mostly_empty) or 'none'}"
                       f", ignored: {list(ignore) or 'none'}); the header: {first.layout.header}")
    return chosen


# the columns a Campbell Scientific program logs about the logger itself (Short Cut's defaults: BattV, PTemp_C,
# with their _Min/_Avg suffixes)
_TOA5_OWN = ((re.compile(r"^batt(?:_?v|_?volt)", re.IGNORECASE), "supply voltage"),
             (re.compile(r"^p(?:anel)?_?temp", re.IGNORECASE), "panel temperature"))
# HOBOware's event columns: 'Logged' in the row where the logger saw it happen
HOBO_EVENTS = frozenset({"coupler detached", "coupler attached", "host connected", "stopped", "end of file",
                         "button up", "button down", "bad battery", "good battery", "started", "new battery"})
EVENT = "event"  # what _housekeeping says of a HOBOware event column


def _housekeeping(logger: str, name: str) -> str:
    """What a column measures of the logger itself ('' when it is not such a column).

    Why: a TOA5 table holds the logger's battery and panel temperature
    beside the plant's sensors; kept, a battery sagging on a cloudy week
    raised episodes, and a cooling tower's fouled fill was reported led by
    ``BattV_Min`` (0.47 of its windows' error), which is not the equipment.
    Only in TOA5 files, whose programs name them so: elsewhere a ``Batt``
    column may be the plant's own battery. In a HOBOware file, its event
    columns (``Coupler Attached``, ``End Of File``: ``Logged`` once) made
    five report lines of text and blank columns; they are one line now.
    """
    if logger == "HOBO":
        return EVENT if name.lower() in HOBO_EVENTS else ""
    if logger != "TOA5":
        return ""
    return next((what for pattern, what in _TOA5_OWN if pattern.match(name)), "")


def _own_step(tables: Sequence[CsvTable], name: str) -> float:
    """A column's typical step between its own values (median, in seconds; in rows when a file has no time)."""
    steps = [np.diff(np.sort(_clock(t)[np.isfinite(t.numeric[name])])) for t in tables]  # newest first too
    d = np.concatenate(steps) if steps else np.zeros(0)
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if d.size else 0.0


def _clock(table: CsvTable) -> np.ndarray:
    return table.times if table.times is not None else np.arange(table.rows, dtype=np.float64)


def _rows_holding(values: np.ndarray, times: np.ndarray | None) -> int:
    """Rows whose column's last value is at most ``HOLD_STEPS`` of the column's own steps old.

    Why its own step and not the rows': a slow tag is as fresh as it is ever
    logged until it misses a few of its updates, as the live agent holds it
    (``HOLD_STEPS``, the contract's); and why a limit at all: a tag that stopped
    writing should not stand for the rest of the file.
    """
    t = times if times is not None else np.arange(len(values), dtype=np.float64)
    present = np.isfinite(values) & np.isfinite(t)
    if not present.any():
        return 0
    d = np.diff(t[present])
    d = d[d > 0]
    limit = HOLD_STEPS * float(np.median(d)) if d.size else 0.0
    last = np.where(present, t, -np.inf)
    np.maximum.accumulate(last, out=last)
    return int(((t - last) <= limit).sum())


def _on_change_silence(x: np.ndarray, t: np.ndarray | None) -> float | None:
    """For rows written on change, the longest silence that is no gap (s); None for rows written by a clock.

    A deadband or report-by-exception historian writes a row only when a
    value moved by more than its deadband, so its rows come at irregular
    times and no column has a value in most of them; a silence there says
    that nothing moved, not that the logger stopped. Told by the fastest
    column holding a value in fewer than 90 % of the rows (a clock's file has
    one column in every row). Such a silence is a gap only when it is
    longer than ``GAP_STEPS`` of the slowest column's own steps, when no
    column wrote as often as it usually does.
    """
    if t is None or len(x) < 3 or not x.shape[1]:
        return None
    present = np.isfinite(x)
    if present.mean(axis=0).max() >= ON_CHANGE_SHARE:
        return None
    steps = []
    for j in range(x.shape[1]):
        d = np.diff(t[present[:, j]])
        d = d[d > 0]
        if d.size:
            steps.append(float(np.median(d)))
    return GAP_STEPS * max(steps) if steps else None


def _time_order(x: np.ndarray, t: np.ndarray | None, notes: ReadNotes, spring_forwards: Sequence[float] = (),
                bridge: float | None = None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The rows in time order, cut at long gaps; a newest-first export is turned around.

    Rows with equal times keep their file order (a stable sort), none dropped: the file's order is the
    only order they have. The hour a spring-forward skips is no gap (the rows on each side are one
    stretch in true time), so it does not cut the data.
    """
    if t is None or len(t) < 2:
        return [(x, t)]
    d = np.diff(t)
    if (d <= 0).all() and (d < 0).any():
        notes.reversed_order = True
        x, t = x[::-1], t[::-1]
        d = np.diff(t)
    if (d < 0).any():
        notes.out_of_order += int((d < 0).sum())
        order = np.argsort(t, kind="stable")
        x, t = x[order], t[order]
        d = np.diff(t)
    same = np.flatnonzero(d == 0)
    if same.size:
        notes.repeated_times += int(same.size)
        if notes.first_repeated is None:
            notes.first_repeated = float(t[same[0]])
    positive = d[d > 0]
    if positive.size == 0:
        return [(x, t)]
    cuts = np.flatnonzero(d > max(GAP_STEPS * float(np.median(positive)), bridge or 0.0)) + 1
    cuts = cuts[~np.isin(t[cuts], np.asarray(spring_forwards, dtype=np.float64))]
    notes.gaps += len(cuts)
    if len(cuts):  # a week's shutdown is told apart from a lost minute by its length
        c = int(cuts[np.argmax(d[cuts - 1])])
        if notes.longest_gap is None or float(d[c - 1]) > notes.longest_gap[1]:
            notes.longest_gap = (float(t[c - 1]), float(d[c - 1]))
    return list(zip(np.split(x, cuts), np.split(t, cuts)))


def _fill(x: np.ndarray, t: np.ndarray | None, features: list[str], fill: Fill, notes: ReadNotes
          ) -> tuple[np.ndarray, np.ndarray | None]:
    missing = np.isnan(x)
    if not missing.any():
        return x, t
    if fill is Fill.LAST:
        x, counts = fill_forward(x)
        for f, n in zip(features, counts.tolist()):
            if n:
                notes.filled[f] = notes.filled.get(f, 0) + n
        missing = np.isnan(x)  # before a column's first value: nothing to take the last value from
    keep = ~missing.any(axis=1)
    notes.dropped_rows += int((~keep).sum())
    return x[keep], (t[keep] if t is not None else None)
