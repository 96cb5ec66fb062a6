"""The times plants write in a CSV file, as epoch seconds: the formats, the date order, the clock changes.

Read here: ISO 8601 (``2020-03-09 10:14:33``, ``T``, fractions after ``.``
or ``,``, ``Z`` or an offset; none means UTC), a zone name of
:data:`ZONE_HOURS` after the time (``UTC``, ``CEST``, ``EST``),
``UTC+01:00`` or ``GMT-5`` after the time (a time column's header may
name it: :mod:`csv_layout` appends it), ``2020/03/09 …``, ``2020.03.09 …``,
numeric dates with the day or the month first (``09.03.2020``,
``13/03/2024``, ``03/13/2024 11:59:59 PM``, a two-digit year is 20xx), English month names (``04-Mar-2024``; Java's
``Mon Mar 04 08:00:00 CET 2024``), or numbers as epoch seconds (above
1e11 milliseconds, 1e14 microseconds, 1e17 nanoseconds: each bound, read
in the coarser unit, is the year 5138), or as Excel's serial days when a
whole column is (:func:`is_excel_days`). A date and a time of day in two
columns are joined by the caller before parsing. An unreadable time is NaN.

``13/03/2024`` is day-first and ``03/13/2024`` month-first whatever the
caller says; only a date whose two first fields are both 12 or less needs
:class:`DateOrder`, which :mod:`csv_sniff` decides once per file.
"""

from __future__ import annotations

import enum
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

import numpy as np

MS_EPOCH_ABOVE = 1e11  # a number time above this is epoch milliseconds
EPOCH_UNITS = ((1e17, 1e9), (1e14, 1e6), (MS_EPOCH_ABOVE, 1e3))  # above: nanoseconds, microseconds, milliseconds
EXCEL_DAYS = (20000.0, 80000.0)  # a time column of numbers all in this range is Excel's serial days (1954..2119)
EXCEL_EPOCH_DAY = 25569.0  # Excel's serial day of 1970-01-01
FALL_BACK = (-3660.0, -1800.0)  # a step back by this much in naive local times is a daylight-saving change
CHANGE_SLACK = 60.0  # s: a step off the sampling step by an hour, within this, is a clock change (at night)
CHANGE_HOURS = (23, 0, 1, 2, 3)  # wall-clock hours a repeated or skipped hour starts in (00:00 to 03:00 zones)


class DateOrder(str, enum.Enum):
    DAY_FIRST = "day-first"  # 13/03/2024: most of the world
    MONTH_FIRST = "month-first"  # 03/13/2024: the US


_NUMERIC_DATE = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4}|\d{2})"
                           r"(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?\s*([AaPp])\.?[Mm]\.?)?$")
_NUMERIC_DATE_24H = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4}|\d{2})"
                               r"(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?$")
_MONTH_NAME = re.compile(r"^(\d{1,2})[- ]([A-Za-z]{3})[a-z]*[- ,]+(\d{4})"
                         r"(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?$")
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                           "nov", "dec"))}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_JAVA_DATE = re.compile(r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}:\d{2}:\d{2})\s+"
                        r"([A-Z]{3,4})\s+(\d{4})$")  # Java's Date.toString(): Mon Mar 04 08:00:00 CET 2024
# zone names with one meaning; CST (US or China), BST (UK or Bangladesh), IST (India, Ireland, Israel) are not read
ZONE_HOURS = {"UTC": 0, "GMT": 0, "WET": 0, "WEST": 1, "CET": 1, "CEST": 2, "MEZ": 1, "MESZ": 2, "EET": 2,
              "EEST": 3, "MSK": 3, "JST": 9, "KST": 9, "AEST": 10, "AEDT": 11, "EST": -5, "EDT": -4, "MST": -7,
              "MDT": -6, "PST": -8, "PDT": -7}
# ... 08:00:00 UTC+01:00, or after AM/PM: HOBOware writes "Date Time, GMT-05:00" over "11/01/26 01:00:00 PM"
_UTC_OFFSET = re.compile(r"^(.*(?:\d|[AaPp]\.?[Mm]\.?))\s*(?:UTC|GMT)(?:([+-])(\d{1,2})(?::?(\d{2}))?)?$")
_ZONE_NAME = re.compile(r"^(.*(?:\d|[AaPp]\.?[Mm]\.?))\s*\b([A-Z]{3,4})$")
_ZONED = re.compile(r"(?:Z|[+-]\d{2}:?\d{2}|(?:UTC|GMT)[+-]\d{1,2}(?::?\d{2})?|\s(?:" + "|".join(ZONE_HOURS) + "))$")
_COMMA_FRACTION = re.compile(r"(:\d{2}),(\d+)")  # 08:00:00,250 (ISO allows the comma)
TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s*[AaPp]\.?[Mm]\.?)?$")
DOTTED_CLOCK = re.compile(r"^([01]?\d|2[0-3])\.[0-5]\d\.[0-5]\d(?:\.\d+)?$")  # 08.00.00 (or 08.00.00.250)


