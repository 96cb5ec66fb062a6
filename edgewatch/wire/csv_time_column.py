"""Which column of a CSV export holds the time, told by its cells: dates, epoch numbers, times of day beside dates,
milliseconds in a column of their own, a zone in the column's name.

:mod:`csv_sniff` tries names first (:data:`csv_header.TIME_NAMES`), then these
tests of the cells; the pairs of :mod:`csv_tag_columns` use them too.

NumPy and the standard library only: the agent may import this module.
"""

from __future__ import annotations

import math
import re

from edgewatch.wire.csv_cells import present_cells
from edgewatch.wire.csv_header import TIME_NAME_PARTS, plain_name
from edgewatch.wire.csv_layout import CsvLayout
from edgewatch.wire.csv_times import DOTTED_CLOCK, TIME_OF_DAY, clock_seconds, parse_time


EPOCH_RANGE = (1e8, 1e19)  # numbers read as epoch seconds, ms, us or ns: from 1973
MS_NAMES = ("millitm", "ms", "msec", "millis", "millisecond", "milliseconds")  # compared plainly
# seconds per unit of a column of elapsed time, by the unit its name gives (``Time [ms]``, ``t (s)``, ``Time_ms``)
ELAPSED_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0, "secs": 1.0,
                 "seconds": 1.0, "min": 60.0, "mins": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0,
                 "hours": 3600.0}
_ELAPSED_NAME = re.compile(r"^(?P<name>.*?)[\s_]*(?:[\[(]\s*(?P<bracket>[a-zµ]+)\s*[\])]|[\s_](?P<suffix>[a-zµ]+))$",
                           re.IGNORECASE)
_NAMED_ZONE = re.compile(r"\b(UTC|GMT)\s*(?:([+-])\s*(\d{1,2})(?::?(\d{2}))?)?(?![\w+-])", re.IGNORECASE)


def looks_like_times(cells: list[str]) -> bool:
    present = present_cells(cells)
    if not present:
        return False
    for c in present:
        try:
            float(c)
            return False  # plain numbers are values unless the column is named like a time
        except ValueError:
            pass
    return all(math.isfinite(parse_time(c)) for c in present)


def are_epochs(cells: list[str]) -> bool:
    present = present_cells(cells)
    try:
        values = [float(c) for c in present]
    except ValueError:
        return False
    return bool(values) and all(EPOCH_RANGE[0] <= v <= EPOCH_RANGE[1] for v in values)


ELAPSED_WORDS = ("elapsed", "duration", "runtime", "laufzeit", "dauer")  # a name that says the time since a start


def _elapsed_clock(name: str, cells: list[str]) -> bool:
    """A column of ``h:mm[:ss]`` counting from the start of a run: named so (``Elapsed Time``, ``Duration``),
    or named a time and running past 24 hours; either way never falling. A time of day is neither."""
    plain = plain_name(name)
    try:
        seconds = [clock_seconds(c) for c in present_cells(cells)]
    except ValueError:
        return False
    if len(seconds) < 2 or len(set(seconds)) < 2 or any(b < a for a, b in zip(seconds, seconds[1:])):
        return False
    return any(w in plain for w in ELAPSED_WORDS) or (any(p in plain for p in TIME_NAME_PARTS)
                                                     and seconds[-1] >= 86400.0 and seconds[0] < 86400.0)


