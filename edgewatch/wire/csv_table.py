"""The CSV files plants export: separator, decimal mark and time column sniffed, gaps kept as NaN.

A historian or a SCADA export is rarely the tidy ``timestamp,a,b`` file a
tool expects: SKAB's pump files are ``;``-separated with a ``datetime``
column; European exports write ``1,5`` for 1.5 with ``;`` between fields;
a sensor logged less often than the others leaves blank cells; text
columns (a state, an operator's note) sit between the numbers. This module
reads such a file without being told, and says what it found, so that
``edgewatch fit`` can report it and the agent's replay can read the same
file the same way (the reading rules live only here).

What is sniffed (:func:`sniff_layout`), from the header and the first
lines:

* the encoding: UTF-8 (a byte-order mark dropped) when the whole file is
  UTF-8, UTF-16 with its byte-order mark (Excel's "Unicode text"), else
  Windows-1252/Latin-1, said in the layout's description;
* the separator: Excel's ``sep=;`` first line, else of ``,``, ``;``, tab
  and ``|`` the one that finds the header on the first line and splits it
  into the most fields with the same count on (nearly) every line;
* the header: the first row as wide as most rows; a title or comment
  lines above it are skipped, as are rows under it that name units or
  describe the columns (no number where the data has numbers), and blank
  or ``#`` lines anywhere. A separator at the end of every line adds no
  column; a blank or repeated name is made unique (``column 4``,
  ``Value_2``) and the renaming said;
* the decimal mark: ``,`` when the separator is not ``,`` and numbers are
  written ``12,5``; a thousands mark when numbers are written ``1,234.5``
  (quoted) or ``1.234,5``;
* the time column: the one named by the caller, else a column named like
  a time (``timestamp``, ``time``, ``ts``, ``datetime``, ``date``, in any
  case and with spaces or underscores: ``Time Stamp``, ``_time``), else a
  column with ``time``, ``date``, ``stamp``, ``zeit`` or ``datum`` in its
  name whose cells are dates or epoch numbers (Ignition's ``t_stamp``),
  else the first column whose cells are all dates; a column of times of day is
  joined to a column of dates (``Date``, ``Time``); whether ``04/03/2024``
  is day- or month-first is read from the file's dates (see
  :mod:`csv_times`);
* label columns (``anomaly``, ``changepoint``): never features;
* among a tag row, a description row and a unit row, the one naming the
  time column names the columns; a zone in the time column's name
  (``Time (UTC+01:00)``) applies to its naive times; a quality column
  beside a value (``Quality``, ``FIC101.Q``: Good/Bad, OPC codes) blanks
  the values of bad quality, and a value named ``FIC101 Value`` beside its
  quality or its own time is the tag ``FIC101``; a (time, value) pair per
  tag is read as the table it stands for; a table appended after a blank
  line is not read;
  a ``.`` beside decimal commas groups thousands, and when no cell tells,
  the guess is said (a ``decimal`` given says it instead: fit's
  ``--decimal``, the replay's ``?decimal=``).

Cells that are blank, ``NaN``, ``null``, ``NA`` or ``-`` are *missing*
(NaN). A column is numeric when at least half of its present cells are
numbers; its other cells are then NaN and counted as ``bad``; a column
where most cells are text is a *text column*, reported with an example
and left out. Times are read by :mod:`csv_times`; wall-clock times with no
zone run on through a daylight-saving fall-back. An unreadable time is NaN.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput
from edgewatch.wire.csv_cells import MISSING, numeric_column, present_cells, units_in_cells, unwrapped, without_units
from edgewatch.wire.csv_files import described, sniff_encoding
from edgewatch.wire.csv_header import (HEAD_LINES, LABEL_NAMES, SAMPLE_LINES, TIME_NAMES, TIME_NAME_PARTS,
                                       count_unit_rows, header_at, header_names, is_comment, names_row, plain_name,
                                       read_lines, split_rows)
from edgewatch.wire.csv_layout import CsvLayout
from edgewatch.wire.csv_marks import DECIMALS, TOLD_DECIMAL, sniff_decimal, told_decimal, told_marks, with_marks
from edgewatch.wire.csv_rows import find_table_end, iter_rows
from edgewatch.wire.csv_tag_columns import as_pairs, named_after_tags, quality_columns
from edgewatch.wire.csv_time_column import (are_dates_only, are_epochs, are_times_of_day, find_ms_column,
                                            looks_like_times, zone_of)
from edgewatch.wire.csv_times import (DateOrder, LocalClock, has_half_day, is_excel_days, is_naive, needs_date_order,
                                      parse_times, sniff_date_order)

SEPARATORS = (",", ";", "\t", "|")
_SEP_LINE = re.compile(r'^"?sep=(.)"?$', re.IGNORECASE)  # Excel's first line naming the separator


@dataclass
class CsvTable:
    """A whole file read column by column; missing and unreadable cells are NaN."""

    layout: CsvLayout
    numeric: dict[str, np.ndarray]  # float64 columns in file order
    times: np.ndarray | None  # epoch seconds, NaN where unreadable
    labels: dict[str, np.ndarray]  # float64, NaN where missing
    text_columns: dict[str, str]  # name -> an example cell
    missing: dict[str, int]  # numeric column -> cells blank / NaN / null
    bad: dict[str, int]  # numeric column -> cells that were text in a numeric column
    rows: int
    ragged: int = 0  # lines with another number of fields than the header (skipped)
    bad_times: int = 0
    clock_changes: int = 0  # daylight-saving fall-backs in wall-clock times (the times run on through them)
    time_example: str = ""  # a time cell, for a message when none could be read
    text_values: dict[str, list[str]] = field(default_factory=dict)  # text column -> its distinct cells (some)
    grid_step: float | None = None  # a long export whose tags have their own times, put on a grid this wide (s)
    fall_backs: tuple[float, ...] = ()  # wall-clock start of each repeated hour (epoch s as read)
    spring_forwards: tuple[tuple[float, float], ...] = ()  # per skipped hour: (first time after it in ``times``,
    #                                                        the hour's wall-clock start as read)

    @property
    def path(self) -> Path:
        return self.layout.path


def fill_forward(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each NaN of ``[rows, F]`` takes the last value above it in its column: (filled, cells filled per column).

    Cells before a column's first value stay NaN (nothing to hold). The
    rule a plant's export needs (a sensor logged every third second leaves
    two blanks in three) and the agent's for a missing value.
    """
    x = np.asarray(values, dtype=np.float64)
    missing = np.isnan(x)
    if not missing.any():
        return x, np.zeros(x.shape[1], dtype=np.int64)
    idx = np.where(~missing, np.arange(len(x))[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    filled = x[idx, np.arange(x.shape[1])]
    return filled, (missing & ~np.isnan(filled)).sum(axis=0)


def _sniff_separator(rows_by_sep: dict[str, list[list[str]]], first: int) -> str:
    """The separator that finds the header on the first line and splits it widest (then the one finding it soonest)."""
    best, best_score = ",", (False, 1, 0)
    for sep, rows in rows_by_sep.items():
        if len(rows) <= first:
            continue
        h, width, agree = header_at(rows, first)
        if width < 2 or agree < 0.9:
            continue
        score = (h == first, width, -h)
        if score > best_score:
            best, best_score = sep, score
    return best


def sniff_layout(path: str | Path, time_column: str | None = None, separator: str | None = None,
                 decimal: str | None = None) -> CsvLayout:
    """Find the encoding, separator, header, decimal mark, time and label columns from the first lines.

    A file of (time, value) column pairs, one per tag, is presented as the
    table it stands for (:func:`as_pairs`).

    ``separator`` given (one character) is taken as it is instead of
    sniffed, as is Excel's ``sep=;`` first line. ``decimal`` given (``.``
    or ``,``; else the one of :func:`told_decimal`) is the decimal mark,
    for a file whose numbers cannot tell (``1.234`` only); the other mark
    then groups thousands. Fails with :class:`BadInput` when the file is
    missing or empty, lacks the time column it was told to use (the
    message lists the columns it has), or holds a number the given
    decimal mark cannot read (the message names it and its line).
    """
    decimal = decimal if decimal is not None else TOLD_DECIMAL.get()
    if decimal is not None and decimal not in DECIMALS:
        raise BadInput(f"{path}: the decimal mark is '.' or ',', got {decimal!r}")
    layout = _sniff_layout(path, time_column, separator, decimal)
    return layout if time_column is not None else as_pairs(layout)


def _sniff_layout(path: str | Path, time_column: str | None = None, separator: str | None = None,
                  decimal: str | None = None) -> CsvLayout:
    src = Path(path)
    if not src.is_file():
        raise BadInput(f"{src} does not exist or is not a file")
    if separator is not None and len(separator) != 1:
        raise BadInput(f"{src}: a separator is one character, got {separator!r}")
    encoding, encoding_note = sniff_encoding(src)
    lines = read_lines(src, SAMPLE_LINES + HEAD_LINES, encoding)
    if not lines:
        raise BadInput(f"{src} is empty; expected a header row of column names")
    first = 0
    told = _SEP_LINE.match(lines[0].strip())
    if told:
        first = 1
        separator = separator or told.group(1)
    sep = separator or _sniff_separator({s: split_rows(lines, s) for s in SEPARATORS}, first)
    rows = split_rows(lines, sep)
    excel_text = any(c.startswith('="') for r in rows for c in r)
    if excel_text:
        rows = [unwrapped(r) for r in rows]
    if len(rows) <= first:
        raise BadInput(f"{src} has no header row of column names under its 'sep=' line")
    h = header_at(rows, first)[0] if len(rows) > first + 1 else first
    if h > first + HEAD_LINES:
        h = first
    repeat = [c.strip() for c in rows[h]]  # the header again (exports joined): no data to sniff from
    body = [r for r in rows[h + 1:SAMPLE_LINES + h + 1] if not is_comment(r) and [c.strip() for c in r] != repeat]
    header, renamed = header_names(rows[h], body)
    if not header:
        raise BadInput(f"{src}: its header row names no column; expected a first row of column names")
    cell_units = units_in_cells(header, body)
    body = without_units(header, body, cell_units)
    if decimal is None:
        sniffed, thousands, _ = sniff_decimal(body, sep).decimal()
    else:
        sniffed, thousands = decimal, "." if decimal == "," else ","
    n_units = count_unit_rows(header, body, sniffed, thousands)
    header, renamed, cell_units, unit_cells = names_row(rows[h], header, renamed, cell_units, body[:n_units],
                                                         body[n_units:])
    units = {name: ", ".join(c for r in unit_cells if (c := (r[j] if j < len(r) else "").strip()))
             for j, name in enumerate(header)}
    body = body[n_units:]
    columns = {name: [r[j] for r in body if j < len(r)] for j, name in enumerate(header)}
    labels = [name for name in header if name.lower() in LABEL_NAMES]
    named = True
    if time_column is not None:
        if time_column not in header:
            raise BadInput(f"{src} has no column '{time_column}' (--time-column); its columns, read with "
                           f"separator {sep!r}: {header}")
        chosen: str | None = time_column
    else:
        chosen = next((name for plain in TIME_NAMES for name in header if plain_name(name) == plain), None)
        if chosen is None:  # t_stamp, TimeStampUTC, Zeitstempel: a time in the name and times or epochs in the cells
            chosen = next((name for name in header if any(part in plain_name(name) for part in TIME_NAME_PARTS)
                           and (looks_like_times(columns[name]) or are_epochs(columns[name])
                                or is_excel_days(present_cells(columns[name])))), None)
        if chosen is None:
            chosen = next((name for name in header if name not in labels and looks_like_times(columns[name])), None)
            named = chosen is None
    date_column = None
    if chosen is not None:
        if are_times_of_day(columns[chosen], chosen):
            date_column = next((n for n in header if n != chosen and are_dates_only(columns[n])), None)
        elif are_dates_only(columns[chosen]):
            clock = next((n for n in header if n != chosen and are_times_of_day(columns[n], n)), None)
            if clock is not None:
                chosen, date_column = clock, chosen
    units = {name: text for name, text in units.items() if text and name not in (chosen, date_column)}
    layout = CsvLayout(src, sep, ".", header, chosen, labels, named, encoding, encoding_note, h,
                       n_units, units, None, date_column, renamed=renamed, packed=described(src),
                       cell_units=cell_units, excel_text=excel_text)
    layout = with_marks(layout, body) if decimal is None else told_marks(layout, body, decimal)
    layout = replace(layout, quality=quality_columns(header, renamed, columns, layout.decimal, layout.thousands))
    layout = named_after_tags(layout, list(layout.quality))
    layout = replace(layout, table_end=find_table_end(layout, rows[h]))
    if chosen is None:
        return layout
    layout = replace(layout, ms_column=find_ms_column(layout, columns))
    sample = [layout.time_text(r) for r in body]
    if is_excel_days(present_cells(sample)):
        return replace(layout, excel_days=True)
    zone = zone_of(chosen) or (zone_of(date_column) if date_column else "")
    if zone and is_naive(sample) and not are_epochs(sample):
        layout = replace(layout, zone=zone)
        sample = [layout.time_text(r) for r in body]
    layout = replace(layout, naive_times=is_naive(sample))
    if not needs_date_order(sample):
        return layout
    order = sniff_date_order(sample)
    if order is None:
        order = sniff_date_order(layout.time_text(r) for _, r in iter_rows(layout))  # the sample did not tell
    if order is None:
        return replace(layout, date_order=DateOrder.MONTH_FIRST if has_half_day(sample) else DateOrder.DAY_FIRST,
                       date_order_guessed=True)
    return replace(layout, date_order=order)


CHUNK_ROWS = 100_000  # rows held as text at a time: a million rows of ten columns as strings took 740 MB


def read_csv_table(path: str | Path, layout: CsvLayout | None = None, *, time_column: str | None = None,
                   max_rows: int | None = None, progress: Callable[[int], None] | None = None) -> CsvTable:
    """Read a whole file column by column (``max_rows``: only the first rows).

    Text is converted to numbers every ``CHUNK_ROWS`` rows, so memory stays
    near that of the numbers. ``progress`` is called with the number of
    rows read so far after each chunk. Fails with :class:`BadInput` when
    the file has a header but no rows; everything else (text, blanks,
    ragged lines, unreadable times) is read as NaN or skipped and counted,
    for the caller to report.
    """
    lay = layout or sniff_layout(path, time_column)
    width = len(lay.header)
    chunks = _Chunks(lay)
    columns: list[list[str]] = [[] for _ in range(width)]
    refused = [0]
    ragged = 0
    n = 0
    for _, row in iter_rows(lay, on_error=lambda line, exc: refused.__setitem__(0, refused[0] + 1)):
        if len(row) != width:
            if len(row) < width or any(c.strip() for c in row[width:]):
                ragged += 1
                continue
            row = row[:width]  # trailing empty fields (a separator at the end of the line)
        for j in range(width):
            columns[j].append(row[j])
        n += 1
        if n % CHUNK_ROWS == 0:
            chunks.add(columns)
            columns = [[] for _ in range(width)]
            if progress is not None:
                progress(n)
        if max_rows is not None and n >= max_rows:
            break
    if columns[0]:
        chunks.add(columns)
    if n == 0:
        raise BadInput(f"{lay.path} has a header but no rows of data")
    return chunks.table(n, ragged + refused[0])


class _Chunks:
    """Columns converted chunk by chunk, with their counts; a text column keeps only counts and an example."""

    def __init__(self, layout: CsvLayout) -> None:
        self.layout = layout
        width = len(layout.header)
        self.values: list[list[np.ndarray]] = [[] for _ in range(width)]
        self.missing = [0] * width
        self.bad = [0] * width
        self.example: list[str | None] = [None] * width
        self.texts: list[set[str]] = [set() for _ in range(width)]
        self.times: list[np.ndarray] = []
        self.time_example = ""

    def add(self, columns: list[list[str]]) -> None:
        lay = self.layout
        skip = lay.not_values() - {lay.time_column}
        for j, name in enumerate(lay.header):
            if name in skip:
                continue
            if name == lay.time_column:
                cells = columns[j]
                if lay.date_column is not None or lay.ms_column is not None or lay.zone:
                    blank = [""] * len(cells)
                    dates = columns[lay.header.index(lay.date_column)] if lay.date_column else blank
                    ms = columns[lay.header.index(lay.ms_column)] if lay.ms_column else blank
                    cells = [lay.joined(t, d, m) for t, d, m in zip(cells, dates, ms)]
                self.time_example = self.time_example or next((c for c in cells if c.strip()), "")
                self.times.append(parse_times(cells, lay.date_order, lay.excel_days))
                continue
            values, n_missing, n_bad, example = numeric_column(columns[j], lay.decimal, lay.thousands, self.texts[j],
                                                                lay.cell_units.get(name))
            self.values[j].append(values)
            self.missing[j] += n_missing
            self.bad[j] += n_bad
            self.example[j] = self.example[j] or example

    def table(self, rows: int, ragged: int) -> CsvTable:
        lay = self.layout
        numeric: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        text: dict[str, str] = {}
        missing: dict[str, int] = {}
        bad: dict[str, int] = {}
        times = np.concatenate(self.times) if self.times else None
        clock = LocalClock()
        if times is not None and lay.naive_times:
            times = clock.run_on(times)
        for j, name in enumerate(lay.header):
            if name in lay.not_values():
                continue
            values = np.concatenate(self.values[j])
            if name in lay.label_columns:
                labels[name] = values
            elif self.bad[j] > 0 and self.bad[j] >= 0.5 * (rows - self.missing[j]):
                text[name] = self.example[j] or ""
            else:
                numeric[name] = values
                missing[name] = self.missing[j]
                if self.bad[j]:
                    bad[name] = self.bad[j]
        bad_times = int(np.isnan(times).sum()) if times is not None else 0
        text_values = {name: sorted(self.texts[lay.header.index(name)]) for name in text}
        return CsvTable(lay, numeric, times, labels, text, missing, bad, rows, ragged, bad_times, clock.changes,
                        self.time_example, text_values, fall_backs=tuple(clock.fall_backs),
                        spring_forwards=tuple(clock.spring_forwards))
