"""``replay:FILE.csv[?rate=HZ&loop=1&columns=A,B,...&max_age=10s&decimal=,]``: a CSV file played back as a stream.

The file is read the way ``edgewatch fit`` reads it
(:mod:`edgewatch.wire.csv_table`, rows through its ``iter_rows`` and times
through ``CsvLayout.time_text`` and :mod:`edgewatch.wire.csv_times`):
encoding, separator, header, unit rows, decimal and thousands marks and
time column sniffed, so a SKAB file (``;``, a ``datetime`` column) or a European export
replays with no options. ``sep`` (``;``, ``tab``...) and ``time`` (a column
name) say them when the sniffing guesses wrong; ``decimal`` (``.`` or ``,``)
the decimal mark when the file's numbers cannot tell (``1.234`` only: the
reader then takes ``.`` for a decimal point and the log says it guessed),
as ``fit --decimal`` does for the model's file. The model's features are
taken from the columns of the same names, whatever their order and
whatever else the file holds (``fit`` may have left columns out), or of
names that match one feature only (:mod:`.feature_names`: case, spaces,
``_ - . /``, a unit in brackets); when the names differ more, ``columns``
names the file's columns for the model's features, in the model's order.
A file whose header names none of the features and has exactly as many
other columns as the model has features is read by position. Label
columns (``anomaly``, ``changepoint``) are never features. A historian's
long export (one row per tag and time) whose tags name the model's features
is read whole and pivoted as ``fit`` pivots it
(:func:`edgewatch.wire.csv_long.read_long`), then played in time order.

A blank, ``NaN`` or ``null`` cell is held from the column's last value (the
rules of :mod:`.rows` for a file: however old, as ``fit`` filled it,
unless ``max_age`` is set; without a time column the staleness limit counts
rows, so ``max_age=3`` holds a value for three rows); text in a number cell
is ``not_number``, a short line ``wrong_arity``, an unreadable time
``bad_timestamp``. A state feature's text (``Run``/``Stop``, the card's
``states``) is its code, as ``fit`` coded it; a text the normal data never
held is ``unknown_state``.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from urllib.parse import unquote

from edgewatch.agent.sources.base import Item, Kind, Source, SourceContext, SourceSpec, row_assembler
from edgewatch.agent.sources.feature_names import FeatureNames
from edgewatch.agent.sources.parsing import BadReason, Measurement, sane_timestamp
from edgewatch.agent.sources.registry import register
from edgewatch.agent.sources.rows import RowAssembler, cell_value
from edgewatch.errors import BadInput
from edgewatch.wire.csv_long import long_format, read_long
from edgewatch.wire.csv_table import CsvLayout, CsvTable, iter_rows, read_csv_table, sniff_layout
from edgewatch.wire.csv_times import LocalClock, parse_time

log = logging.getLogger("edgewatch.agent.sources")


class ReplaySource(Source):
    """Replays a CSV file: header row, numeric feature columns, an optional time column.

    ``rate`` None replays as fast as the agent takes it; otherwise rows are
    paced at ``rate`` per second. See the module docstring for how columns
    are chosen and cells read.
    """

    def __init__(self, path: str | Path, features: list[str], rate: float | None = None,
                 stream: str | None = None, loop: bool = False, sep: str | None = None, time_column: str | None = None,
                 columns: list[str] | None = None, rows: RowAssembler | None = None,
                 decimal: str | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInput(f"replay file {self.path} does not exist")
        self.features = features
        self.rate = rate
        self.loop = loop
        self.finite = not loop  # a replay that does not loop ends, cleanly, at the end of its file
        self.name = stream or f"replay:{self.path.name}"
        self.rows_sent = 0
        self.rows = rows or RowAssembler(features)
        # a column logged slower than the rows (blank between readings) is held as fit filled it for the model:
        # the slow-sensor line, advice for live feeds the model was not fitted on, would be false here
        self.rows.by_exception = True
        self.rows.from_file = True  # and its blanks held as fit filled them, from the last value
        self._next_t = 0.0  # when the next row is due (monotonic), with a rate
        self.layout: CsvLayout = sniff_layout(self.path, time_column, sep, decimal)
        if self.layout.decimal_note:
            log.warning("replay %s: %s", self.path, self.layout.decimal_note)
        self._clock = LocalClock()
        self.wide: CsvTable | None = None  # a long export (one row per tag and time), pivoted as fit pivots it
        if columns is None and not all(f in self.layout.header for f in features):
            self.wide = _pivoted(self.layout, features)
        self.columns = (None, []) if self.wide is not None else self._pick_columns(self.layout, columns)

    def _pick_columns(self, layout: CsvLayout, columns: list[str] | None) -> tuple[int | None, list[int]]:
        header = layout.header
        time_col = header.index(layout.time_column) if layout.time_column is not None else None
        if columns is not None:
            missing = [c for c in columns if c not in header]
            if missing or len(columns) != len(self.features):
                raise BadInput(f"replay file {self.path}: ?columns= must name {len(self.features)} of its columns "
                               f"{header}, one for each of the model's features {self.features} in that order "
                               f"(got {columns}; not in the file: {missing or 'none'})")
            return time_col, [header.index(c) for c in columns]
        picked = self._by_name(header, time_col, (layout.date_column, layout.ms_column))
        if len(picked) == len(self.features):
            return time_col, [picked[j] for j in range(len(self.features))]
        rest = [i for i in range(len(header)) if i != time_col
                and header[i] not in (layout.date_column, layout.ms_column, *layout.label_columns)]
        if not picked and len(rest) == len(self.features):
            return time_col, rest
        missing = [f for j, f in enumerate(self.features) if j not in picked]
        # the whole ?columns= in the model's order, the missing ones to fill in: a partial list that began with a
        # missing feature (not a column of the file) was refused when copied
        example = ",".join(f"<column for {f}>" if j not in picked else header[picked[j]]
                           for j, f in enumerate(self.features))
        raise BadInput(f"replay file {self.path} ({layout.describe()}) has the columns {header}; the model needs "
                       f"{len(self.features)} features {self.features}, and {missing} are not among them. Rename "
                       f"those columns, or map the file's columns to the model's features in the model's order with "
                       f"?columns=A,B,... (replay:{self.path}?columns={example}); a wrongly sniffed separator or "
                       "time column is set with ?sep=; and ?time=NAME")

    def _by_name(self, header: list[str], time_col: int | None, time_parts: tuple[str | None, ...]) -> dict[int, int]:
        """Feature index -> column, by the name rule of :mod:`.feature_names` (an exact header wins)."""
        names = [None if i == time_col or h in time_parts else h for i, h in enumerate(header)]
        picked, contested = FeatureNames(self.features, self.name).pick(names)
        for j, cols in contested.items():  # two spellings, perhaps two units: neither is a guess to make
            raise BadInput(f"replay file {self.path}: the columns {[header[i] for i in cols]} all match the "
                           f"model's feature {self.features[j]!r}; name the one to take with ?columns= (the "
                           f"model's features in order: {self.features})")
        return picked

    def run(self) -> None:
        period = 1.0 / self.rate if self.rate else 0.0
        self._next_t = time.monotonic()
        index = [0]  # rows sent so far, over every loop: the row time of a file with no time column
        while True:
            self._clock = LocalClock()
            if not (self._send_wide(self.wide, period) if self.wide is not None else self._send_file(period, index)):
                return
            if not self.loop or self.stopping:
                return
            self.rows.reset(self.name)  # the next pass's times start again: nothing of this one is held or newer

    def _send_file(self, period: float, index: list[int]) -> bool:
        """The file's rows as they come; False when stopping."""
        for _, row in iter_rows(self.layout, on_error=self._refused):
            if self.stopping:
                return False
            index[0] += 1
            if not self._send_row(row, float(index[0]), period):
                return False
        return True

    def _send_wide(self, wide: CsvTable, period: float) -> bool:
        """The pivoted rows of a long export, in time order; False when stopping."""
        columns = [wide.numeric[f] if f in wide.numeric else _state_texts(wide, f) for f in self.features]
        for i, ts in enumerate(wide.times.tolist() if wide.times is not None else []):
            if self.stopping:
                return False
            cells: list[object] = []
            for j, c in enumerate(columns):
                if isinstance(c, list):  # a state tag's words (on/off), read by the model's codes as a wide file's
                    code = self.rows.state_code(self.name, j, c[i]) if c[i] else None
                    if code is BadReason.UNKNOWN_STATE:
                        cells = []
                        break
                    cells.append(code if code is not None else cell_value(math.nan))
                else:
                    cells.append(cell_value(float(c[i])))
            if not cells:
                if not self._put(Item(Kind.BAD, self.name, BadReason.UNKNOWN_STATE, time.time())):
                    return False
                continue
            m = self.rows.row(self.name, cells, ts, ts)
            if not self._send(m, period):
                return False
        return True

    def _refused(self, line: int, exc: csv.Error) -> None:
        """A line the csv module cannot split (a field past its size limit): that line only."""
        self.bad_reading(BadReason.BAD_REPLY, f"{self.path.name} line {line}: {exc}")

    def _row(self, row: list[str], index: float) -> Measurement | BadReason:
        time_col, cols = self.columns
        lay = self.layout
        cells: list[object] = []
        for j, i in enumerate(cols):
            if i >= len(row):
                return BadReason.WRONG_ARITY
            code = self.rows.state_code(self.name, j, row[i])
            if code is not None:  # a state feature's text (Run/Stop), as fit coded it
                if code is BadReason.UNKNOWN_STATE:
                    return code
                cells.append(code)
                continue
            try:
                v = cell_value(lay.number(row[i], lay.header[i]))
            except ValueError:
                return BadReason.NOT_NUMBER
            if type(v) is BadReason:
                return v
            cells.append(v)
        ts = None
        text = lay.time_text(row).strip() if time_col is not None else ""
        if text:
            ts = parse_time(text, lay.date_order, lay.excel_days)
            if lay.naive_times:
                ts = self._clock(ts)
            if not (math.isfinite(ts) and sane_timestamp(ts)):
                return BadReason.BAD_TIMESTAMP
        return self.rows.row(self.name, cells, ts if ts is not None else index, ts)

    def _send_row(self, row: list[str], index: float, period: float) -> bool:
        """Queue one CSV row, or the reason it is bad; False when stopping."""
        return self._send(self._row(row, index), period)

    def _send(self, m: Measurement | BadReason, period: float) -> bool:
        if type(m) is not Measurement:
            return self._put(Item(Kind.BAD, self.name, m, time.time()))
        if period:
            self._next_t += period
            delay = self._next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
        if not self._put(Item(Kind.MEASUREMENT, self.name, m, time.time())):
            return False
        self.rows_sent += 1
        return True


