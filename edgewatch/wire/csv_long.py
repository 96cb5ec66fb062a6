"""A historian's long export (one row per tag and time) read as one column per tag.

Why here and not in :mod:`csv_table`: a long export is told apart only
after the file has been read as a table (a text column of a few tag names
repeating at each time), and is then read again row by row; ``fit`` and
the agent's replay both call :func:`long_format`, then :func:`read_long`,
so that a file the one pivots, the other pivots the same way.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field

import numpy as np

from edgewatch.wire.csv_cells import DISTINCT_TEXTS
from edgewatch.wire.csv_header import TIME_NAME_PARTS, plain_name
from edgewatch.wire.csv_layout import CsvLayout
from edgewatch.wire.csv_rows import iter_rows
from edgewatch.wire.csv_states import is_state_column
from edgewatch.wire.csv_table import CsvTable
from edgewatch.wire.csv_times import LocalClock, parse_time


VALUE_NAMES = ("value", "val", "pv", "wert", "valeur", "varvalue", "state", "payload")  # compared plainly
TAG_NAMES = ("tag", "tagname", "tagpath", "path", "name", "entityid", "field", "series", "varname", "topic", "metric",
             "signal", "sensor", "itemid", "pointname", "tagindex")  # a tag column by its name, compared plainly
TAG_FILE = "*(Tagname).csv"  # FactoryTalk's table of tag names beside its data log: Tagname, TTagIndex


@dataclass(frozen=True)
class LongFormat:
    """A historian's long export: one row per tag and time, the tag named in one column, its value in another."""

    tag_column: str
    value_column: str
    tags: list[str]
    names: dict[str, str] = field(default_factory=dict)  # a tag as written (a FactoryTalk TagIndex) -> its name


def long_format(table: CsvTable) -> LongFormat | None:
    """Whether ``table`` is a long export; None when not.

    Told by a tag column of 2 to 49 names and a value column, either

    * any text column whose count of names times the distinct times is
      about the number of rows, with at most two numeric columns holding
      numbers (the value; a quality code), or
    * a column named like a tag (``Tag``, ``_NAME``, ``entity_id``,
      ``VarName``, ``topic``, ``_field``, FactoryTalk's ``TagIndex``...)
      and a value column named like one (``Value``, ``VarValue``, ``state``,
      ``payload``), whatever else the file holds (WinCC's ``Validity`` and
      ``Time_ms``, Kepware's ``_NUMERICID`` and ``_QUALITY``) and whether
      or not the tags share their times (Home Assistant and Node-RED
      write each value at its own time).

    Read as it is, its value column would be one feature mixing every tag.
    """
    if table.times is None:
        return None
    numeric = [c for c, v in table.numeric.items() if np.isfinite(v).any()]
    if not numeric:
        return None
    times = table.times[np.isfinite(table.times)]
    distinct = len(np.unique(times))
    if distinct == 0:
        return None
    named_value = next((c for c in numeric if plain_name(c) in VALUE_NAMES), None)
    for name, tags in _tag_columns(table):
        others = [c for c in numeric if c not in (name, named_value)]
        by_name = (plain_name(name) in TAG_NAMES and named_value is not None and name != named_value
                   and all(_beside_values(c, table.numeric[c], len(tags)) for c in others))
        by_count = (len(numeric) <= 2 and distinct <= 0.6 * len(times)
                    and 0.5 <= len(tags) * distinct / len(times) <= 2.0)
        if by_name or by_count:
            value = named_value or next((c for c in numeric if np.nanstd(table.numeric[c]) > 0), numeric[0])
            return LongFormat(name, value, tags, _tag_names(table, name, tags))
    return None


def _beside_values(name: str, values: np.ndarray, tags: int) -> bool:
    """A numeric column a long export holds beside its values: another form of the time (WinCC's ``Time_ms``),
    a quality code or a flag (one value), or an id per tag (whole numbers, no more of them than tags:
    Kepware's ``_NUMERICID``, InfluxDB's ``table``); a column that varies more is a measurement, and the file
    is a wide export with a name column."""
    if any(part in plain_name(name) for part in TIME_NAME_PARTS):
        return True
    v = np.unique(values[np.isfinite(values)])
    return len(v) <= 1 or (len(v) <= tags and bool((v == np.round(v)).all()))


def _tag_columns(table: CsvTable) -> list[tuple[str, list[str]]]:
    """(column, its distinct tags): text columns of 2 to 49 names, and a numeric ``TagIndex`` of whole numbers."""
    out = [(name, tags) for name, tags in table.text_values.items() if 2 <= len(tags) < DISTINCT_TEXTS]
    for name, values in table.numeric.items():
        if plain_name(name) == "tagindex":
            v = np.unique(values[np.isfinite(values)])
            if 2 <= len(v) < DISTINCT_TEXTS and (v == np.round(v)).all():
                out.append((name, [str(int(x)) for x in v]))
    return out


def _tag_names(table: CsvTable, column: str, tags: list[str]) -> dict[str, str]:
    """FactoryTalk's tag indices named from the ``(Tagname).csv`` file beside the log, else ``TagIndex 3``."""
    if column not in table.numeric:
        return {}
    names = {t: f"{column} {t}" for t in tags}
    for path in sorted(table.path.parent.glob(TAG_FILE)):
        try:
            with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, csv.Error):
            continue
        found = {r.get("TTagIndex", "").strip(): r.get("Tagname", "").strip() for r in rows}
        if all(found.get(t) for t in tags):
            return {t: found[t] for t in tags}
    return names