_CLOCK = re.compile(r"^(\d+):([0-5]\d)(?::([0-5]\d(?:[.,]\d+)?))?$")  # 25:10, 0:00:01.5: hours past 24 allowed


def clock_seconds(cell: str) -> float:
    """``h:mm`` or ``h:mm:ss`` as seconds (hours past 24 allowed: a kiln's firing of 30 h); ValueError if not."""
    m = _CLOCK.match(cell.strip())
    if not m:
        raise ValueError(f"{cell!r}: not h:mm[:ss]")
    return int(m.group(1)) * 3600.0 + int(m.group(2)) * 60.0 + float((m.group(3) or "0").replace(",", "."))


def _iso(y: int, mo: int, d: int, hh: str | None, mm: str | None, ss: str | None, frac: str | None,
         half: str | None) -> str:
    hour = int(hh or 0)
    if half:
        if not 1 <= hour <= 12:
            raise ValueError("an AM/PM hour is 1..12")
        hour = hour % 12 + (12 if half.lower() == "p" else 0)
    if y < 100:
        y += 2000
    return f"{y:04d}-{mo:02d}-{d:02d}T{hour:02d}:{mm or '00'}:{ss or '00'}{frac or ''}"


def _rewrite(text: str, order: DateOrder) -> str:
    """A date written another way than ISO, rewritten as ISO; ValueError when it cannot be."""
    text = _COMMA_FRACTION.sub(r"\1.\2", text)
    java = _JAVA_DATE.match(text)
    if java:
        mon, day, clock, zone, year = java.groups()
        text = f"{day}-{mon}-{year} {clock} {zone}"
    offset = _UTC_OFFSET.match(text)
    if offset:
        head, sign, hours, minutes = offset.groups()
        return _rewrite(head, order) + f"{sign or '+'}{int(hours or 0):02d}:{minutes or '00'}"
    zone = _ZONE_NAME.match(text)
    if zone:
        if zone.group(2) not in ZONE_HOURS:
            raise ValueError(f"time zone {zone.group(2)!r} not known")
        hours = ZONE_HOURS[zone.group(2)]
        return _rewrite(zone.group(1), order) + f"{'+' if hours >= 0 else '-'}{abs(hours):02d}:00"
    m = _NUMERIC_DATE.match(text) or _NUMERIC_DATE_24H.match(text)
    if m:
        groups = m.groups()
        a, sep, b, y = int(groups[0]), groups[1], int(groups[2]), int(groups[3])
        day_first = sep == "." or a > 12 or (b <= 12 and order is DateOrder.DAY_FIRST)
        d, mo = (a, b) if day_first else (b, a)
        half = groups[8] if len(groups) > 8 else None
        return _iso(y, mo, d, groups[4], groups[5], groups[6], groups[7], half)
    m = _MONTH_NAME.match(text)
    if m:
        d, name, y, hh, mm, ss, frac = m.groups()
        mo = _MONTHS.get(name.lower())
        if mo is None:
            raise ValueError("not a month")
        return _iso(int(y), mo, int(d), hh, mm, ss, frac, None)
    if len(text) >= 10 and text[4] == text[7] and text[4] in "/.":  # 2020/03/09, 2024.03.04
        return text[:4] + "-" + text[5:7] + "-" + text[8:]
    return text


def parse_time(cell: str, order: DateOrder = DateOrder.DAY_FIRST, excel_days: bool = False) -> float:
    """One time cell as epoch seconds (the formats of the module docstring); NaN when unreadable.

    ``excel_days``: a number is Excel's serial day (45355.5 = 2024-03-04
    12:00), as :func:`is_excel_days` decides for a whole column.
    """
    text = cell.strip()
    if not text:
        return math.nan  # "NaN" is NaN below; "null", "-" and other blanks fail to parse: NaN too
    if excel_days:
        text = text.replace(",", ".")  # a European Excel writes 45355,5
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            return math.nan
        if excel_days:
            return (value - EXCEL_EPOCH_DAY) * 86400.0
        return float(epoch_seconds(np.array([value]))[0])
    try:
        dt = datetime.fromisoformat(_rewrite(text, order).replace("Z", "+00:00"))
    except ValueError:
        return math.nan
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return dt.timestamp()
    except (OverflowError, OSError, ValueError):
        return math.nan


