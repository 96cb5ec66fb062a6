"""Rows out of values that arrive one feature at a time, or with gaps: the one row assembler of every source.

Plants rarely send the model's row in one piece. A broker carries one topic
per sensor (``plant/pump-7/Pressure`` with ``12.5`` or ``{"value": 12.5,
"ts": ...}``); a historian's row has a blank where a sensor was not logged;
an OPC UA server only notifies the variables that changed. A
:class:`RowAssembler` keeps, per stream, each feature's last value and its
time, and makes rows out of them by one set of rules:

* **Holding.** A feature missing from a row (no message, ``null``, ``""``,
  ``"NaN"``, a missing key, a blank cell) takes the stream's last value of
  that feature if it is at most ``max_age`` seconds older than the row.
  Otherwise the row is skipped and counted: ``missing_feature`` when the
  feature has never had a value on this stream, ``stale_feature`` when its
  last value is too old (the sensor stopped reporting). An instrument's
  mark for a value beyond its range (``+Over``, ``Under Range``:
  :data:`BEYOND`) is held alike, but it is no silence: the sensor is
  alive and says it is off its range, so the mark refreshes the held
  value's time, and a surge of marks longer than the limit is held
  whole, as ``fit`` and the replay hold it.
* **The staleness limit.** ``max_age`` set on the source (``?max_age=10s``,
  a TOML key) applies to every feature. Unset, each feature may be held for
  :data:`~edgewatch.contract.card.HOLD_STEPS` of *its own* sampling intervals
  (the median of its last :data:`GAP_HISTORY` gaps; before it has two
  values, the step it was logged at in the normal data (the card's
  ``logged_every``) or the stream's row interval, whichever is longer, so a
  60-s temperature's first minute is not stale; a card without
  ``logged_every`` gives the row interval alone; before the stream has made
  two rows, without limit, as ``fit`` fills a blank from the value above):
  one or two lost messages are bridged, a sensor that has missed
  three updates in a row no longer stands for the present, and a slow
  sensor (a temperature every minute beside a pressure every second) is
  held for as long as it normally goes quiet. Rows from a file (the
  replay: ``from_file``) hold a blank as ``fit`` filled it for the model,
  from the column's last value however old (a column that stopped writing
  is left out by ``fit``), unless ``max_age`` is set: a minute's
  temperature beside a second's vibration, or a deadband historian's rows
  written on change, replay whole instead of partly ``stale_feature``
  (a blank in a file is "no new value", not a silent sensor).
* **A backlog is not a faster sensor.** Values without their own ``ts`` are
  timed by arrival, and what a broker kept for the agent's session while
  its link was down arrives at the reconnect within milliseconds. Gaps
  shorter than :data:`BUNCHED` of a feature's interval are not taken one by
  one: the messages that came that close together, with the gap before
  them, make one gap of their time over their number (:class:`Interval`),
  so an hour's backlog of a sensor read every 5 s still measures 5 s, and
  its held value is not called stale in the rows after the burst. A
  sensor that really reports faster is taken after
  :data:`GAP_HISTORY` of its former intervals.
* **When a row is made from single-feature messages** (:meth:`RowAssembler.feature`):
  as soon as every feature has reported since the last row, or when a
  feature reports again before that (its previous value then belongs to
  the row being assembled, which is made first, the features that did not
  report held). So a publisher that sends all its sensors each tick gives
  one row per tick with no delay, and one that lost a message gives the
  row one message later instead of never.
* **Time.** A value's time is its ``ts`` when it carries one, else when the
  source received it (a CSV replay without a time column counts rows). A
  row's time is the newest of its fresh values. A value older than the
  feature's held value arrived out of order: ``stale_feature``, skipped;
  one :data:`CLOCK_WARN_AFTER` or more older than it is a clock set back:
  the stream starts again from it (nothing held), logged.

**States as words.** A model fitted from a text state column carries its
codes (the card's ``states``: ``Run``=1, ``Stop``=0); a state feature's
word is read as its code in any case (:class:`~edgewatch.agent.sources.parsing.StateCells`),
and a word the normal data never held is ``unknown_state``, its held value
dropped.

**Names.** A name on the wire (a key, a topic level) stands for the feature
:class:`~edgewatch.agent.sources.feature_names.FeatureNames` matches it to:
the same name, or the one feature whose name matches ignoring case, spaces,
``_ - . /``, URL escapes and a unit in brackets on one side. Two names of
one feature on one stream feed it with neither (its exact name excepted),
whichever came first: two tags must not take turns in one feature.

**No row for a while.** When a stream's messages have made no row for
:data:`NO_ROW_WARN_AFTER` seconds, the log says which features it lacks
(never received, or too old) and which names it received that are no
feature, once a minute per stream (at most :data:`NO_ROW_WARNINGS` lines a
minute per source): a feed whose names do not match the model is said
within a minute, not only counted.

**Clocks.** A value whose own time is more than :data:`CLOCK_WARN_AFTER`
from its arrival is used as it is, and the log says so (a local time sent
without an offset is read as UTC, and alerts would carry a time hours off).

Streams are kept in least-recently-used order, at most ``max_streams``; the
oldest stream's held values are dropped past that (they are a cache: at
worst its next row needs every feature again).
"""

from __future__ import annotations

import logging
import math
import re
import time
from bisect import bisect, insort
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence

from edgewatch.agent.sources.feature_names import CONTESTED, FeatureNames
from edgewatch.agent.sources.parsing import (DEFAULT_MAX_BYTES, FLOAT32_MAX, META_KEYS, BadReason, Measurement,
                                             StateCells, parse_object, parse_reading, time_keys_beside,
                                             value_keys_beside)