def read_long(layout: CsvLayout, long: LongFormat) -> CsvTable:
    """A long export as one column per tag, one row per time in time order; a tag with no value at a time is
    NaN there (filled by the caller as any blank). Reads the file once more, row by row.

    When the tags do not share their times (each value written when it came, as Home Assistant and
    Node-RED do), the times are put on a grid of the fastest tag's typical step (:func:`_grid_step`). A tag with
    no number at any readable time is left out.
    """
    tag_j, value_j = layout.header.index(long.tag_column), layout.header.index(long.value_column)
    clock = LocalClock(one_row_per_time=False) if layout.naive_times else None
    stamps: list[float] = []
    names: list[str] = []
    values: list[float] = []
    words: dict[int, str] = {}  # reading -> its text, where the value is a word (a state tag's on/off)
    ragged = 0
    for _, row in iter_rows(layout, on_error=lambda line, exc: None):
        if max(tag_j, value_j) >= len(row):
            ragged += 1
            continue
        ts = parse_time(layout.time_text(row), layout.date_order, layout.excel_days)
        stamps.append(clock(ts) if clock else ts)
        names.append(_tag(row[tag_j], bool(long.names)))
        try:
            values.append(layout.number(row[value_j], long.value_column))
        except ValueError:
            values.append(math.nan)
            words[len(values) - 1] = row[value_j].strip()
    t = np.array(stamps)
    index = {tag: k for k, tag in enumerate(long.tags)}
    col = np.array([index.get(n, -1) for n in names], dtype=np.int64)
    ok = np.isfinite(t)
    known = ok & (col >= 0)
    step = None
    if len(np.unique(t[known])) > 0.6 * int(known.sum()):
        step = _grid_step(t[known], col[known])
    if step is not None:
        t = np.where(ok, np.floor((t - np.nanmin(t[known])) / step) * step + np.nanmin(t[known]), np.nan)
    times, at = np.unique(t[ok], return_inverse=True)
    wide = np.full((len(times), len(long.tags)), np.nan)
    here = known[ok]
    order = np.argsort(np.array(stamps)[ok][here], kind="stable")  # a repeated (time, tag): the latest value wins
    wide[at[here][order], col[ok][here][order]] = np.array(values)[ok][here][order]
    kept = [k for k in range(len(long.tags)) if np.isfinite(wide[:, k]).any()]
    label = [long.names.get(tag, tag) for tag in long.tags]
    numeric = {label[k]: wide[:, k] for k in kept}
    missing = {label[k]: int(np.isnan(wide[:, k]).sum()) for k in kept}
    states = _state_tags(words, col, ok, at, len(times), [k for k in range(len(long.tags)) if k not in kept], label)
    bad = sum(1 for i in words if col[i] < 0 or label[col[i]] not in states)
    text_columns = {name: texts[0] for name, (texts, _) in states.items()}
    return CsvTable(layout, numeric, times, {}, text_columns, missing, {long.value_column: bad} if bad else {},
                    len(times), ragged, int((~ok).sum()), clock.changes if clock else 0, grid_step=step,
                    state_cells=states)


def _state_tags(words: dict[int, str], col: np.ndarray, ok: np.ndarray, at: np.ndarray, rows: int,
                tags: list[int], label: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
    """The tags whose values are words of a state (Home Assistant's ``on``/``off``, a pump's ``Run``/``Stop``),
    as a wide file's text state column: (its texts, per row of the pivoted times the index of its text, -1 where
    it wrote nothing). Why: read as numbers, every value of such a tag was a blank and the tag vanished from
    the model without a word. Tags holding a number anywhere are numeric (their words are blanks)."""
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    row_of = np.full(len(ok), -1, dtype=np.int64)
    row_of[ok] = at
    for k in tags:
        mine = sorted(i for i in words if col[i] == k and row_of[i] >= 0)
        texts = sorted({words[i] for i in mine if words[i]})
        if not is_state_column(texts):
            continue
        index = {text: n for n, text in enumerate(texts)}
        ids = np.full(rows, -1, dtype=np.int64)
        for i in mine:  # in reading order within a time: the latest wins, as for numbers
            if words[i]:
                ids[row_of[i]] = index[words[i]]
        out[label[k]] = (texts, ids)
    return out


def _tag(cell: str, index: bool) -> str:
    """A tag as :class:`LongFormat` lists it (a TagIndex ``3.0`` as ``3``)."""
    text = cell.strip()
    if index:
        try:
            return str(int(float(text)))
        except ValueError:
            return text
    return text


def _grid_step(t: np.ndarray, col: np.ndarray) -> float | None:
    """The fastest tag's typical step (its median step), for times no two tags share.

    Why the fastest: a vibration every second beside a flow every 5 s and a
    temperature every minute is one row a second in a wide export of the
    same tags and on a live feed (each message makes a row, the others
    held), so the model's window must count rows of that step; on the tags'
    median step the vibration was cut to one value in five (and with a
    state tag written every half hour, one in thirty). The grid then has
    about as many rows as that tag has values.
    """
    steps = []
    for k in np.unique(col):
        d = np.diff(np.sort(t[col == k]))
        d = d[d > 0]
        if d.size:
            steps.append(float(np.median(d)))
    return min(steps) if steps else None
