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

* the separator: of ``,``, ``;``, tab and ``|``, the one that splits the
  header into the most fields with the same count on (nearly) every line;
* the decimal mark: ``,`` when the separator is not ``,`` and numbers are
  written ``12,5``;
* the time column: the one named by the caller, else a column named like
  a time (``timestamp``, ``time``, ``ts``, ``datetime``, ``date``, in any
  case and with spaces or underscores: ``Time Stamp``, ``_time``), else the
  first column whose cells are all dates;
* label columns (``anomaly``, ``changepoint``): never features.

Cells that are blank, ``NaN``, ``null``, ``NA`` or ``-`` are *missing*
(NaN). A column is numeric when at least half of its present cells are
numbers; its other cells are then NaN and counted as ``bad``; a column
where most cells are text is a *text column*, reported with an example
and left out. Times: ISO 8601 (``2020-03-09 10:14:33``, ``T``, fractions,
``Z`` or an offset; none means UTC), ``2020/03/09 …``, day-first
``09.03.2020 10:14:33``, or numbers as epoch seconds (above 1e11 they are
read as milliseconds: 1e11 s is the year 5138). An unreadable time is NaN.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgewatch.errors import BadInput

SEPARATORS = (",", ";", "\t", "|")
TIME_NAMES = ("timestamp", "time", "ts", "datetime", "date")  # compared without case, spaces or underscores
LABEL_NAMES = ("anomaly", "changepoint")
MISSING = frozenset({"", "nan", "null", "none", "na", "n/a", "#n/a", "-", "?"})  # compared in lower case
SAMPLE_LINES = 64
MS_EPOCH_ABOVE = 1e11  # a number time above this is epoch milliseconds
ENCODING = "utf-8-sig"  # a byte-order mark (Excel's "CSV UTF-8") is dropped
_DAY_FIRST = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+(?:[eE][+-]?\d+)?$")


@dataclass(frozen=True)
class CsvLayout:
    """How a file is written: what :func:`sniff_layout` found (or was told)."""

    path: Path
    separator: str
    decimal: str  # "." or ","
    header: list[str]
    time_column: str | None
    label_columns: list[str] = field(default_factory=list)
    time_named: bool = True  # False: the time column was found by its content, not by its name

    @property
    def separator_name(self) -> str:
        return {"\t": "tab", ",": "','", ";": "';'", "|": "'|'"}[self.separator]

    def describe(self) -> str:
        time = (f"time column '{self.time_column}'" + ("" if self.time_named else " (its cells are dates)")
                if self.time_column else "no time column")
        decimal = ", decimal comma" if self.decimal == "," else ""
        return f"separator {self.separator_name}{decimal}, {time}, {len(self.header)} columns"


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


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def parse_number(cell: str, decimal: str = ".") -> float:
    """One cell as a float: NaN when missing; ValueError when it is text."""
    text = cell.strip()
    if text.lower() in MISSING:
        return math.nan
    if decimal == ",":
        text = text.replace(",", ".")
    return float(text)


def parse_time(cell: str) -> float:
    """One time cell as epoch seconds (the formats of the module docstring); NaN when unreadable."""
    text = cell.strip()
    if not text or text.lower() in MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            return math.nan
        return value / 1000.0 if abs(value) > MS_EPOCH_ABOVE else value
    m = _DAY_FIRST.match(text)
    if m:
        d, mo, y, hh, mm, ss, frac = m.groups()
        text = f"{y}-{int(mo):02d}-{int(d):02d}T{int(hh or 0):02d}:{mm or '00'}:{ss or '00'}{frac or ''}"
    elif len(text) >= 10 and text[4] == "/" and text[7] == "/":
        text = text[:4] + "-" + text[5:7] + "-" + text[8:]
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return math.nan
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return dt.timestamp()
    except (OverflowError, OSError, ValueError):
        return math.nan


