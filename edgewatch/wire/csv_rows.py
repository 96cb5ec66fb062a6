"""The data rows of a CSV export, as a :class:`CsvLayout` says: where they start and end, and what is skipped.

After the header and its unit rows, blank and ``#`` lines and repeats of
the header (exports joined) are skipped; the rows end where another
table or a trailer is appended (:func:`find_table_end`, decided once when
the layout is sniffed). A file of (time, value) pairs per tag yields the
merged rows of the table it stands for.

NumPy and the standard library only: the agent's replay reads rows through here.
"""

from __future__ import annotations

import csv
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from edgewatch.errors import BadInput
from edgewatch.wire.csv_cells import unwrapped
from edgewatch.wire.csv_files import ends_mid_line, open_text
from edgewatch.wire.csv_header import is_comment, row_width
from edgewatch.wire.csv_layout import CsvLayout
from edgewatch.wire.csv_times import parse_time, parse_times


TORN_LOOKBACK = 100  # rows before the last whose last field a torn last line is compared with


class TornLine(csv.Error):
    """The file's last line was cut off while it was written: its last value is cut short."""


def iter_rows(layout: CsvLayout, on_error: Callable[[int, csv.Error], None] | None = None
              ) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every data line: after the header and its unit rows, blank and ``#`` lines skipped.

    A line the csv module refuses (a field past its size limit) goes to
    ``on_error`` and is skipped; without ``on_error`` it is a :class:`BadInput`.
    So does a torn last line (:class:`TornLine`): the file ends without a line end and the line's last field
    is shorter than that field in every one of the ``TORN_LOOKBACK`` rows before it. Why: a logger stopped
    mid-write leaves ``...,64.08,1`` of ``...,64.08,11.372``, with every field there, and the 1 was read as a
    current of 1 A. Only the last field can be cut short (the write runs left to right); a file that merely
    lacks its final line end keeps its last row, whose last field is as long as the ones before.
    """
    if layout.pairs:
        yield from _pair_rows(layout, on_error)
        return
    pending: tuple[int, list[str]] | None = None
    widths: deque[int] = deque(maxlen=TORN_LOOKBACK)
    for line, row in _rows(layout, on_error):
        if pending is not None:
            yield pending
            widths.append(len(pending[1][-1].strip()))
        pending = (line, row)
    if pending is None:
        return
    if (len(widths) == TORN_LOOKBACK and len(pending[1][-1].strip()) < min(widths)
            and not layout.table_end  # the rows end before a trailer: their last is not the file's
            and ends_mid_line(layout.path, layout.encoding)):
        exc = TornLine(f"the file ends mid-line: its last line ({','.join(pending[1])!r}) was cut off while it "
                       "was written")
        if on_error is None:
            raise BadInput(f"{layout.path} line {pending[0]}: {exc}")
        on_error(pending[0], exc)
        return
    yield pending


def _rows(layout: CsvLayout, on_error: Callable[[int, csv.Error], None] | None) -> Iterator[tuple[int, list[str]]]:
    """:func:`iter_rows` without the torn last line's check."""
    with open_text(layout.path, layout.encoding) as fh:
        reader = csv.reader(fh, delimiter=layout.separator)
        skip = layout.header_row + 1 + layout.unit_rows
        names = [layout.renamed.get(c, c).strip() for c in layout.header]  # as the file writes its header
        while True:
            if layout.table_end and reader.line_num >= layout.table_end[0] - 1:
                return
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if on_error is None:
                    raise BadInput(f"{layout.path} line {reader.line_num}: {exc}") from None
                on_error(reader.line_num, exc)
                continue
            if not row or not any(c.strip() for c in row):
                continue
            if layout.excel_text:
                row = unwrapped(row)
            if skip:
                skip -= 1
                continue
            if is_comment(row) or (row[0].strip() == names[0] and [c.strip() for c in row[:len(names)]] == names):
                continue  # a repeat of the header: exports joined
            yield reader.line_num, layout.blank_bad(row) if layout.quality else row


