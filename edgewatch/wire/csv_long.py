"""A historian's long export (one row per tag and time) read as one column per tag.

Why here and not in :mod:`csv_table`: a long export is told apart only
after the file has been read as a table (a text column of a few tag names
repeating at each time), and is then read again row by row; ``fit`` and
the agent's replay both call :func:`long_format`, then :func:`read_long`,
so that a file the one pivots, the other pivots the same way.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgewatch.wire.csv_table import DISTINCT_TEXTS, CsvLayout, CsvTable, iter_rows, parse_number, plain_name
from edgewatch.wire.csv_times import LocalClock, parse_time


VALUE_NAMES = ("value", "val", "pv", "wert", "valeur")  # the value column of a long export, compared plainly


@dataclass(frozen=True)
class LongFormat:
    """A historian's long export: one row per tag and time, the tag named in one column, its value in another."""

    tag_column: str
    value_column: str
    tags: list[str]


def long_format(table: CsvTable) -> LongFormat | None:
    """Whether ``table`` is a long export, told by a text column of 2 to 49 names whose count times the
    distinct times is about the number of rows (with at most two numeric columns); None when not.

    Read as it is, its value column would be one feature mixing every tag.
    """
    if table.times is None or not table.numeric or len(table.numeric) > 2:
        return None
    times = table.times[np.isfinite(table.times)]
    distinct = len(np.unique(times))
    if distinct == 0 or distinct > 0.6 * len(times):
        return None
    for name, tags in table.text_values.items():
        if 2 <= len(tags) < DISTINCT_TEXTS and 0.5 <= len(tags) * distinct / len(times) <= 2.0:
            numeric = list(table.numeric)
            value = next((c for c in numeric if plain_name(c) in VALUE_NAMES), None)
            value = value or next((c for c in numeric if np.nanstd(table.numeric[c]) > 0), numeric[0])
            return LongFormat(name, value, tags)
    return None


def read_long(layout: CsvLayout, long: LongFormat) -> CsvTable:
    """A long export as one column per tag, one row per distinct time in time order; a tag with no value at
    a time is NaN there (filled by the caller as any blank). Reads the file once more, row by row."""
    tag_j, value_j = layout.header.index(long.tag_column), layout.header.index(long.value_column)
    clock = LocalClock() if layout.naive_times else None
    stamps: list[float] = []
    names: list[str] = []
    values: list[float] = []
    bad = ragged = 0
    for _, row in iter_rows(layout, on_error=lambda line, exc: None):
        if max(tag_j, value_j) >= len(row):
            ragged += 1
            continue
        ts = parse_time(layout.time_text(row), layout.date_order, layout.excel_days)
        stamps.append(clock(ts) if clock else ts)
        names.append(row[tag_j].strip())
        try:
            values.append(parse_number(row[value_j], layout.decimal, layout.thousands))
        except ValueError:
            values.append(math.nan)
            bad += 1
    t = np.array(stamps)
    ok = np.isfinite(t)
    times, at = np.unique(t[ok], return_inverse=True)
    index = {tag: k for k, tag in enumerate(long.tags)}
    wide = np.full((len(times), len(long.tags)), np.nan)
    col = np.array([index.get(n, -1) for n in names])[ok]
    known = col >= 0
    wide[at[known], col[known]] = np.array(values)[ok][known]  # a repeated (time, tag): the last row wins
    numeric = {tag: wide[:, k] for k, tag in enumerate(long.tags)}
    missing = {tag: int(np.isnan(wide[:, k]).sum()) for k, tag in enumerate(long.tags)}
    return CsvTable(layout, numeric, times, {}, {}, missing, {long.value_column: bad} if bad else {}, len(times),
                    ragged, int((~ok).sum()), clock.changes if clock else 0)
