"""The header of a plant's CSV export: which line it is, its names, and the unit or description rows under it.

Exports put a title or comments above the header, repeat or leave out
names, and write tag names, descriptions and units in rows of their own
under it in any order; :mod:`csv_sniff` asks this module which row names
the columns and how many rows under it are not data.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from edgewatch.wire.csv_cells import is_missing, is_number, mostly_numbers
from edgewatch.wire.csv_files import open_text


SAMPLE_LINES = 64
HEAD_LINES = 16  # lines above the header (an export's title, a "sep=;" line) looked through
MAX_UNIT_ROWS = 3  # rows of units or descriptions under the header
TIME_NAMES = ("timestamp", "time", "ts", "datetime", "date")  # compared without case, spaces or underscores
TIME_NAME_PARTS = ("time", "date", "stamp", "zeit", "datum")  # in a name whose cells are times or epoch numbers
LABEL_NAMES = ("anomaly", "changepoint")
# rows that may be as wide as the header and are never it: InfluxDB 2's annotated CSV; the first line of a Campbell
# Scientific logger's TOA5 file (station, logger, serial, OS, program, signature, table: eight fields, as wide as a
# table of eight columns, whose names then read "RECORD [CT1, RN]")
ANNOTATIONS = ("#group", "#datatype", "#default", "toa5")


def plain_name(name: str) -> str:
    """A column name compared without case, spaces, underscores or dashes (``Time Stamp`` = ``time_stamp``)."""
    return re.sub(r"[\s_\-]", "", name.lower())


def columns_of(header: Sequence[str], rows: list[list[str]]) -> dict[str, list[str]]:
    """The cells under each name of ``header``, column by column (a row too short for a column gives it none)."""
    return {name: [r[j] for r in rows if j < len(r)] for j, name in enumerate(header)}


def read_lines(path: Path, limit: int, encoding: str) -> list[str]:
    out = []
    with open_text(path, encoding) as fh:
        for line in fh:
            if line.strip():
                out.append(line)
            if len(out) >= limit:
                break
    return out


def split_rows(lines: list[str], sep: str) -> list[list[str]]:
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


def row_width(row: list[str]) -> int:
    """Fields up to the last one that is not blank (a separator at the end of a line adds none)."""
    n = len(row)
    while n and not row[n - 1].strip():
        n -= 1
    return n


def is_comment(row: list[str]) -> bool:
    return bool(row) and row[0].lstrip().startswith("#")


def _is_annotation(row: list[str]) -> bool:
    return bool(row) and row[0].strip().lower() in ANNOTATIONS


def header_at(rows: list[list[str]], first: int) -> tuple[int, int, float]:
    """(header row, its width, share of the rows under it as wide): the header is the first row as wide as most.

    Rows above it (an export's title, a "Site: ..." line) and comment rows
    are narrower; a comment row as wide as the data is a header (``#Time``).
    A row found so that holds a number is data under a header too short
    for it: the first row stays the header.
    """
    widths = [0 if _is_annotation(r) else row_width(r) for r in rows[first:]]
    counts: dict[int, int] = {}
    for w in widths:
        counts[w] = counts.get(w, 0) + 1
    mode = max(counts, key=lambda w: (counts[w], w))
    h = next(i for i, w in enumerate(widths) if w >= mode) + first
    if h > first and any(re.match(r"\s*[+-]?\d", c) for c in rows[h]):
        h = first  # the first row as wide as most holds numbers: data under a short header, not under a title
    width = row_width(rows[h])
    below = [r for r in rows[h + 1:] if not is_comment(r)]
    agree = sum(1 for r in below if row_width(r) == width or len(r) == len(rows[h]))
    return h, width, agree / len(below) if below else 1.0


def header_names(row: list[str], body: list[list[str]]) -> tuple[list[str], dict[str, str]]:
    """The header's names: trailing blank columns dropped, other blank names and repeats made unique."""
    names = [h.strip() for h in row]
    if names:
        # "#Time" is Time; "#" alone (HOBOware's row number) keeps its name
        names[0] = (names[0].lstrip("#").strip() or names[0]) if names[0].startswith("#") else names[0]
    while names and not names[-1] and all(len(r) < len(names) or not r[len(names) - 1].strip() for r in body):
        names.pop()
    renamed: dict[str, str] = {}
    seen: set[str] = set(n for n in names if n and names.count(n) == 1)
    for j, name in enumerate(names):
        if name and names.count(name) == 1:
            continue
        base = name or f"column {j + 1}"
        new, k = base, 1
        while new in seen:
            k += 1
            new = f"{base}_{k}"
        seen.add(new)
        if new != name:
            renamed[new] = name
        names[j] = new
    return names, renamed


# HOBOware's column name: "<label>, <unit> (LGR S/N: <n>, SEN S/N: <n>[, LBL: <label>])", or an event's
# "Coupler Detached (LGR S/N: <n>)"
_HOBO_NAME = re.compile(r"^(?P<label>.*?)(?:,\s*(?P<unit>[^,()]+?))?\s*\((?P<ids>LGR S/N:[^()]*)\)$")
_HOBO_LABEL = re.compile(r"\bLBL:\s*(?P<label>[^,]+?)\s*$")


def logger_names(header: list[str]) -> tuple[list[str], dict[str, str], str]:
    """(names, name -> unit, a note) for HOBOware's names: the label alone, its unit apart, the logger's serial
    numbers dropped (``CH1 Current, Amps (LGR S/N: 20812345, SEN S/N: 20812345)`` is ``CH1 Current`` in
    ``Amps``); the header as it is when no name is one, or when two would become one name.

    Why: the serial numbers are the logger's, not the sensor's; they made every report line two names long,
    and a ``/`` inside a name splits an MQTT topic level, so no plant topic could name the feature.
    """
    matches = [_HOBO_NAME.match(n) for n in header]
    if not any(matches):
        return header, {}, ""
    names = []
    for name, m in zip(header, matches):
        label = _HOBO_LABEL.search(m.group("ids")) if m else None
        names.append((label.group("label") if label else m.group("label")).strip() if m else name)
    if not all(names) or len(set(names)) != len(names):
        return header, {}, ""
    units = {names[j]: m.group("unit").strip() for j, m in enumerate(matches) if m and m.group("unit")}
    j = next(j for j, m in enumerate(matches) if m)
    shown = f"{names[j]} [{units[names[j]]}]" if names[j] in units else names[j]
    note = (f"HOBOware's names read as a label and a unit, the logger's serial numbers dropped "
            f"({header[j]!r} is {shown!r})")
    return names, units, note


def count_unit_rows(header: list[str], body: list[list[str]], decimal: str, thousands: str | None) -> int:
    """How many rows under the header name units or describe columns: no number where the data has numbers."""
    k = 0
    while k < MAX_UNIT_ROWS and len(body) > k + 1:
        rest = body[k + 1:]
        numeric = []
        for j in range(len(header)):
            if mostly_numbers([r[j] for r in rest if j < len(r)], decimal, thousands):
                numeric.append(j)
        cells = [body[k][j].strip() if j < len(body[k]) else "" for j in numeric]
        if not numeric or all(is_missing(c) for c in cells) or any(is_number(c, decimal, thousands) for c in cells):
            break
        k += 1
    return k


def names_row(first: list[str], header: list[str], renamed: dict[str, str], cell_units: dict[str, str],
              unit_rows: list[list[str]], body: list[list[str]]
              ) -> tuple[list[str], dict[str, str], dict[str, str], list[list[str]]]:
    """Of the header and the rows of units or descriptions under it, the row that names the time column
    (``Timestamp``) names the columns: exports write tag names, descriptions and units in any order
    (a description row first made the descriptions the features' names). Returns (names, renamed, the units
    written in cells by the new names, the other rows)."""
    rows = [first, *unit_rows]
    k = next((i for i, r in enumerate(rows) if any(plain_name(c) in TIME_NAMES for c in r)), 0)
    if k == 0:
        return header, renamed, cell_units, unit_rows
    names, new_renamed = header_names(rows[k], body)
    names = names[:len(header)] + [f"column {j + 1}" for j in range(len(names), len(header))]
    by_index = {header.index(c): u for c, u in cell_units.items()}
    return names, new_renamed, {names[j]: u for j, u in by_index.items()}, rows[:k] + rows[k + 1:]