def _pair_rows(layout: CsvLayout, on_error: Callable[[int, csv.Error], None] | None
               ) -> Iterator[tuple[int, list[str]]]:
    """The rows of a file of (time, value) pairs as the table :func:`as_pairs` says: one per distinct time of
    any tag, in time order, each tag's last value at that time (blank before its first)."""
    raw = replace(layout, header=list(layout.raw_header), pairs=(), raw_header=(), time_column=layout.pairs[0][0])
    at = {name: j for j, name in enumerate(raw.header)}
    times: list[list[str]] = [[] for _ in layout.pairs]
    cells: list[list[str]] = [[] for _ in layout.pairs]
    for _, row in iter_rows(raw, on_error):
        for k, (t, v) in enumerate(layout.pairs):
            tj, vj = at[t], at[v]
            if tj < len(row) and row[tj].strip():
                times[k].append(row[tj])
                cells[k].append(row[vj] if vj < len(row) else "")
    stamps = [parse_times(c, layout.date_order, layout.excel_days) for c in times]
    t = np.concatenate(stamps) if stamps else np.zeros(0)
    tag = np.concatenate([np.full(len(s), k) for k, s in enumerate(stamps)]) if stamps else np.zeros(0, int)
    value = [c for column in cells for c in column]
    ok = np.flatnonzero(np.isfinite(t))
    order = ok[np.argsort(t[ok], kind="stable")]
    last = [""] * len(layout.pairs)
    for n, i in enumerate(order):
        last[int(tag[i])] = value[i]
        if n + 1 == len(order) or t[order[n + 1]] != t[i]:
            yield n + 1, [_iso(float(t[i]), layout.naive_times), *last]


def _iso(ts: float, naive: bool) -> str:
    text = np.datetime_as_string(np.datetime64(int(round(ts * 1e6)), "us"), unit="ms" if ts % 1 else "s")
    return text if naive else text + "Z"


def find_table_end(layout: CsvLayout, header_row: list[str]) -> tuple[int, str] | None:
    """Where a second table appended to the file starts: (line, its text), or None.

    Reports append an alarm list or a second machine's table after a blank
    line. After a blank line, a line whose time cannot be read starts
    another table (a title, another header; a summary row such as
    ``Average;...`` too: it is no measurement), unless within the next
    four lines a row as wide as the header runs on in time (a day's marker
    between days of data: the data goes on). A repeat of the header
    continues the table (exports of several days joined) unless the times
    under it start before the rows above it end: then it is another table
    of the same columns (another machine), not read into the first. Files
    without a time column are not cut. One pass over the raw lines; rows are split only at a blank
    line or a line starting like the header.
    """
    if layout.time_column is None:
        return None
    sep, names = layout.separator, [c.strip() for c in header_row]
    start = names[0] if names else ""
    skip = layout.header_row + 1 + layout.unit_rows
    last, blank, repeated, candidate, looked = "", False, None, None, 0
    width = row_width(header_row)
    def row_of(line: str) -> list[str]:
        row = next(csv.reader([line], delimiter=sep), [])
        return unwrapped(row) if layout.excel_text else row
    def time_of(line: str) -> float:
        row = row_of(line)
        return parse_time(layout.time_text(row), layout.date_order, layout.excel_days) if row else math.nan
    with open_text(layout.path, layout.encoding) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip() or (sep == "," and not line.strip(", \r\n")):
                blank = True
                continue
            if skip:
                skip -= 1
                continue
            if line.lstrip().startswith("#"):
                continue
            text = line.strip()[:60]
            if candidate is not None:
                if row_width(row_of(line)) == width and time_of(line) >= time_of(last):
                    candidate = None  # a marker between days: the data runs on
                else:
                    looked += 1
                    if looked > 3:
                        return candidate
                    continue
            if repeated is not None:
                if time_of(line) < time_of(last):
                    return repeated
                repeated = None
            elif start and line.lstrip('\ufeff="').startswith(start) and [c.strip() for c in row_of(line)] == names:
                repeated = (number, text)
                blank = False
                continue
            elif blank and last and not math.isfinite(time_of(line)):
                candidate, looked, blank = (number, text), 0, False
                continue
            blank = False
            last = line
    return candidate
