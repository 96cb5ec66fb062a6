"""The CSV files plants export: separator, decimal mark and time column sniffed, gaps kept as NaN.

A historian or a SCADA export is rarely the tidy ``timestamp,a,b`` file a
tool expects: SKAB's pump files are ``;``-separated with a ``datetime``
column; European exports write ``1,5`` for 1.5 with ``;`` between fields;
a sensor logged less often than the others leaves blank cells; text
columns (a state, an operator's note) sit between the numbers. This module
reads such a file without being told, and says what it found, so that
``edgewatch fit`` can report it and the agent's replay can read the same
file the same way (the reading rules live only in these ``csv_*`` modules).

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
and left out, unless its texts are few: 2 to 10 distinct texts make a
*state column* (``Run``/``Stop``). The rows' texts of a text column of
up to 50 distinct texts are kept for the caller to code (:mod:`csv_states`:
``fit`` codes the state columns, ``eval csv`` reads any of them by the
model's codes, a day of ``Run`` alone too). Times are read by :mod:`csv_times`; wall-clock times with no
zone run on through a daylight-saving fall-back. An unreadable time is NaN.

Where each rule lives: :mod:`csv_sniff` (:func:`sniff_layout`, the order
of the findings) ties together :mod:`csv_files` (packing, encoding),
:mod:`csv_header` (the header row, its names, unit and description rows),
:mod:`csv_cells` (missing, numbers, units in cells, Excel's ``="..."``,
qualities), :mod:`csv_marks` (decimal and thousands marks, given or
found), :mod:`csv_time_column` (the time column by its cells) and
:mod:`csv_tag_columns` (quality and (time, value) columns of one tag) in
one :class:`CsvLayout` (:mod:`csv_layout`); :mod:`csv_rows` yields the
data rows and finds where the table ends. This module reads the rows into
columns (:func:`read_csv_table`) and keeps the names callers import.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput
from edgewatch.wire.csv_cells import DISTINCT_TEXTS, MISSING, numeric_column
from edgewatch.wire.csv_layout import CsvLayout
from edgewatch.wire.csv_rows import iter_rows
from edgewatch.wire.csv_sniff import sniff_layout
from edgewatch.wire.csv_times import LocalClock, parse_times

__all__ = ["CsvLayout", "CsvTable", "MISSING", "fill_forward", "iter_rows", "read_csv_table", "sniff_layout"]


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
    # text column of at most DISTINCT_TEXTS distinct texts -> (its texts, per row the index of its text in them, -1
    # where the cell is blank or a number); a state column (wire/csv_states.py) when is_state_column(its texts):
    # fit codes only those, eval csv reads any of them by a model's codes (one text alone: a day the pump ran)
    state_cells: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)
    # numeric column -> its out-of-range marks (``+Over``, ``Over Range``) by text and count: missing cells, said apart
    beyond: dict[str, dict[str, int]] = field(default_factory=dict)
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
        self.beyond: list[dict[str, int]] = [{} for _ in range(width)]
        # per column its text cells' distinct texts -> index (None once there are too many for a state column),
        # and per chunk the index of each row's text (-1: none) or, for a chunk without text, its length
        self.state_texts: list[dict[str, int] | None] = [{} for _ in range(width)]
        self.state_ids: list[list[np.ndarray | int]] = [[] for _ in range(width)]
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
                if lay.date_column is not None or lay.ms_column is not None or lay.zone or lay.elapsed:
                    blank = [""] * len(cells)
                    dates = columns[lay.header.index(lay.date_column)] if lay.date_column else blank
                    ms = columns[lay.header.index(lay.ms_column)] if lay.ms_column else blank
                    cells = [lay.joined(t, d, m) for t, d, m in zip(cells, dates, ms)]
                self.time_example = self.time_example or next((c for c in cells if c.strip()), "")
                self.times.append(parse_times(cells, lay.date_order, lay.excel_days))
                continue
            values, n_missing, n_bad, example = numeric_column(columns[j], lay.decimal, lay.thousands, self.texts[j],
                                                               lay.cell_units.get(name), self.beyond[j])
            self.values[j].append(values)
            self.missing[j] += n_missing
            self.bad[j] += n_bad
            self.example[j] = self.example[j] or example
            if self.state_texts[j] is not None:
                self._state_ids(j, columns[j], values, n_bad)

    def _state_ids(self, j: int, cells: list[str], values: np.ndarray, n_bad: int) -> None:
        """Note which text each row of a column with text holds, while it may still be a state column."""
        if not n_bad:
            self.state_ids[j].append(len(cells))
            return
        known = self.state_texts[j]
        ids = np.full(len(cells), -1, dtype=np.int16)
        for i in np.flatnonzero(np.isnan(values)).tolist():
            text = cells[i].strip()
            if text.lower() in MISSING:
                continue
            try:
                float(text)  # "inf": a broken number, not a state
                continue
            except ValueError:
                pass
            k = known.get(text)
            if k is None:
                if len(known) >= DISTINCT_TEXTS:
                    self.state_texts[j], self.state_ids[j] = None, []  # names or comments: no state column
                    return
                k = known[text] = len(known)
            ids[i] = k
        self.state_ids[j].append(ids)

    def _state_cells(self, j: int) -> tuple[list[str], np.ndarray] | None:
        known = self.state_texts[j]
        if not known:
            return None
        parts = [np.full(p, -1, dtype=np.int16) if isinstance(p, int) else p for p in self.state_ids[j]]
        return list(known), np.concatenate(parts)

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
        states = {name: found for name in text if (found := self._state_cells(lay.header.index(name))) is not None}
        beyond = {name: self.beyond[lay.header.index(name)] for name in numeric if self.beyond[lay.header.index(name)]}
        return CsvTable(lay, numeric, times, labels, text, missing, bad, rows, ragged, bad_times, clock.changes,
                        self.time_example, text_values, fall_backs=tuple(clock.fall_backs),
                        spring_forwards=tuple(clock.spring_forwards), state_cells=states, beyond=beyond)