def elapsed_unit(name: str, cells: list[str]) -> float:
    """Seconds per unit of a column of elapsed time, 0.0 when it is not one.

    A drive's trace, a data acquisition system or a test bench writes the
    time since the recording started: ``Time [ms]`` 0, 100, 200... Such a
    column is named a time with a unit (``Time [ms]``, ``t (s)``,
    ``Time_ms``) and holds numbers that start under the epoch numbers'
    range (below 0 too: a trace's pre-trigger part) and never fall; or it
    holds ``h:mm[:ss]`` since the start (:func:`_elapsed_clock`: a kiln
    controller's ``Elapsed Time`` 0:00 to 29:59, left out as text before).
    Before, it was no time column: a regular one was left out as a counter
    and the report gave no durations (a 100-ms trace: "6 false episodes in
    the held-out last 18,000 rows"); an irregular one became a rising
    feature.
    """
    if _elapsed_clock(name, cells):
        return 1.0  # h:mm:ss, read as seconds (CsvLayout.joined)
    m = _ELAPSED_NAME.match(name.strip())
    if not m:
        return 0.0
    base = plain_name(m.group("name"))
    seconds = ELAPSED_UNITS.get((m.group("bracket") or m.group("suffix") or "").lower(), 0.0)
    if not seconds or not (base == "t" or any(part in base for part in TIME_NAME_PARTS)):
        return 0.0
    try:
        values = [float(c.strip().replace(",", ".")) for c in present_cells(cells)]
    except ValueError:
        return 0.0
    rising = all(b >= a for a, b in zip(values, values[1:])) and len(set(values)) > 1
    return seconds if rising and abs(values[0]) < EPOCH_RANGE[0] else 0.0  # from -500 ms: a trace's pre-trigger


START_WORDS = ("start", "trigger", "begin", "recorded", "aufzeichnung", "beginn")  # a line giving a recording's time


def recording_start(lines: list[list[str]]) -> tuple[float, str] | None:
    """(epoch seconds, the line's text) of a recording's start, from the lines above the header: a line naming
    a start (``Trigger time;07.12.2026 10:14:33.123``, ``Start: 2026-11-03 07:12``) and holding a date and
    time; None when no line does. Elapsed times are then counted from it, and alerts carry plant times
    instead of times from 1970."""
    for row in lines:
        text = " ".join(c.strip() for c in row if c.strip())
        if not any(w in text.lower() for w in START_WORDS):
            continue
        parts = [c.strip() for c in row] + [c.split(":", 1)[1].strip() for c in row if ":" in c]
        for part in parts:
            ts = parse_time(part) if part and not part.replace(".", "").replace(",", "").isdigit() else math.nan
            if math.isfinite(ts) and abs(ts) >= EPOCH_RANGE[0]:
                return ts, text
    return None


def are_times_of_day(cells: list[str], name: str = "") -> bool:
    """Times of day: ``08:00:00``, or ``08.00.00`` in a column named a time, not a date (``01.05.24`` is a date)."""
    present = present_cells(cells)
    if present and all(TIME_OF_DAY.match(c.strip()) for c in present):
        return True
    plain = plain_name(name)
    return (bool(present) and any(w in plain for w in ("time", "zeit", "uhr", "tid", "ora", "hora"))
            and not any(w in plain for w in ("date", "datum", "dato", "data", "fecha"))
            and all(DOTTED_CLOCK.match(c.strip()) for c in present))


def are_dates_only(cells: list[str]) -> bool:
    present = present_cells(cells)
    return bool(present) and all(":" not in c for c in present) and looks_like_times(present)


def find_ms_column(layout: CsvLayout, columns: dict[str, list[str]]) -> str | None:
    """A column of whole milliseconds 0..999 right after a time written to the second (FactoryTalk's
    ``Millitm``); elsewhere a column named ``ms`` may be a measurement."""
    times = present_cells(columns[layout.time_column]) if layout.time_column else []
    if not times or any("." in t for t in times) or not all(":" in t for t in times):
        return None
    at = layout.header.index(layout.time_column) + 1 if layout.time_column else len(layout.header)
    name = layout.header[at] if at < len(layout.header) else ""
    cells = present_cells(columns[name]) if plain_name(name) in MS_NAMES else []
    return name if cells and all(c.strip().isdigit() and int(c) < 1000 for c in cells) else None


def zone_of(name: str) -> str:
    """The zone a time column's name gives: ``Time (UTC+01:00)`` -> ``UTC+01:00``, ``Timestamp [UTC]``,
    ``TimeStampUTC`` -> ``UTC``; '' when it names none (zone names such as CET are not read: exports
    labelled so often mean local time with summer time)."""
    m = _NAMED_ZONE.search(name.replace("_", " ")) or _NAMED_ZONE.search(re.sub(r"(?i)(utc|gmt)", r" \1", name))
    if not m:
        return ""
    _, sign, hours, minutes = m.groups()
    return "UTC" + (f"{sign}{int(hours):02d}:{minutes or '00'}" if sign else "")
