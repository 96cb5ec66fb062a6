"""How a CSV file is written (:class:`CsvLayout`): what :func:`csv_sniff.sniff_layout` found, or was told.

The layout is the one value every reader of the file takes (the table
reader, the row iterator, the agent's replay), so that a time cell, a
number cell and a value of bad quality are read one way.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgewatch.wire.csv_cells import is_missing, parse_number, quality_is_bad
from edgewatch.wire.csv_files import ENCODING
from edgewatch.wire.csv_times import DOTTED_CLOCK, DateOrder, clock_seconds


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
    encoding: str = ENCODING
    encoding_note: str | None = None  # why the file is not read as UTF-8
    header_row: int = 0  # non-blank rows above the header (a title, comments, "sep=;")
    unit_rows: int = 0  # rows under the header that name units or describe the columns, not data
    units: dict[str, str] = field(default_factory=dict)  # column -> its unit (or description)
    thousands: str | None = None  # the thousands mark of numbers written 1,234.5 or 1.234,5
    date_column: str | None = None  # a date column the time-of-day column is joined to
    date_order: DateOrder = DateOrder.DAY_FIRST
    date_order_guessed: bool = False  # no date in the file says which of day and month comes first
    naive_times: bool = False  # times without a zone: wall-clock times, run on through a clock change
    excel_days: bool = False  # the time column holds Excel's serial days (45355.5), not epoch seconds
    elapsed: float = 0.0  # seconds per unit of a time column of elapsed time (``Time [ms]``: 0.001); 0: not one
    origin: float = 0.0  # epoch seconds elapsed times count from (a "Trigger time" line above the header); 0: 1970
    origin_line: str = ""  # the line that gave it
    renamed: dict[str, str] = field(default_factory=dict)  # new name -> the header's (repeated or blank)
    packed: str = ""  # how the file was unpacked ("gzip-compressed", "read from the zip member 'a.csv'")
    cell_units: dict[str, str] = field(default_factory=dict)  # column -> the unit written after each number
    ms_column: str | None = None  # milliseconds of the time in a column of their own (FactoryTalk's Millitm)
    decimal_note: str | None = None  # the decimal mark was a guess: why
    quality: dict[str, str] = field(default_factory=dict)  # value column -> the quality column beside it
    pairs: tuple[tuple[str, str], ...] = ()  # (time column, value column) per tag of the file's own header
    raw_header: tuple[str, ...] = ()  # the file's header when ``header`` is the table the pairs stand for
    table_end: tuple[int, str] | None = None  # (line, its text): another table starts there, not read
    zone: str = ""  # the zone the time column's name gives its naive times: "UTC+01:00" from "Time (UTC+01:00)"
    excel_text: bool = False  # cells written as Excel text formulas, ="08:00:00", to keep Excel from converting them
    decimal_told: bool = False  # the decimal mark was given (fit's --decimal, the replay's ?decimal=), not sniffed
    names_note: str = ""  # how the names were read from a logger's own form of them (HOBOware's serial numbers)
    logger: str = ""  # the logger's own file format: "TOA5" (Campbell Scientific, its first line), "HOBO" (its names)

    @property
    def separator_name(self) -> str:
        return {"\t": "tab", ",": "','", ";": "';'", "|": "'|'"}[self.separator]

    def describe(self) -> str:
        if self.date_column:
            time = f"time from the columns '{self.date_column}' and '{self.time_column}'"
        elif self.time_column:
            time = f"time column '{self.time_column}'" + ("" if self.time_named else " (its cells are dates)")
        else:
            time = "no time column"
        if self.ms_column:
            time += f" with the milliseconds in '{self.ms_column}'"
        if self.zone:
            time += f" (times in {self.zone}, from the column's name)"
        if self.date_column or self.time_column:
            if self.date_order_guessed:
                time += f" (dates read {self.date_order.value}: no day above 12 in the file tells)"
            elif self.date_order is DateOrder.MONTH_FIRST:
                time += " (dates month-first)"
            if self.excel_days:
                time += " (Excel serial days)"
            if self.elapsed and self.origin_line:
                time += f" (time elapsed since the recording started: {self.origin_line!r})"
            elif self.elapsed:
                time += " (time elapsed since the recording started, printed as from 1970-01-01 00:00)"
        decimal = ", decimal comma" if self.decimal == "," else ""
        if self.decimal_told:
            decimal = f", decimal {'comma' if self.decimal == ',' else 'point'} (as given)"
        thousands = f", thousands mark {self.thousands!r}" if self.thousands else ""
        parts = [f"separator {self.separator_name}{decimal}{thousands}, {time}, {len(self.header)} columns"]
        if self.decimal_note:
            parts.append(self.decimal_note)
        if self.table_end:
            parts.append(f"the data ends on line {self.table_end[0]}: from there ({self.table_end[1]!r}) another table "
                         "or a trailer, not read")
        if self.packed:
            parts.append(self.packed)
        if self.encoding_note:
            parts.append(self.encoding_note)
        if self.header_row:
            parts.append(f"{self.header_row} line(s) above the header skipped")
        if self.unit_rows:
            shown = _some([f"{k} [{v}]" for k, v in self.units.items()], 4)
            parts.append(f"{self.unit_rows} row(s) of units or descriptions under the header, not data: {shown}")
        if self.names_note:
            parts.append(self.names_note)
        if self.cell_units:
            shown = _some([f"{k} [{v}]" for k, v in self.cell_units.items()], 5)
            parts.append(f"a unit after the numbers in {len(self.cell_units)} column(s), dropped: {shown}")
        if self.pairs:
            shown = _some([f"{t} + {v}" for t, v in self.pairs], 3)
            parts.append(f"a time column beside each of {len(self.pairs)} tags ({shown}; PI DataLink's "
                         "compressed data): one row per time of any tag, each tag's value held until its next one")
        if self.quality:
            shown = _some([f"{k} [{v}]" for k, v in self.quality.items()], 4)
            parts.append(f"a quality column beside {len(self.quality)} value column(s) (a value of bad quality is a "
                         f"blank; qualities are not features): {shown}")
        renamed = {new: old for new, old in self.renamed.items() if new not in self.quality.values()}
        if renamed:
            parts.append("renamed: " + ", ".join(f"'{old}' -> '{new}'" for new, old in renamed.items()))
        return "; ".join(parts)

    def number(self, cell: str, column: str) -> float:
        """A cell of ``column`` as :func:`parse_number` reads it in this file (its marks and its unit)."""
        return parse_number(cell, self.decimal, self.thousands, self.cell_units.get(column))

    def time_text(self, row: Sequence[str]) -> str:
        """The time cell of ``row`` (the date and the time of day joined when they are two columns); '' if none."""
        if self.time_column is None:
            return ""
        def at(column: str | None) -> str:
            if column is None:
                return ""
            j = self.header.index(column)
            return row[j] if j < len(row) else ""

        return self.joined(at(self.time_column), at(self.date_column), at(self.ms_column))

    @property
    def time_parts(self) -> list[str]:
        """The columns the time is read from: the time column, and its date and milliseconds columns if any."""
        return [c for c in (self.time_column, self.date_column, self.ms_column) if c]

    def not_values(self) -> set[str]:
        """Columns that are parts of the time or a value's quality: never features, never text to report."""
        return set(self.time_parts) | set(self.quality.values())

    def blank_bad(self, row: list[str]) -> list[str]:
        """``row`` with each value whose quality cell says bad made blank (the rule of :func:`quality_is_bad`)."""
        for value, quality in self._quality_at:
            if quality < len(row) and value < len(row) and quality_is_bad(row[quality]):
                row[value] = ""
        return row

    @property
    def _quality_at(self) -> list[tuple[int, int]]:
        return [(self.header.index(v), self.header.index(q)) for v, q in self.quality.items()]

    def joined(self, time: str, date: str = "", ms: str = "") -> str:
        """A time cell with the date column's cell before it and the milliseconds column's after it (if any)."""
        cell = time
        if self.date_column is not None:
            clock = time.strip()
            if DOTTED_CLOCK.match(clock):  # 08.00.00: the clock of Finnish, Italian, Danish exports
                clock = clock.replace(".", ":", 2)
            cell = date.strip() + " " + clock
        if self.ms_column is not None and ms.strip().isdigit() and "." not in cell and int(ms) < 1000:
            cell = f"{cell.strip()}.{int(ms):03d}"
        if self.zone and cell.strip() and not is_missing(cell):
            cell = f"{cell.strip()} {self.zone}"
        if self.elapsed and cell.strip() and not is_missing(cell):
            try:
                cell = repr(float(cell.strip().replace(",", ".")) * self.elapsed + self.origin)  # epoch seconds
            except ValueError:
                try:
                    cell = repr(clock_seconds(cell) * self.elapsed + self.origin)  # 25:10 since the start
                except ValueError:
                    pass  # unreadable, as any time cell that is not a time
        return cell


def _some(items: list[str], n: int) -> str:
    """The first ``n`` items, and ``...`` when there are more: a description stays one line for a file of 300 tags."""
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")