def parse_times(cells: Sequence[str]) -> np.ndarray:
    """A column of time cells as epoch seconds; a vectorised path for plain ISO times, else one by one."""
    if not cells:
        return np.zeros(0)
    try:
        numbers = np.array(cells, dtype=np.float64)
    except ValueError:
        pass
    else:
        numbers[~np.isfinite(numbers)] = math.nan
        return np.where(np.abs(numbers) > MS_EPOCH_ABOVE, numbers / 1000.0, numbers)
    if not _ISO_DATE.match(cells[0].strip()):
        return np.array([parse_time(c) for c in cells], dtype=np.float64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (and drops it) on a zone suffix: take the slow path
            stamps = np.array([c.strip() for c in cells], dtype="datetime64[us]")
        if np.isnat(stamps).any():
            raise ValueError("missing times")
        return stamps.astype(np.int64).astype(np.float64) / 1e6
    except (ValueError, TypeError, UserWarning, DeprecationWarning):
        return np.array([parse_time(c) for c in cells], dtype=np.float64)


def _numeric_column(cells: list[str], decimal: str) -> tuple[np.ndarray, int, int, str | None]:
    """(values, missing cells, bad cells, an example of text) -- fast when the column is clean."""
    if decimal == ".":
        try:
            values = np.array(cells, dtype=np.float64)
            bad_value = ~np.isfinite(values)
            values[bad_value] = math.nan  # "inf" in an export is a broken cell, not a measurement
            return values, int(bad_value.sum()), 0, None
        except ValueError:
            pass
    values = np.empty(len(cells))
    missing = bad = 0
    example = None
    for i, cell in enumerate(cells):
        try:
            v = parse_number(cell, decimal)
        except ValueError:
            values[i] = math.nan
            bad += 1
            example = example or cell.strip()
            continue
        if not math.isfinite(v):
            missing += 1
            v = math.nan
        values[i] = v
    return values, missing, bad, example


def _read_lines(path: Path, limit: int, errors: str = "strict") -> list[str]:
    out = []
    with path.open(encoding=ENCODING, newline="", errors=errors) as fh:
        for line in fh:
            if line.strip():
                out.append(line)
            if len(out) >= limit:
                break
    return out


def _split(lines: list[str], sep: str) -> list[list[str]]:
    """The sample's rows; when the csv module refuses one (a field past its size limit), the others alone."""
    try:
        return list(csv.reader(lines, delimiter=sep))
    except csv.Error:
        out = []
        for line in lines:
            try:
                out.extend(csv.reader([line], delimiter=sep))
            except csv.Error:
                continue
        return out


def _sniff_separator(lines: list[str]) -> str:
    best, best_fields = ",", 1
    for sep in SEPARATORS:
        rows = _split(lines, sep)
        width = len(rows[0])
        if width < 2:
            continue
        agree = sum(1 for r in rows[1:] if len(r) == width)
        if rows[1:] and agree < 0.9 * len(rows[1:]):
            continue
        if width > best_fields:
            best, best_fields = sep, width
    return best


def _sniff_decimal(rows: list[list[str]], separator: str) -> str:
    if separator == ",":
        return "."
    cells = [c.strip() for r in rows for c in r]
    comma = sum(1 for c in cells if _DECIMAL_COMMA.match(c))
    dot = sum(1 for c in cells if re.match(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$", c))
    return "," if comma > dot else "."


def _plain(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def _looks_like_times(cells: list[str]) -> bool:
    present = [c for c in cells if not is_missing(c)]
    if not present:
        return False
    for c in present:
        try:
            float(c)
            return False  # plain numbers are values unless the column is named like a time
        except ValueError:
            pass
    return all(math.isfinite(parse_time(c)) for c in present)


def sniff_layout(path: str | Path, time_column: str | None = None, separator: str | None = None,
                 errors: str = "strict") -> CsvLayout:
    """Find separator, decimal mark, time and label columns from the header and the first lines.

    ``separator`` given (one character) is taken as it is instead of sniffed.
    ``errors="replace"`` reads bytes that are not UTF-8 as U+FFFD (the
    agent's replay: such a cell is then counted as not a number) instead of
    refusing the file.

    Fails with :class:`BadInput` when the file is missing, empty, has a
    repeated column name, or lacks the time column it was told to use (the
    message lists the columns it has).
    """
    src = Path(path)
    if not src.is_file():
        raise BadInput(f"{src} does not exist or is not a file")
    try:
        lines = _read_lines(src, SAMPLE_LINES, errors)
    except UnicodeDecodeError as exc:
        raise BadInput(f"{src} is not UTF-8 text ({exc.reason} at byte {exc.start}); export it as CSV UTF-8") from None
    if not lines:
        raise BadInput(f"{src} is empty; expected a header row of column names")
    if separator is not None and len(separator) != 1:
        raise BadInput(f"{src}: a separator is one character, got {separator!r}")
    sep = separator or _sniff_separator(lines)
    rows = _split(lines, sep)
    header = [h.strip() for h in rows[0]]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise BadInput(f"{src}: the header names {dupes} more than once; rename them so each column has one name")
    decimal = _sniff_decimal(rows[1:], sep)
    labels = [h for h in header if h.lower() in LABEL_NAMES]
    named = True
    if time_column is not None:
        if time_column not in header:
            raise BadInput(f"{src} has no column '{time_column}' (--time-column); its columns, read with "
                           f"separator {sep!r}: {header}")
        chosen: str | None = time_column
    else:
        chosen = next((h for name in TIME_NAMES for h in header if _plain(h) == name), None)
        if chosen is None:
            body = rows[1:]
            for j, h in enumerate(header):
                column = [r[j] for r in body if j < len(r)]
                if h not in labels and _looks_like_times(column):
                    chosen, named = h, False
                    break
    return CsvLayout(src, sep, decimal, header, chosen, labels, named)


def iter_rows(layout: CsvLayout) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line after the header, as the layout splits them."""
    with layout.path.open(encoding=ENCODING, newline="") as fh:
        reader = csv.reader(fh, delimiter=layout.separator)
        next(reader, None)
        for row in reader:
            if row and any(c.strip() for c in row):
                yield reader.line_num, row


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
    ragged = 0
    n = 0
    for _, row in iter_rows(lay):
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
    return chunks.table(n, ragged)


class _Chunks:
    """Columns converted chunk by chunk, with their counts; a text column keeps only counts and an example."""

    def __init__(self, layout: CsvLayout) -> None:
        self.layout = layout
        width = len(layout.header)
        self.values: list[list[np.ndarray]] = [[] for _ in range(width)]
        self.missing = [0] * width
        self.bad = [0] * width
        self.example: list[str | None] = [None] * width
        self.times: list[np.ndarray] = []

    def add(self, columns: list[list[str]]) -> None:
        for j, name in enumerate(self.layout.header):
            if name == self.layout.time_column:
                self.times.append(parse_times(columns[j]))
                continue
            values, n_missing, n_bad, example = _numeric_column(columns[j], self.layout.decimal)
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
        for j, name in enumerate(lay.header):
            if name == lay.time_column:
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
        return CsvTable(lay, numeric, times, labels, text, missing, bad, rows, ragged, bad_times)