def _state_texts(wide: CsvTable, feature: str) -> list[str]:
    """A pivoted state tag's text per row ('' where it wrote nothing); BadInput when the tag is not in the file."""
    if feature not in wide.state_cells:
        raise BadInput(f"replay file {wide.path}: its tag {feature!r} holds neither numbers nor the words of a state")
    texts, ids = wide.state_cells[feature]
    return [texts[k] if k >= 0 else "" for k in ids.tolist()]


def _pivoted(layout: CsvLayout, features: list[str]) -> CsvTable | None:
    """The file pivoted when it is a long export naming every feature as a tag (read whole, as fit reads it)."""
    try:
        long = long_format(read_csv_table(layout.path, layout))
    except BadInput:
        return None
    if long is None or not all(f in [long.names.get(t, t) for t in long.tags] for f in features):
        return None
    return read_long(layout, long)


@register("replay")
def build(spec: SourceSpec, ctx: SourceContext) -> ReplaySource:
    path, _, query = spec.url[len("replay:"):].partition("?")
    opts = {k: unquote(v) for k, v in (p.split("=", 1) for p in query.split("&") if "=" in p)}
    opts.update({k.replace("-", "_"): str(v) for k, v in spec.options.items()})
    known = {"rate", "loop", "stream", "sep", "time", "columns", "max_age", "decimal"}
    unknown = set(opts) - known
    if unknown:
        raise BadInput(f"replay source {spec.url!r}: unknown option(s) {sorted(unknown)}; known: "
                       f"{', '.join(sorted(known))}")
    try:
        rate = float(opts["rate"]) if "rate" in opts else None
    except ValueError:
        raise BadInput(f"replay source {spec.url!r}: rate must be a number of rows per second") from None
    sep = opts.get("sep") or None
    decimal = opts.get("decimal") or None
    if decimal not in (None, ".", ","):
        raise BadInput(f"replay source {spec.url!r}: decimal is '.' or ',' (the decimal mark of the file's numbers), "
                       f"got {decimal!r}")
    columns = [c.strip() for c in opts["columns"].split(",")] if opts.get("columns") else None
    return ReplaySource(path, ctx.features, rate=rate, stream=opts.get("stream"),
                        loop=opts.get("loop", "").lower() in ("1", "true", "yes"),
                        sep="\t" if sep and sep.lower() == "tab" else sep, time_column=opts.get("time"),
                        columns=columns,
                        rows=row_assembler(spec.name, ctx.features, opts.get("max_age"), ctx.states),
                        decimal=decimal)