from edgewatch.contract.card import HOLD_STEPS  # a value stands for the present for this many of its feature's steps
from edgewatch.wire.csv_cells import OUT_OF_RANGE  # an instrument's marks for a value beyond its range (+Over)
from edgewatch.wire.csv_table import MISSING as MISSING_TEXT  # what a plant writes for "no value", as fit reads it

GAP_HISTORY = 9  # gaps kept per feature for the median sampling interval
BUNCHED = 0.25  # a gap under this share of the interval: the two values were delivered together, not sampled so
DEFAULT_MAX_STREAMS = 10_000
NO_ROW_WARN_AFTER = 30.0  # seconds of messages without a row before the log says what is lacking
NO_ROW_WARN_EVERY = 60.0  # seconds between two such lines about one stream
NO_ROW_WARNINGS = 10  # such lines a minute per source at most (10,000 broken streams must not flood the log)
CLOCK_WARN_AFTER = 600.0  # seconds between a message's own time and its arrival that are worth a warning
SLOW_FEATURE_RATIO = 3.0  # a feature's sampling interval over the rows' that is worth a warning
MAX_STRANGERS = 20  # names that are no feature, kept per stream for that line
STRANGER_CHARS = 100  # characters kept of each (20 names x 10,000 streams of 64 KiB topic levels would be 13 GB)