def parse_times(cells: Sequence[str], order: DateOrder = DateOrder.DAY_FIRST, excel_days: bool = False
                ) -> np.ndarray:
    """A column of time cells as epoch seconds; a vectorised path for plain ISO times, else one by one."""
    if not cells:
        return np.zeros(0)
    try:
        numbers = np.array([c.replace(",", ".") for c in cells] if excel_days else cells, dtype=np.float64)
    except ValueError:
        pass
    else:
        numbers[~np.isfinite(numbers)] = math.nan
        if excel_days:
            return (numbers - EXCEL_EPOCH_DAY) * 86400.0
        return epoch_seconds(numbers)
    if not _ISO_DATE.match(cells[0].strip()):
        return np.array([parse_time(c, order, excel_days) for c in cells], dtype=np.float64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (and drops it) on a zone suffix: take the slow path
            stamps = np.array([c.strip() for c in cells], dtype="datetime64[us]")
        if np.isnat(stamps).any():
            raise ValueError("missing times")
        return stamps.astype(np.int64).astype(np.float64) / 1e6
    except (ValueError, TypeError, UserWarning, DeprecationWarning):
        return np.array([parse_time(c, order, excel_days) for c in cells], dtype=np.float64)


def epoch_seconds(numbers: np.ndarray) -> np.ndarray:
    """Epoch numbers as seconds: above 1e17 nanoseconds (InfluxDB 1.x, pandas), above 1e14 microseconds,
    above 1e11 milliseconds (JavaScript, Grafana, Node-RED); each bound, read in the coarser unit, is the year 5138."""
    out = numbers.astype(np.float64, copy=True)
    size = np.abs(out)
    for above, per_second in EPOCH_UNITS:
        hit = size > above
        out[hit] = numbers[hit] / per_second
        size[hit] = 0.0
    return out


def is_excel_days(cells: Sequence[str]) -> bool:
    """Numbers all within :data:`EXCEL_DAYS`, not all whole: Excel's serial date-times (a time column left in
    "General" format). As epoch seconds they would all fall on 1970-01-01, a row every second or less apart."""
    try:
        values = [float(c.strip().replace(",", ".")) for c in cells if c.strip()]
    except ValueError:
        return False
    return (bool(values) and all(EXCEL_DAYS[0] <= v <= EXCEL_DAYS[1] for v in values)
            and any(v != int(v) for v in values))


def sniff_date_order(cells: Iterable[str]) -> DateOrder | None:
    """Day- or month-first from the cells: a first field over 12 is a day, a second over 12 is one; else the
    order in which the file's successive dates lie closer together (:func:`_order_by_sequence`); None: undecided.

    Only ``/`` and ``-`` dates are undecided: a dotted date is day-first
    (``09.03.2020``) and ISO is year-first.
    """
    dates: list[tuple[int, int, int]] = []  # distinct dates, as first seen
    for cell in cells:
        m = _NUMERIC_DATE.match(cell.strip()) or _NUMERIC_DATE_24H.match(cell.strip())
        if not m or m.group(2) == ".":
            continue
        if int(m.group(1)) > 12:
            return DateOrder.DAY_FIRST
        if int(m.group(3)) > 12:
            return DateOrder.MONTH_FIRST
        date = (int(m.group(1)), int(m.group(3)), int(m.group(4)))
        if (not dates or dates[-1] != date) and len(dates) < SEQUENCE_DATES and date not in dates[-3:]:
            dates.append(date)
    return _order_by_sequence(dates)


SEQUENCE_DATES = 400  # distinct dates compared for the order


def _order_by_sequence(dates: list[tuple[int, int, int]]) -> DateOrder | None:
    """The order under which the days a log runs through follow each other (4, 5, 6 March rather than 3 April,
    3 May, 3 June): the total of the steps between successive distinct dates, at most half the other's."""
    if len(dates) < 2:
        return None
    totals = {}
    for order in DateOrder:
        days = []
        for a, b, y in dates:
            d, mo = (a, b) if order is DateOrder.DAY_FIRST else (b, a)
            try:
                days.append(datetime(y + 2000 if y < 100 else y, mo, d).toordinal())
            except ValueError:
                return None
        totals[order] = sum(abs(x - w) for w, x in zip(days, days[1:]))
    first, second = sorted(totals, key=totals.__getitem__)
    return first if 2 * totals[first] <= totals[second] else None


def needs_date_order(cells: Sequence[str]) -> bool:
    """Whether the cells hold ``/`` or ``-`` dates with the day and month in either order."""
    return any((m := _NUMERIC_DATE.match(c.strip()) or _NUMERIC_DATE_24H.match(c.strip())) and m.group(2) != "."
               for c in cells)


def has_half_day(cells: Sequence[str]) -> bool:
    """AM/PM times: the US writes the month first, so an undecided date order is month-first."""
    return any(re.search(r"\d\s*[AaPp]\.?[Mm]\.?$", c.strip()) for c in cells)


def is_naive(cells: Sequence[str]) -> bool:
    """Times written without a zone (local wall-clock times, read as UTC): a daylight-saving change shows in them."""
    present = [c.strip() for c in cells if c.strip()]
    if not present:
        return False
    try:
        float(present[0])
        return False  # epoch numbers
    except ValueError:
        return not any(_ZONED.search(c) or _JAVA_DATE.match(c) for c in present)


class LocalClock:
    """Naive local times made to run on through a daylight-saving fall-back, row by row.

    When the clocks go back an hour, a wall-clock export repeats that hour;
    read as UTC its times step back by an hour less one sampling step.
    Sorting would interleave the two hours, and the agent would take the
    second as late messages. Each such step back (30 to 61 minutes) adds an
    hour to every later time, so the times run on. At hourly sampling the
    step back is none: the row after the previous step of an hour carries
    the same time. That is taken as the repeat only at night
    (:data:`CHANGE_HOURS`) and only when each time has one row
    (``one_row_per_time``; a long export has a row per tag at each time,
    and a file that repeated a time before is taken to write some times
    twice), so a row written twice at noon stays a repeated time. A spring-forward
    leaves a jump of an hour more than the step before; it needs no shift
    (the rows are one stretch in true time) and is recorded, so that
    ``fit`` does not cut the data there as at a shutdown. Fails to notice a
    change hidden in a gap of the data.
    """

    def __init__(self, one_row_per_time: bool = True) -> None:
        self.one_row_per_time = one_row_per_time
        self.shift = 0.0
        self.last = math.nan
        self.step = math.nan  # the last step forward, in the times as read
        self.repeats = False  # a time came twice that was not a clock change
        self.changes = 0
        self.fall_backs: list[float] = []  # wall-clock start of each repeated hour, as read
        self.spring_forwards: list[tuple[float, float]] = []  # (first time after it as returned, wall-clock start)

    def __call__(self, ts: float) -> float:
        if not math.isfinite(ts):
            return ts
        t = ts + self.shift
        d = t - self.last
        if math.isfinite(self.last) and (FALL_BACK[0] <= d <= FALL_BACK[1] or self._hourly_repeat(ts, d)):
            self.shift += 3600.0
            self.changes += 1
            self.fall_backs.append(ts)
            t += 3600.0
        elif self.one_row_per_time and d > 3600.0 and abs(d - 3600.0 - self.step) <= CHANGE_SLACK \
                and _night(ts - 3600.0):
            self.spring_forwards.append((t, ts - 3600.0))
        elif d == 0:
            self.repeats = True
        if d > 0:
            self.step = d
        self.last = t
        return t

    def _hourly_repeat(self, ts: float, d: float) -> bool:
        """A repeat at a sampling step too long for a step back in :data:`FALL_BACK` (an hour: no step back)."""
        return (self.one_row_per_time and not self.repeats and FALL_BACK[1] < d <= 0.0
                and abs(d + 3600.0 - self.step) <= CHANGE_SLACK and _night(ts))

    def run_on(self, times: np.ndarray) -> np.ndarray:
        """A whole column through :meth:`__call__` (a loop only when some step could be a change)."""
        finite = times[np.isfinite(times)]
        d = np.diff(finite)
        maybe = (d >= FALL_BACK[0]) & (d <= FALL_BACK[1])
        if self.one_row_per_time and d.size > 1:
            maybe[1:] |= np.abs(np.abs(d[1:] - d[:-1]) - 3600.0) <= CHANGE_SLACK
        if not maybe.any():
            if finite.size:
                self.last = float(finite[-1]) + self.shift
                self.step = float(d[d > 0][-1]) if (d > 0).any() else self.step
            return times + self.shift
        return np.array([self(float(t)) for t in times], dtype=np.float64)


def _night(ts: float) -> bool:
    """A wall-clock time (read as UTC) in an hour when clocks change."""
    return int(ts % 86400.0 // 3600.0) in CHANGE_HOURS
