"""What one cell of a plant's CSV export holds: a number, a missing value, a unit after it, a quality.

One cell is read the same way wherever it is met: by :mod:`csv_sniff`
when it looks at the first lines, by :mod:`csv_table` when it converts a
column, and by the agent's row assembler (:data:`MISSING`), so that
``-``, ``Bad Input`` or Excel's ``#DIV/0!`` mean "no value" everywhere.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

import math
import re

import numpy as np


# what an instrument or its logger writes for a value beyond its range (PI's "Over Range"/"Under Range", a
# recorder's "+Over"/"-Over"): no number to score, so a blank held from the last value, as fit
# fills it and a live source holds a sensor between its messages; counted apart (OUT_OF_RANGE_EXAMPLE) so fit's
# report says the sensor saturates. Before, fit held them as text in a number column while the replay dropped
# every row holding one (not_number: 406 rows of a 4-h conveyor day whose belt scale saturates, unseen)
OUT_OF_RANGE = frozenset({"over range", "under range", "overrange", "underrange", "over-range", "under-range",
                          "+over", "-over", "+ over", "- over", "+overrange", "-overrange"})
# not a handheld meter's "OL": in a plant's export it is as likely a motor starter's state (overload tripped), which
# held over as a blank would hide
# "no value" (compared in lower case): blanks, and the states historians write in a number cell when the sensor
# gave none (OSIsoft PI's system digital states, Home Assistant's unavailable/unknown).
NO_VALUE_STATES = frozenset({"bad", "bad input", "i/o timeout", "shutdown", "calc failed", "calc timeout",
                             "comm fail", "scan off", "scan timeout", "no data", "no sample", "no result",
                             "pt created", "out of serv", "intf shut", "not connect", "unavailable", "unknown"})
# Excel's error values, in a column computed by a formula (a ratio at a standstill: #DIV/0!)
EXCEL_ERRORS = frozenset({"#div/0!", "#value!", "#ref!", "#name?", "#num!", "#null!", "#spill!", "#calc!",
                          "#getting_data"})
MISSING = (frozenset({"", "nan", "null", "none", "na", "n/a", "#n/a", "-", "?"}) | NO_VALUE_STATES | EXCEL_ERRORS
           | OUT_OF_RANGE)
DISTINCT_TEXTS = 50  # distinct text cells kept per column (a tag name column of a long export, a state column)
GROUPED = {",": re.compile(r"^[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$"),  # 1,234.5: thousands ',' decimal '.'
           ".": re.compile(r"^[+-]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d+)?$"),  # 1.234,5: thousands '.' decimal ','
           "'": re.compile(r"^[+-]?[1-9]\d{0,2}(?:'\d{3})+(?:\.\d+)?$")}  # 1'234.5: Switzerland's thousands mark
# 4.21 bar, 45 %; never an exponent ("1.2034e+05", a totaliser written with %g, is a number, not 1.2034 "e+05")
_CELL_UNIT = re.compile(r"^([+-]?\d[\d.,]*(?:[eE][+-]?\d+)?)\s*(?![eE][+-]?\d+$)([^\d\s:/.,+-][^:]{0,11})$")
OPC_UA_BAD = 0x80000000  # OPC UA status codes: the two top bits 10 are Bad (0 is Good)


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def present_cells(cells: list[str]) -> list[str]:
    return [c for c in cells if not is_missing(c)]


def parse_number(cell: str, decimal: str = ".", thousands: str | None = None, unit: str | None = None) -> float:
    """One cell as a float: NaN when missing; ValueError when it is text.

    With a ``thousands`` mark, ``1,234.5`` (or ``1.234,5``) is read only
    when its groups are of three digits; ``1,2345`` stays text. With a
    ``unit``, a cell written ``4.21 bar`` is read as 4.21.
    """
    text = cell.strip()
    if text.lower() in MISSING:
        return math.nan
    text = without_unit(text, unit)
    if thousands is not None and thousands in text:
        if not GROUPED[thousands].match(text):
            raise ValueError(f"{text!r}: not a number grouped by {thousands!r}")
        text = text.replace(thousands, "")
    if decimal == ",":
        text = text.replace(",", ".")
    return float(text)


def is_number(cell: str, decimal: str = ".", thousands: str | None = None) -> bool:
    try:
        return math.isfinite(parse_number(cell, decimal, thousands))
    except ValueError:
        return False


def mostly_numbers(cells: list[str], decimal: str = ".", thousands: str | None = None) -> bool:
    """Whether at least half of the present cells are numbers: the rule that makes a column numeric (its other
    cells are then bad values, not text), used alike for a value beside its quality, a value beside its own
    time, and the data under a unit row."""
    present = present_cells(cells)
    return bool(present) and sum(is_number(c, decimal, thousands) for c in present) * 2 >= len(present)


def is_out_of_range(cell: str) -> bool:
    return cell.strip().lower() in OUT_OF_RANGE


def numeric_column(cells: list[str], decimal: str, thousands: str | None = None,
                   texts: set[str] | None = None, unit: str | None = None,
                   beyond: dict[str, int] | None = None) -> tuple[np.ndarray, int, int, str | None]:
    """(values, missing cells, bad cells, an example of text) -- fast when the column is clean.

    ``texts`` collects the distinct text cells, up to ``DISTINCT_TEXTS``;
    ``beyond`` counts the out-of-range marks (``+Over``: missing cells too) by their text.
    """
    if decimal == "." and not unit:
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
            v = parse_number(cell, decimal, thousands, unit)
        except ValueError:
            values[i] = math.nan
            bad += 1
            example = example or cell.strip()
            if texts is not None and len(texts) < DISTINCT_TEXTS:
                texts.add(cell.strip())
            continue
        if not math.isfinite(v):
            missing += 1
            v = math.nan
            if beyond is not None and is_out_of_range(cell):
                beyond[cell.strip()] = beyond.get(cell.strip(), 0) + 1
        values[i] = v
    return values, missing, bad, example


def units_in_cells(header: list[str], body: list[list[str]]) -> dict[str, str]:
    """Columns whose cells are a number and one same unit (``4.21 bar``, ``45 %``: Grafana's "formatted data")."""
    out: dict[str, str] = {}
    for j, name in enumerate(header):
        present = present_cells([r[j] for r in body if j < len(r)])
        found = [m.group(2).strip() for c in present if (m := _CELL_UNIT.match(c.strip()))]
        if present and len(found) >= 0.9 * len(present) and len(set(found)) == 1:
            out[name] = found[0]
    return out


def without_unit(cell: str, unit: str | None) -> str:
    """``cell`` without the ``unit`` written after its number (``4.21 bar``: ``4.21``), else as it is."""
    text = cell.strip()
    return text[:-len(unit)].rstrip() if unit and text.endswith(unit) else cell


def without_units(header: list[str], body: list[list[str]], units: dict[str, str]) -> list[list[str]]:
    if not units:
        return body
    strip = {j: units[name] for j, name in enumerate(header) if name in units}
    return [[without_unit(c, strip[j]) if j in strip else c for j, c in enumerate(r)] for r in body]


def unwrapped(row: list[str]) -> list[str]:
    """Cells written ``="text"`` (Excel's text formula, which exports use to keep a time or a tag as it is)
    as their text."""
    return [c[2:-1] if c.startswith('="') and c.endswith('"') else c for c in row]


def quality_is_bad(cell: str) -> bool:
    """A quality cell that says the value beside it is not a measurement: ``Bad...`` as text, an OPC DA code
    whose quality bits are 00 (0..63; 192 is good), an OPC UA status code with the Bad bits (0x80000000)."""
    text = cell.strip()
    if not text:
        return False
    if text.isdigit():
        code = int(text)
        return code >= OPC_UA_BAD if code >= 0x40000000 else code < 64
    return text.lower().startswith("bad")


def are_quality_cells(cells: list[str]) -> bool:
    """Cells a quality column holds: Good / Bad / Uncertain (with a detail), or OPC DA or UA codes (192, 0x80...)."""
    present = [c.strip() for c in cells if c.strip()]
    if not present:
        return False
    if all(c.isdigit() for c in present):
        codes = {int(c) for c in present}
        return any(192 <= c < 256 for c in codes) or (all(c == 0 or c >= 0x40000000 for c in codes)
                                                      and any(c >= 0x40000000 for c in codes))
    return all(c.lower().startswith(("good", "bad", "uncertain")) for c in present)