log = logging.getLogger("edgewatch.agent.sources")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
# "1,234" is 1234 in an English export and 1.234 in a European one: one to three digits (no leading 0) and a
# comma before exactly three is refused rather than read a thousand times off
_THOUSANDS = re.compile(r"^[+-]?[1-9]\d{0,2},\d{3}$")
# commas that can only separate thousands: two groups or more, or one and a decimal point ("1,234,567", "1,234.5")
_GROUPED = re.compile(r"^[+-]?[1-9]\d{0,2}(?:(?:,\d{3}){2,}(?:\.\d+)?|,\d{3}\.\d+)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class _Missing:
    """The value a message or a cell gives for "no value" (held if it can be)."""


MISSING = _Missing()
# an instrument's mark for a value beyond its range (``+Over``, ``Under Range``: csv_cells.OUT_OF_RANGE): no number,
# so the held value stands for it as for a blank, but the sensor is alive and reporting: the mark is an arrival, and
# the held value's age starts again from it. Why: live, a surge of a minute was held 3 intervals as a silence and its
# rows skipped stale_feature (356 of 14,400 on the eighth walk-through's conveyor), where fit and the replay hold it
# however long. A plain blank ("", "NaN", "-") stays a silence: a gateway sends it when its read failed
BEYOND = _Missing()


def parse_max_age(value: object) -> float | None:
    """``"10s"``, ``"500ms"``, ``"2m"``, ``"1h"`` or a number of seconds; ``"auto"``/None: per-feature default.

    Raises ValueError with the accepted forms for anything else.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"max_age {value!r} is not a duration: write 10s, 500ms, 2m, 1h, a number of "
                             "seconds, or auto")
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"max_age must be a positive duration (got {value!r})")
    return seconds


def cell_value(value: object) -> float | _Missing | BadReason:
    """One feature's value as a plant writes it: a number, a number as text, or "no value" (:data:`MISSING`).

    ``null``, a NaN and the texts a CSV cell is missing with (``""``,
    ``"NaN"``, ``"null"``, ``"NA"``, ``"-"``...) are missing (held); an
    over-range mark (``"+Over"``) is :data:`BEYOND` (held, its age refreshed); a text with one
    comma and no point has a decimal comma (``"12,5"`` is 12.5, ``"0,125"``
    0.125), except where the comma could as well separate thousands
    (``"1,234"``, ``"-12,500"``: ``not_number``, never a value a thousand times
    off; so is ``"1,234.5"``); infinity is
    ``non_finite``, beyond float32 ``overflow``, a bool, text or a nested
    value ``not_number``: the rules of the agent's parser.
    """
    if type(value) is float:
        f = value
    elif value is None:
        return MISSING
    elif isinstance(value, str):
        text = value.strip()
        if text.lower() in MISSING_TEXT:
            return BEYOND if text.lower() in OUT_OF_RANGE else MISSING
        try:
            f = float(text)
        except ValueError:
            if text.count(",") != 1 or "." in text or _THOUSANDS.match(text):
                return BadReason.NOT_NUMBER
            try:  # a decimal comma ("12,5"), as European historians and HMIs write numbers
                f = float(text.replace(",", "."))
            except ValueError:
                return BadReason.NOT_NUMBER
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            f = float(value)
        except OverflowError:
            return BadReason.OVERFLOW
    else:
        return BadReason.NOT_NUMBER
    if math.isnan(f):
        return MISSING
    if math.isinf(f):
        return BadReason.NON_FINITE
    if not -FLOAT32_MAX <= f <= FLOAT32_MAX:
        return BadReason.OVERFLOW
    return f


class Interval:
    """A feature's (or a stream's rows') sampling interval from arrival times, which a delivered backlog leaves be.

    Why not the plain median of the last gaps: after a reconnect the broker
    hands over in milliseconds what it kept, and those gaps would become
    the interval, so a slow sensor's value held a second later would be
    "three intervals" old (measured on mosquitto: 11 rows of 140 counted
    ``stale_feature`` after a 9 s cut). Here a gap under :data:`BUNCHED` of
    the interval known so far joins an open span (the gap before its first
    message and the messages since), which counts as one gap of its time
    over its messages once a gap of ordinary length follows: the backlog's
    count is the sensor's, its time the outage's. In steady operation every
    span is one message and :meth:`median` is the median of the last
    :data:`GAP_HISTORY` gaps, as before. A span longer than
    :data:`GAP_HISTORY` intervals is closed as it is (a sensor set to
    report faster; a backlog that long is taken as one too).
    """

    __slots__ = ("gaps", "oldest", "ordered", "typical", "last", "start", "first", "count")

    def __init__(self) -> None:
        # closed spans, a ring of GAP_HISTORY - 1 (the open span is the last gap): a list, a fifth of a deque's
        # memory, and 10,000 streams of 20 features hold 200,000 of these
        self.gaps: list[float] = []
        self.oldest = 0  # where the ring's oldest gap is, once full
        self.ordered: list[float] = []  # the same, sorted (a median per message, without sorting each time)
        self.typical = math.inf  # the closed spans' median: what a gap is compared with (inf: none closed yet)
        self.last = -math.inf  # the latest arrival (-inf: none yet)
        self.start = -math.inf  # the arrival before the open span
        self.first = -math.inf  # the open span's first arrival
        self.count = 0  # arrivals in the open span

    def __len__(self) -> int:
        """How many gaps the median is taken over (closed spans and the open one)."""
        return len(self.gaps) + (self.count > 0)

    def note(self, at: float) -> None:
        """One arrival at ``at`` (not earlier than the one before)."""
        if self.last == -math.inf:
            self.last = self.start = at
            return
        typical = self.typical
        if typical == math.inf or at - self.last >= BUNCHED * typical:  # ordinary: the open span ends before it
            if self.count:
                self._close((self.last - self.start) / self.count)
            self.start, self.first, self.count = self.last, at, 1
        elif self.count == 0:
            self.first, self.count = at, 1
        else:
            self.count += 1
            if at - self.first >= GAP_HISTORY * typical:
                self._close((at - self.start) / self.count)
                self.start, self.count = at, 0
        self.last = at

    def _close(self, gap: float) -> None:
        gaps = self.gaps
        if len(gaps) == GAP_HISTORY - 1:
            self.ordered.remove(gaps[self.oldest])
            gaps[self.oldest] = gap
            self.oldest = (self.oldest + 1) % len(gaps)
        else:
            gaps.append(gap)
        insort(self.ordered, gap)
        self.typical = self.ordered[len(self.ordered) // 2]

    def median(self) -> float | None:
        """The sampling interval: the median of the closed spans and the open one (None before two arrivals)."""
        ordered, n = self.ordered, len(self.ordered)
        if not self.count:
            return ordered[n // 2] if n else None
        here = (self.last - self.start) / self.count
        m = (n + 1) // 2  # the median's place among the n + 1
        k = bisect(ordered, here)
        return here if k == m else ordered[m] if k > m else ordered[m - 1]

    def clear(self) -> None:
        """No arrivals known (a value that is no longer held)."""
        self.gaps.clear()
        self.oldest = 0
        self.ordered.clear()
        self.typical = math.inf
        self.last = self.start = self.first = -math.inf
        self.count = 0


class _StreamState:
    __slots__ = ("values", "at", "newest", "gaps", "fresh", "row_ts", "last_row_at", "row_gaps", "waiting_since",
                 "warned_at", "strangers", "owners", "comma", "counted")

    def __init__(self, n: int) -> None:
        self.restart(n)
        self.waiting_since: float | None = None  # wall-clock time of the first message since the last row
        self.warned_at = -math.inf
        self.strangers: dict[str, None] = {}  # names received that are no feature (ordered, bounded)
        self.owners: dict[int, object] = {}  # feature -> the other spelling feeding it (FeatureNames.claim)
        self.comma = ""  # what a comma in this stream's numbers is, once a value told: "decimal" or "thousands"

    def restart(self, n: int) -> None:
        """Nothing held: the stream's values and times start again (what the gateway is, its names, stays)."""
        self.values: list[float] = [math.nan] * n
        self.at: list[float] = [-math.inf] * n  # when each value was taken (-inf: never)
        self.newest = -math.inf  # the newest of them
        self.gaps: list[Interval] = [Interval() for _ in range(n)]
        self.fresh: set[int] = set()  # features reported since the last row (single-feature messages)
        self.row_ts: float | None = None  # the newest ts among the fresh values
        self.last_row_at: float | None = None
        self.row_gaps = Interval()
        self.counted: _Counted | None = None  # the totalisers' last raw values and rates (a model without: None)


def _modulus(wrap: object) -> float | None:
    """A totaliser's wrap as the card gives it (a number, or absent: its falls are resets)."""
    return None if wrap is None else float(wrap)  # type: ignore[arg-type]


def _marked(st: _StreamState, j: int) -> float | _Missing:
    """What an over-range mark (:data:`BEYOND`) of feature ``j`` stands for: its held value, taken again now (its
    age starts again from the mark); with nothing held yet, a blank. One rule for rows and for single readings."""
    return MISSING if st.at[j] == -math.inf else st.values[j]


class _Counted:
    """Per stream, what turns a row's raw totaliser values into their rates: the previous row's raw values, its
    time, and each totaliser's last rate (NaN: none yet)."""

    __slots__ = ("raw", "at", "rates")

    def __init__(self, n: int) -> None:
        self.raw: list[float] | None = None
        self.at = -math.inf
        self.rates = [math.nan] * n


class RowAssembler:
    """Per stream, each feature's last value; rows from keyed objects or from single-feature messages.

    One assembler is used by one thread (a source's, or the agent loop's
    for the raw lines of stdin and websockets); see the module docstring
    for the rules.
    """

    def __init__(self, features: Sequence[str], max_age: float | None = None,
                 max_streams: int = DEFAULT_MAX_STREAMS, source: str = "",
                 states: Mapping[str, Mapping[str, float]] | None = None,
                 logged_every: Mapping[str, float] | None = None,
                 totalisers: Mapping[str, Mapping[str, object]] | None = None) -> None:
        self.features = list(features)
        self.source = source
        self.logged_every: list[float | None] = []
        self.use_logged_every(logged_every)
        self.totalisers: list[tuple[int, bool, float | None]] = []  # (feature, per second, wrap): use_totalisers
        # the model's state features (its card's states): "Run" read as its code; None: none (the fast path)
        self.states = StateCells.of(self.features, states, source)
        self.names = FeatureNames(self.features, source)
        self.index = self.names.exact
        self.time_keys = time_keys_beside(self.features)  # a feature named t or time is that feature, not the time
        self.value_keys = value_keys_beside(self.features)  # nor is a feature named v or value the values form
        self._warnings: deque[float] = deque(maxlen=NO_ROW_WARNINGS)
        self._clock_warned_at = -math.inf
        self._back_warned_at = -math.inf
        self._rate_checked: set[int] = set()  # features whose sampling interval was compared with the rows'
        self._stale_told: set[int] = set()  # features whose first stale_feature row was logged with its limit
        # values come only when they change (OPC UA's monitored items): a long gap is a steady value held
        # exactly, not a sensor sampled slowly, and the slow-sensor line would be false advice
        self.by_exception = False
        # rows from a file (a replay): a blank is held as fit filled it for the model, from the column's last
        # value however old (fit leaves out a column that stopped writing); a live sensor's silence is judged by
        # HOLD_STEPS
        self.from_file = False
        self._told: set[str] = set()  # names that are no feature, said once each (MAX_STRANGERS of them)
        self._said_thousands = False
        self.max_age = max_age
        self.max_streams = max_streams
        self._streams: OrderedDict[str, _StreamState] = OrderedDict()
        self.use_totalisers(totalisers)

    def use_logged_every(self, steps: Mapping[str, float] | None) -> None:
        """Each feature's step in the normal data (the card's ``logged_every``; None: unknown, the rows' interval
        stands in for it): what a value is held for before its sensor has an interval of its own, and what the
        slow-sensor line compares its live interval with. The agent sets it from its model (and again on a swap)."""
        self.logged_every = [None if steps is None else steps.get(f) for f in self.features]

    def use_totalisers(self, counted: Mapping[str, Mapping[str, object]] | None) -> None:
        """The features the model takes as their rate (the card's ``totalisers``, edgewatch/fit/totalisers.py): per
        feature, whether its rate is per second (else per row) and the modulus it wraps at (None: a fall is a
        reset). The agent sets it from its model (and again on a swap: when the rule changed, every stream's rates
        start again from its next row)."""
        counted = counted or {}
        rule = [(j, counted[f].get("per", "s") == "s", _modulus(counted[f].get("wrap")))
                for j, f in enumerate(self.features) if f in counted]
        if rule == self.totalisers:
            return
        self.totalisers = rule
        for st in self._streams.values():
            st.counted = None

    def _rated(self, st: _StreamState, values: list[float], at: float) -> list[float] | None:
        """The row with each totaliser's raw value replaced by its rate since the stream's previous row; None when
        a rate is not known yet (the stream's first row: ``fit`` drops it too).

        The rule is fit's (edgewatch/fit/totalisers.py), row by row: the rise (taken modulo the wrap when the card
        gives one) over the time since the previous row (1 per row for a model fitted without times); a fall
        that is no wrap (a reset), or a row at the previous row's time, holds the rate before it."""
        c = st.counted
        if c is None:
            c = st.counted = _Counted(len(self.totalisers))
        out = list(values)
        dt = at - c.at
        known = True
        for k, (j, per_second, wrap) in enumerate(self.totalisers):
            x = values[j]
            if c.raw is not None:
                d = x - c.raw[k]
                if wrap is not None:
                    d %= wrap
                step = dt if per_second else 1.0
                if d >= 0 and step > 0:
                    c.rates[k] = d / step
            out[j] = c.rates[k]
            known = known and not math.isnan(c.rates[k])
        c.raw = [values[j] for j, _, _ in self.totalisers]
        c.at = at
        return out if known else None

    def _state(self, stream: str) -> _StreamState:
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = _StreamState(len(self.features))
            if len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(stream)
        return st

    def limit(self, stream: str, j: int) -> float:
        """How old feature ``j``'s held value may be, in seconds (the module docstring's rule)."""
        if self.max_age is not None:
            return self.max_age
        st = self._streams.get(stream)
        if st is None:
            return math.inf
        if self.from_file:
            return math.inf
        interval = st.gaps[j].median()
        if interval is None:  # its first value: the step it was logged at, if the card says, or the rows'
            interval = st.row_gaps.median()
            fitted = self.logged_every[j]
            if interval is not None and fitted is not None and fitted > interval:
                interval = fitted
        return math.inf if interval is None else HOLD_STEPS * interval

    def _take(self, st: _StreamState, j: int, value: float, at: float) -> bool:
        """Record one value; False when it is older than the one held (out of order)."""
        prev = st.at[j]
        if at < prev:
            return False
        gaps = st.gaps[j]
        gaps.note(at)
        if j not in self._rate_checked and not self.by_exception and len(gaps) == GAP_HISTORY:
            self._check_rate(st, j)
        st.values[j] = value
        st.at[j] = at
        if at > st.newest:
            st.newest = at
        return True

    def _went_back(self, stream: str, st: _StreamState, at: float, features: Sequence[int]) -> None:
        """Start the stream again when ``at`` is :data:`CLOCK_WARN_AFTER` or more before a held value of ``features``.

        Why: a value older than its feature's held one is out of order, and
        skipped; but a time that far back is no late message, it is a clock
        set back (a device's clock put right after a jump ahead). Judged
        against the held values, every later value would be older and
        skipped, the stream dead until the wall clock caught up with the wrong
        time: a year for one message stamped a year ahead. Judged per feature,
        not against the stream's newest value: a tag republished with the time
        it last changed (a bridge from OPC UA) keeps its own order.
        """
        back = max((st.at[j] - at for j in features), default=0.0)
        if back < CLOCK_WARN_AFTER:
            return
        st.restart(len(self.features))
        if time.monotonic() - self._back_warned_at >= 600.0:
            self._back_warned_at = time.monotonic()
            log.warning("source %s: the time of stream %r went back %.0f s (%.2f h): a clock set back; what it "
                        "held is dropped and its rows start again from the values that come now (a value less than "
                        "%.0f s older than the one held is a late message, counted stale_feature; logged at most "
                        "every 10 minutes)", self.source or "?", stream, back, back / 3600, CLOCK_WARN_AFTER)

    def _complete(self, stream: str, st: _StreamState, at: float, ts: float | None,
                  fresh: set[int] | None = None) -> Measurement | BadReason:
        """The row at time ``at`` from the held values, or why it cannot be made."""
        values = st.values
        for j, t in enumerate(st.at):
            if t == at or (fresh is not None and j in fresh):
                continue
            if t == -math.inf:
                return BadReason.MISSING_FEATURE
            if at - t > self.limit(stream, j):
                self._said_stale(st, j, at - t, self.limit(stream, j))
                return BadReason.STALE_FEATURE
        if st.last_row_at is None or at > st.last_row_at:
            st.row_gaps.note(at)
        st.last_row_at = at
        if self.totalisers:
            rated = self._rated(st, values, at)
            return BadReason.MISSING_FEATURE if rated is None else Measurement(rated, ts, stream)
        return Measurement(list(values), ts, stream)

    def _said_stale(self, st: _StreamState, j: int, age: float, limit: float) -> None:
        """Once per feature: which feature makes rows ``stale_feature``, how old it was, the limit, and the way out.

        Why: a sensor published on change (a deadband, report by exception) goes quiet for as long as its value
        holds, and about half of such a feed's rows were skipped with only the count to say so (measured:
        1,161 of 2,567 rows, a 1-s vibration, a 5-s flow and a bearing temperature, each on change). Not said
        before the feature has a usual interval (its first values), nor with ``max_age`` set (the user chose).
        """
        gaps = st.gaps[j].median()
        if j in self._stale_told or self.max_age is not None or gaps is None:
            return
        self._stale_told.add(j)
        log.warning("source %s: %r held %.3g s, over its limit of %.3g s (%g of its usual %.3g s between values): "
                    "rows are skipped as stale_feature until it reports. A sensor published only when its value "
                    "changes (a deadband, report by exception) is quiet while it holds: give the source "
                    "?max_age= its longest quiet spell (max_age = \"2h\" in a TOML [[source]]). Said once per "
                    "feature", self.source or "?", self.features[j], age, limit, HOLD_STEPS, gaps)

    def row(self, stream: str, cells: Sequence[object], at: float, ts: float | None = None
            ) -> Measurement | BadReason:
        """A whole row (``cells`` in the model's feature order, :data:`MISSING` where there is no value).

        Present values are kept for later rows even when this one is skipped.
        """
        st = self._state(stream)
        if at < st.newest - CLOCK_WARN_AFTER:  # else no held value can be that much newer: one comparison a row
            self._went_back(stream, st, at, [j for j, v in enumerate(cells) if v is not MISSING])
        if not self._take_cells(st, cells, at):
            return self._waits(stream, st, BadReason.STALE_FEATURE)
        return self._waits(stream, st, self._complete(stream, st, at, ts))

    def whole(self, m: Measurement, stream: str, at: float) -> Measurement | BadReason:
        """A row a source parsed whole (a ``values`` array in the model's order, a Sparkplug row): as it is, unless
        the model takes totalisers as their rate (the card's ``totalisers``): then through :meth:`row`, so that
        its raw totals become the rates the model was fitted on, by the rule of every other row."""
        if not self.totalisers:
            return m
        stream = m.stream or stream
        out = self.row(stream, m.values, m.ts if m.ts is not None else at, m.ts)
        if type(out) is Measurement:
            out.stream = m.stream
        return out

    def hold(self, stream: str, cells: Sequence[object], at: float) -> None:
        """Keep the present values of a row that is refused for another reason (they may be held later)."""
        st = self._state(stream)
        if at < st.newest - CLOCK_WARN_AFTER:
            self._went_back(stream, st, at, [j for j, v in enumerate(cells) if v is not MISSING])
        self._take_cells(st, cells, at)

    def reset(self, stream: str) -> None:
        """Forget what the stream holds (a new session of a source: its next row needs every feature)."""
        self._streams.pop(stream, None)

    def forget(self, stream: str, j: int) -> None:
        """Feature ``j`` has no usable value now (a bad status): it is not held, the next rows need a new one."""
        self.forget_value(self._state(stream), j)

    @staticmethod
    def forget_value(st: _StreamState, j: int) -> None:
        st.values[j] = math.nan
        st.at[j] = -math.inf
        st.gaps[j].clear()
        st.fresh.discard(j)

    def _take_cells(self, st: _StreamState, cells: Sequence[object], at: float) -> bool:
        ok = True
        for j, v in enumerate(cells):
            if v is BEYOND:
                v = _marked(st, j)
            if v is not MISSING and not self._take(st, j, v, at):  # type: ignore[arg-type]
                ok = False
        return ok

    def keyed(self, obj: dict, stream: str, at: float, ts: float | None = None) -> Measurement | BadReason:
        """A JSON object keyed by feature name (other keys ignored): its row, or why it has none.

        A key that is not a feature's exact name fills the feature it
        matches (module docstring, **Names**) unless that feature has its
        exact key too.
        """
        return self._keyed_row(self._cells(obj, stream)[0], stream, at, ts)

    def _cells(self, obj: dict, stream: str) -> tuple[list[object], bool]:
        """(the object's value of each feature, None where it has none; whether any key named a feature)."""
        cells: list[object] = [obj.get(name) for name in self.features]
        named = len(cells) > cells.count(None) or any(name in obj for name in self.features)
        if None in cells:  # a feature without its exact key (or null): another key may name it
            named = self._matched(obj, cells, stream) or named
        return cells, named

    def _keyed_row(self, cells: list[object], stream: str, at: float, ts: float | None) -> Measurement | BadReason:
        states = self.states
        for j, raw in enumerate(cells):
            v = cell_value(raw) if states is None else self.cell(stream, j, raw)
            if type(raw) is str and "," in raw and (states is None or states[j] is None):
                v = self._comma(self._state(stream), raw, v)
            if type(v) is BadReason:
                if v is BadReason.NOT_NUMBER:
                    self._refused(j, raw)
                return v
            cells[j] = v
        return self.row(stream, cells, at, ts)

    def cell(self, stream: str, j: int, raw: object) -> float | _Missing | BadReason:
        """Feature ``j``'s value as :func:`cell_value` reads it, a state feature's text as its code.

        A text the normal data never held (``Fault`` for ``Run``/``Stop``)
        is ``unknown_state``, and the feature's held value is dropped: the
        machine is no longer in the state held, so a later row must not
        stand on it (the rows wait for a known state, as after a bad status).
        """
        code = self.state_code(stream, j, raw)
        return cell_value(raw) if code is None else code

    def state_code(self, stream: str, j: int, raw: object) -> float | BadReason | None:
        """Feature ``j``'s code for the state word ``raw``; None when ``raw`` is no state word for it (a number, a
        blank, or no state feature); ``unknown_state``, the held value dropped (:meth:`cell`), for a text never held."""
        code = self.states.value(j, raw) if self.states is not None else None
        if code is BadReason.UNKNOWN_STATE:
            self.forget(stream, j)
        return code

    @staticmethod
    def _comma(st: _StreamState, raw: str, v: float | _Missing | BadReason) -> float | _Missing | BadReason:
        """``raw``'s value once the stream's own numbers told what its commas are; learns it from them.

        ``"12,5"`` (read as a decimal comma) says decimal, ``"1,234,567"`` or
        ``"1,234.5"`` says thousands; until one of them came, ``"1,234"`` stays
        ``not_number`` (:meth:`_refused` says why). Per stream: one broker
        carries gateways of both kinds.
        """
        text = raw.strip()
        if type(v) is float:
            st.comma = st.comma or "decimal"
            return v
        if v is not BadReason.NOT_NUMBER:
            return v
        if _GROUPED.match(text):
            st.comma = st.comma or "thousands"
            return cell_value(float(text.replace(",", "")))
        if st.comma and _THOUSANDS.match(text):
            return cell_value(float(text.replace(",", "." if st.comma == "decimal" else "")))
        return v

    def _refused(self, j: int, raw: object) -> None:
        """Say once per source why a number with a thousands-like comma is ``not_number`` (the refusal path only)."""
        if not self._said_thousands and type(raw) is str and _THOUSANDS.match(raw.strip()):
            self._said_thousands = True
            log.warning("source %s: %r for %r could be %s or %s (a comma before three digits may separate "
                        "thousands or decimals): counted not_number until the stream sends a number that tells "
                        "(12,5 or 0,125: decimal; 1,234,567 or 1,234.5: thousands). Better: send a point as the "
                        "decimal separator, no thousands separator (said once)", self.source or "?", raw,
                        self.features[j], raw.strip().replace(",", "."), raw.strip().replace(",", ""))

    def _matched(self, obj: dict, cells: list[object], stream: str) -> bool:
        """Fill ``cells`` from the keys that are no exact feature name; note the others; True if any matched one.

        A feature's exact key wins; two other keys of one feature fill it with neither
        (:meth:`FeatureNames.claim`, the stream's owners: in one object or across objects).
        """
        found = False
        strangers = None
        filled = None
        st = self._state(stream)
        for key, raw in obj.items():
            if key in self.index or key in META_KEYS:
                continue
            j = self.names.resolve(key)
            if j is None:
                strangers = strangers or []
                strangers.append(key)
            else:
                found = True
                if self.features[j] not in obj and self.names.claim(st.owners, j, key) is not None:
                    cells[j] = raw
                    filled = filled or []
                    filled.append((j, key))
        if filled:
            for j, key in filled:
                if st.owners.get(j) != key:  # a later key of the object contested it
                    cells[j] = None
        if strangers:
            self._strangers(st, strangers)
        return found

    def keyed_message(self, raw: str | bytes, stream: str, received: float, max_bytes: int = DEFAULT_MAX_BYTES
                      ) -> Measurement | BadReason:
        """A message holding one object keyed by feature name; ``no_values`` when it names no feature at all.

        Its ``stream`` key, else ``stream``, names the stream; its time is
        its ``ts`` (or ``timestamp``...), else ``received``.
        """
        parsed = parse_object(raw, max_bytes, self.time_keys)
        if type(parsed) is BadReason:
            return parsed
        obj, ts, named = parsed  # type: ignore[misc]
        stream = named or stream
        if ts is not None and abs(ts - received) >= CLOCK_WARN_AFTER:
            self.check_clock(stream, ts, received)
        cells, named = self._cells(obj, stream)
        if not named:
            return self._waits(stream, self._state(stream), BadReason.NO_VALUES)
        return self._keyed_row(cells, stream, ts if ts is not None else received, ts)

    def reading(self, raw: str | bytes, stream: str, name: str, received: float,
                max_bytes: int = DEFAULT_MAX_BYTES) -> list[Measurement | BadReason]:
        """One feature's message (:func:`~edgewatch.agent.sources.parsing.parse_reading`): the rows it completes."""
        st = self._state(stream)
        j = self.index.get(name)
        if j is None:
            j = self.names.resolve(name)
            if j is not None:
                j = self._spelled(st, j, name)  # None: another name feeds that feature (logged there)
                if j is None:
                    return [self._waits(stream, st, BadReason.UNKNOWN_FEATURE, received)]
        elif st.owners:  # another spelling fed it: the exact name takes the feature over
            self.names.claim(st.owners, j, name)
        if j is None:
            self._strangers(st, [name])
            if len(self._told) < MAX_STRANGERS and name not in self._told:
                self._told.add(name)
                log.info("source %s: %r (stream %r) is no feature of the model %s: its readings are counted as "
                         "unknown_feature and skipped (said once per name; tags named otherwise than the features: "
                         "name them for the features in the model's order, ?columns=A,B,...)", self.source or "?",
                         name, stream, self.features)
            return [self._waits(stream, st, BadReason.UNKNOWN_FEATURE, received)]
        parsed = parse_reading(raw, max_bytes)
        if type(parsed) is BadReason:
            if parsed is BadReason.BAD_STATUS:  # not the sensor's present value, and its last one is no longer
                self.forget(stream, j)
            return [parsed]
        value, ts = parsed  # type: ignore[misc]
        if ts is not None and abs(ts - received) >= CLOCK_WARN_AFTER:
            self.check_clock(stream, ts, received)
        out = self._feature(stream, st, j, value, ts if ts is not None else received, ts)
        if not out:  # no row yet
            if st.waiting_since is None:
                st.waiting_since = received
        elif len(out) == 1 and type(out[0]) is Measurement:
            st.waiting_since = None
        else:
            for r in out:
                self._waits(stream, st, r, received)
        return out

    def _spelled(self, st: _StreamState, j: int, name: str) -> int | None:
        """``j`` when the other spelling ``name`` may feed feature ``j`` on this stream (FeatureNames.claim)."""
        if j not in st.owners and st.at[j] != -math.inf:  # its exact name has fed it (a spelling would own it)
            st.owners[j] = self.features[j]
        taken = self.names.claim(st.owners, j, name)
        if taken is None and st.owners[j] is CONTESTED and st.at[j] != -math.inf:
            self.forget_value(st, j)  # its held value came by one of the two: it is not held
        return taken

    def feature(self, stream: str, name: str, value: object, at: float, ts: float | None = None
                ) -> list[Measurement | BadReason]:
        """One feature's value; the rows (or reasons) it completes, in order: none, one, or two."""
        j = self.names.resolve(name)
        if j is None:
            return [BadReason.UNKNOWN_FEATURE]
        return self._feature(stream, self._state(stream), j, value, at, ts)

    def _feature(self, stream: str, st: _StreamState, j: int, value: object, at: float, ts: float | None
                 ) -> list[Measurement | BadReason]:
        v = cell_value(value) if self.states is None else self.cell(stream, j, value)
        if type(value) is str and "," in value and (self.states is None or self.states[j] is None):
            v = self._comma(st, value, v)
        if type(v) is BadReason:
            if v is BadReason.NOT_NUMBER:
                self._refused(j, value)
            return [v]
        out: list[Measurement | BadReason] = []
        back = at < st.at[j] - CLOCK_WARN_AFTER  # a clock set back (_went_back)
        if j in st.fresh or (back and st.fresh):  # the row being assembled is made first
            out.append(self._flush(stream, st))
        if v is BEYOND:
            v = _marked(st, j)
        if v is MISSING:
            return out
        if back:
            self._went_back(stream, st, at, (j,))
        if not self._take(st, j, v, at):  # type: ignore[arg-type]
            out.append(BadReason.STALE_FEATURE)
            return out
        st.fresh.add(j)
        if ts is not None and (st.row_ts is None or ts > st.row_ts):
            st.row_ts = ts
        if len(st.fresh) == len(self.features):
            out.append(self._flush(stream, st))
        return out

    def _flush(self, stream: str, st: _StreamState) -> Measurement | BadReason:
        fresh, ts = st.fresh, st.row_ts
        st.fresh, st.row_ts = set(), None
        return self._complete(stream, st, max(st.at[j] for j in fresh), ts, fresh)

    def check_clock(self, stream: str, ts: float, received: float) -> None:
        """Say (once every 10 minutes per source) when messages' times are far from this machine's clock.

        The usual cause is a local time without an offset, which is read as
        UTC: alerts would then carry times hours away from the plant's. Called
        here for the rows assembled here, and by the sources for the rows they
        make themselves (a JSON array or ``values`` on MQTT, Sparkplug, OPC UA),
        only when ``abs(ts - received) >= CLOCK_WARN_AFTER`` (one comparison a message).
        """
        off = ts - received
        if abs(off) < CLOCK_WARN_AFTER or received - self._clock_warned_at < 600.0:
            return
        self._clock_warned_at = received
        log.warning("source %s: stream %r sends times %.0f s %s this machine's clock (%s). A time without an "
                    "offset is read as UTC: send an offset (2024-05-01T08:00:00+02:00), 'Z' or epoch seconds or "
                    "milliseconds; or set this machine's clock. Old data replayed on purpose needs none of this "
                    "(logged at most every 10 minutes)",
                    self.source or "?", stream, abs(off), "ahead of" if off > 0 else "behind",
                    f"{off / 3600:+.2f} h")

    def _check_rate(self, st: _StreamState, j: int) -> None:
        """Once per feature: say when it reports much more slowly than rows are made (most rows hold it), and, when
        the card says the step it was logged at in the normal data, much more slowly than that too.

        Why the second rule: ``fit`` fills a slow tag's blanks from its last value, so a model of a 60-s
        temperature beside a 1-s vibration was fitted on rows that hold it, and the same tag live every 60 s is
        what it knows. Its live interval is taken as beyond it from :data:`SLOW_FEATURE_RATIO` of the fitted
        step, the ratio the rows' interval is compared by: a lost value or a jittered clock moves the median
        of :data:`GAP_HISTORY` gaps by less, a sensor set to report at a tenth of the rate by more."""
        if len(st.row_gaps) < GAP_HISTORY // 2:
            return
        self._rate_checked.add(j)
        own, rows = st.gaps[j].median(), st.row_gaps.median()
        if own is None or rows is None or rows <= 0 or own < SLOW_FEATURE_RATIO * rows:
            return
        name, fitted = self.features[j], self.logged_every[j]
        if fitted is not None:
            if own >= SLOW_FEATURE_RATIO * fitted:
                log.warning("source %s: %r reports every %.3g s, the model was fitted on it logged every %.3g s: "
                            "windows hold fewer of its values than the model knows, and it may alert on it; fit "
                            "on data recorded as the plant publishes it now, or leave it out (edgewatch fit "
                            "--ignore %r); a sensor published only when its value changes needs none of this. "
                            "Said once per feature", self.source or "?", name, own, fitted, name)
            return
        log.warning("source %s: %r reports every %.3g s, rows are made every %.3g s: most rows hold its last "
                    "value, so a window holds few of its values. A model fitted on data that logged it every "
                    "row may alert on it; fit on data recorded as the plant publishes it, or leave it out "
                    "(edgewatch fit --ignore %r); a sensor published only when its value changes needs none "
                    "of this. Said once per feature", self.source or "?", name, own, rows, name)

    def _strangers(self, st: _StreamState, names: list[str]) -> None:
        for name in names:
            if len(st.strangers) < MAX_STRANGERS:
                st.strangers[name[:STRANGER_CHARS]] = None  # whoever publishes chooses the length

    def _waits(self, stream: str, st: _StreamState, result: object, now: float | None = None) -> object:
        """Note whether a message made a row; log what lacks after a while (``now``: wall-clock seconds)."""
        if type(result) is Measurement:
            st.waiting_since = None
            return result
        if now is None:
            now = time.time()
        if st.waiting_since is None:
            st.waiting_since = now
            return result
        if (now - st.waiting_since >= NO_ROW_WARN_AFTER and now - st.warned_at >= NO_ROW_WARN_EVERY
                and (len(self._warnings) < NO_ROW_WARNINGS or now - self._warnings[0] >= 60.0)):
            st.warned_at = now
            self._warnings.append(now)
            log.warning("%s", self.lacking(stream, now - st.waiting_since))
        return result

    def lacking(self, stream: str, seconds: float) -> str:
        """What a stream that makes no row lacks, and what to do about it (the no-row warning's text)."""
        st = self._streams.get(stream)
        never = [f for f, t in zip(self.features, st.at) if t == -math.inf] if st else list(self.features)
        newest = max(st.at) if st else -math.inf
        stale = [f"{f} ({newest - t:.0f} s old, limit {self.limit(stream, j):.3g} s)"
                 for j, (f, t) in enumerate(zip(self.features, st.at if st else []))
                 if t != -math.inf and newest - t > self.limit(stream, j)]
        strangers = list(st.strangers) if st else []
        parts = [f"source {self.source or '?'}: stream {stream!r} has made no row for {seconds:.0f} s of messages"]
        if never:
            parts.append(f"never received: {never}")
        if stale:
            parts.append(f"too old: {stale}")
        if strangers:
            parts.append(f"received names that are no feature of the model: {strangers}"
                         + ("..." if len(strangers) >= MAX_STRANGERS else ""))
        parts.append(f"the model's features are {self.features}. Publish each under its name (case, spaces, "
                     "'_', '-', '.', '/' and a unit in brackets may differ when only one feature matches); on a "
                     "topic template, or name its {feature} levels for the features in the model's order: "
                     "?columns=A,B,..."
                     + ("; for a sensor that reports rarely, raise the source's ?max_age=" if stale else ""))
        return "; ".join(parts)
