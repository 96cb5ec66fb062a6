"""``replay:FILE.csv[?rate=HZ&loop=1&sep=;&time=COL&columns=A,B,...]``: a CSV file played back as a stream.

The dialect options let a benchmark file play as it is: ``sep`` the field
separator (``;`` for SKAB; ``tab`` for a tab), ``time`` the name of the
time column (ISO times like SKAB's ``2020-03-09 10:14:33`` are read as UTC,
numbers as epoch seconds), ``columns`` the feature columns in the model's
order. Label columns (``anomaly``, ``changepoint``) are never features.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from urllib.parse import unquote

from edgewatch.agent.sources.parsing import BadReason, Measurement, iso_to_epoch
from edgewatch.agent.sources.base import Item, Kind, Source, SourceContext, SourceSpec
from edgewatch.agent.sources.registry import register
from edgewatch.errors import BadInput


class ReplaySource(Source):
    """Replays a CSV file: header row, numeric feature columns, an optional time column.

    ``rate`` None replays as fast as the agent takes it; otherwise rows are
    paced at ``rate`` per second. Column names must match the model's
    features when a header names them all; extra columns are ignored.
    """

    TIME_COLUMNS = ("timestamp", "time", "ts", "t", "datetime")
    LABEL_COLUMNS = ("anomaly", "changepoint")

    def __init__(self, path: str | Path, features: list[str], rate: float | None = None,
                 stream: str | None = None, loop: bool = False, sep: str = ",", time_column: str | None = None,
                 columns: list[str] | None = None) -> None:
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
        self._next_t = 0.0  # when the next row is due (monotonic), with a rate
        if len(sep) != 1:
            raise BadInput(f"replay file {self.path}: sep must be one character, got {sep!r}")
        self.sep = sep
        with self.path.open(newline="") as fh:
            header = next(csv.reader(fh, delimiter=sep), None)
        if not header:
            raise BadInput(f"replay file {self.path} is empty")
        self.columns = self._pick_columns([h.strip() for h in header], time_column, columns)

    def _pick_columns(self, header: list[str], time_column: str | None = None,
                      columns: list[str] | None = None) -> tuple[int | None, list[int]]:
        if time_column is not None:
            if time_column not in header:
                raise BadInput(f"replay file {self.path} has no time column {time_column!r} (columns {header})")
            time_col: int | None = header.index(time_column)
        else:
            time_col = next((i for i, h in enumerate(header) if h.lower() in self.TIME_COLUMNS), None)
        if columns is not None:
            missing = [c for c in columns if c not in header]
            if missing or len(columns) != len(self.features):
                raise BadInput(f"replay file {self.path}: columns {columns} must name {len(self.features)} columns "
                               f"of {header} (missing: {missing or 'none'}), in the model's order {self.features}")
            return time_col, [header.index(c) for c in columns]
        if all(f in header for f in self.features):
            return time_col, [header.index(f) for f in self.features]
        rest = [i for i in range(len(header)) if i != time_col and header[i].lower() not in self.LABEL_COLUMNS]
        if len(rest) != len(self.features):
            raise BadInput(f"replay file {self.path} has columns {header}; the model needs "
                           f"{len(self.features)} features {self.features}")
        return time_col, rest

    def run(self) -> None:
        period = 1.0 / self.rate if self.rate else 0.0
        self._next_t = time.monotonic()
        while True:
            # a byte that is not UTF-8 becomes U+FFFD: that cell is then not a number, counted like one
            with self.path.open(newline="", errors="replace") as fh:
                reader = csv.reader(fh, delimiter=self.sep)
                next(reader, None)
                while not self.stopping:
                    try:
                        row = next(reader)
                    except StopIteration:
                        break
                    except csv.Error as exc:  # e.g. a field past the csv module's limit: that row only
                        self.bad_reading(BadReason.BAD_REPLY, f"{self.path.name} line {reader.line_num}: {exc}")
                        continue
                    if row and not self._send_row(row, period):
                        return
            if not self.loop or self.stopping:
                return

    def _send_row(self, row: list[str], period: float) -> bool:
        """Queue one CSV row (a bad one as raw text, so the parser counts it); False when stopping."""
        time_col, cols = self.columns
        try:
            values = [float(row[i]) for i in cols]
            ts = _csv_time(row[time_col]) if time_col is not None else None
        except (ValueError, IndexError, OverflowError):
            return self._put(Item(Kind.RAW, self.name, self.sep.join(row), time.time()))
        if period:
            self._next_t += period
            delay = self._next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
        if not self._put(Item(Kind.MEASUREMENT, self.name, Measurement(values, ts), time.time())):
            return False
        self.rows_sent += 1
        return True


def _csv_time(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return iso_to_epoch(text)


@register("replay")
def build(spec: SourceSpec, ctx: SourceContext) -> ReplaySource:
    path, _, query = spec.url[len("replay:"):].partition("?")
    opts = {k: unquote(v) for k, v in (p.split("=", 1) for p in query.split("&") if "=" in p)}
    opts.update({k: str(v) for k, v in spec.options.items()})
    known = {"rate", "loop", "stream", "sep", "time", "columns"}
    unknown = set(opts) - known
    if unknown:
        raise BadInput(f"replay source {spec.url!r}: unknown option(s) {sorted(unknown)}; known: "
                       f"{', '.join(sorted(known))}")
    try:
        rate = float(opts["rate"]) if "rate" in opts else None
    except ValueError:
        raise BadInput(f"replay source {spec.url!r}: rate must be a number of rows per second") from None
    sep = opts.get("sep", ",")
    columns = [c.strip() for c in opts["columns"].split(",")] if opts.get("columns") else None
    return ReplaySource(path, ctx.features, rate=rate, stream=opts.get("stream"),
                        loop=opts.get("loop", "").lower() in ("1", "true", "yes"),
                        sep="\t" if sep.lower() == "tab" else sep, time_column=opts.get("time"), columns=columns)
