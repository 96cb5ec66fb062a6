"""How a CSV export is written, found from the file (:func:`sniff_layout`): the findings of the csv_* modules
tied together in one :class:`CsvLayout`.

The order matters and lives only here: the separator before the header,
the header before the unit rows, the marks before the quality columns,
the time column before the table's end and the date order.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from edgewatch.errors import BadInput
from edgewatch.wire.csv_cells import present_cells, units_in_cells, unwrapped, without_units
from edgewatch.wire.csv_files import described, sniff_encoding
from edgewatch.wire.csv_header import (HEAD_LINES, LABEL_NAMES, SAMPLE_LINES, TIME_NAME_PARTS, TIME_NAMES,
                                       columns_of, count_unit_rows, header_at, header_names, is_comment,
                                       logger_names, names_row,
                                       plain_name, read_lines, split_rows)
from edgewatch.wire.csv_layout import CsvLayout
from edgewatch.wire.csv_marks import DECIMALS, sniff_decimal, told_marks, with_marks
from edgewatch.wire.csv_rows import find_table_end, iter_rows
from edgewatch.wire.csv_tag_columns import as_pairs, named_after_tags, quality_columns
from edgewatch.wire.csv_time_column import (are_dates_only, are_epochs, are_times_of_day, elapsed_unit, find_ms_column,
                                            looks_like_times, recording_start, zone_of)
from edgewatch.wire.csv_times import (DateOrder, has_half_day, is_excel_days, is_naive, needs_date_order,
                                      sniff_date_order)


SEPARATORS = (",", ";", "\t", "|")
_SEP_LINE = re.compile(r'^"?sep=(.)"?$', re.IGNORECASE)  # Excel's first line naming the separator


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
    or ``,``; fit's ``--decimal``, the replay's ``?decimal=``) is the decimal mark,
    for a file whose numbers cannot tell (``1.234`` only); the other mark
    then groups thousands. Fails with :class:`BadInput` when the file is
    missing or empty, lacks the time column it was told to use (the
    message lists the columns it has), or holds a number the given
    decimal mark cannot read (the message names it and its line).
    """
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
    written = header
    header, named_units, names_note = logger_names(header)
    if names_note:
        units = {name: units[old] or named_units.get(name, "") for name, old in zip(header, written)}
        cell_units = {header[written.index(k)]: u for k, u in cell_units.items()}
    body = body[n_units:]
    columns = columns_of(header, body)
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
        if chosen is None:  # Time [ms]: the time since a trace started
            chosen = next((name for name in header if elapsed_unit(name, columns[name])), None)
        if chosen is None:
            chosen = next((name for name in header if name not in labels and looks_like_times(columns[name])), None)
            named = chosen is None
    date_column = None
    if chosen is not None and not elapsed_unit(chosen, columns[chosen]):  # 25:10 since a start is no time of day
        if are_times_of_day(columns[chosen], chosen):
            date_column = next((n for n in header if n != chosen and are_dates_only(columns[n])), None)
        elif are_dates_only(columns[chosen]):
            clock = next((n for n in header if n != chosen and are_times_of_day(columns[n], n)), None)
            if clock is not None:
                chosen, date_column = clock, chosen
    units = {name: text for name, text in units.items() if text and name not in (chosen, date_column)}
    layout = CsvLayout(src, sep, ".", header, chosen, labels, named, encoding, encoding_note, h,
                       n_units, units, None, date_column, renamed=renamed, packed=described(src),
                       cell_units=cell_units, excel_text=excel_text, names_note=names_note,
                       logger="TOA5" if any(r and r[0].strip() == "TOA5" for r in rows[:h]) else
                       "HOBO" if names_note else "")
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
    if elapsed_unit(chosen, columns[chosen]):
        start = recording_start(rows[:h])
        return replace(layout, elapsed=elapsed_unit(chosen, columns[chosen]), origin=start[0] if start else 0.0,
                       origin_line=start[1] if start else "")
    zone = zone_of(chosen) or (zone_of(date_column) if date_column else "")
    unzoned, dates = layout, sample  # the date order is read from the cells as written, before a zone is added
    if zone and is_naive(sample) and not are_epochs(sample):
        layout = replace(layout, zone=zone)
        sample = [layout.time_text(r) for r in body]
    layout = replace(layout, naive_times=is_naive(sample))
    if not needs_date_order(dates):
        return layout
    order = sniff_date_order(dates)
    if order is None:
        order = sniff_date_order(unzoned.time_text(r) for _, r in iter_rows(unzoned))  # the sample did not tell
    if order is None:
        return replace(layout, date_order=DateOrder.MONTH_FIRST if has_half_day(dates) else DateOrder.DAY_FIRST,
                       date_order_guessed=True)
    return replace(layout, date_order=order)
