"""``replay:FILE.csv[?rate=HZ&loop=1]``: a CSV file played back as a stream."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from edgewatch.agent.parsing import Measurement, iso_to_epoch
from edgewatch.agent.sources.base import Item, Kind, Source, SourceContext, SourceSpec
from edgewatch.agent.sources.registry import register
from edgewatch.errors import BadInput


class ReplaySource(Source):
    """Replays a CSV file: header row, numeric feature columns, an optional time column.

    ``rate`` None replays as fast as the agent takes it; otherwise rows are
    paced at ``rate`` per second. Column names must match the model's
    features when a header names them all; extra columns are ignored.
    """

    TIME_COLUMNS = ("timestamp", "time", "ts", "t")

    def __init__(self, path: str | Path, features: list[str], rate: float | None = None,
                 stream: str | None = None, loop: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInput(f"replay file {self.path} does not exist")
        self.features = features
        self.rate = rate
        self.loop = loop
        self.name = stream or f"replay:{self.path.name}"
        self.rows_sent = 0
        with self.path.open(newline="") as fh:
            header = next(csv.reader(fh), None)
        if not header:
            raise BadInput(f"replay file {self.path} is empty")
        self.columns = self._pick_columns([h.strip() for h in header])

    def _pick_columns(self, header: list[str]) -> tuple[int | None, list[int]]:
        time_col = next((i for i, h in enumerate(header) if h.lower() in self.TIME_COLUMNS), None)
        if all(f in header for f in self.features):
            return time_col, [header.index(f) for f in self.features]
        rest = [i for i in range(len(header)) if i != time_col]
        if len(rest) != len(self.features):
            raise BadInput(f"replay file {self.path} has columns {header}; the model needs "
                           f"{len(self.features)} features {self.features}")
        return time_col, rest

    def run(self) -> None:
        time_col, cols = self.columns
        period = 1.0 / self.rate if self.rate else 0.0
        next_t = time.monotonic()
        while True:
            with self.path.open(newline="") as fh:
                reader = csv.reader(fh)
                next(reader, None)
                for row in reader:
                    if self.stopping:
                        return
                    if not row:
                        continue
                    try:
                        values = [float(row[i]) for i in cols]
                        ts = _csv_time(row[time_col]) if time_col is not None else None
                    except (ValueError, IndexError):
                        # hand the raw text to the parser so it is counted like any bad message
                        self._put(Item(Kind.RAW, self.name, ",".join(row), time.time()))
                        continue
                    if period:
                        next_t += period
                        delay = next_t - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)
                    if not self._put(Item(Kind.MEASUREMENT, self.name, Measurement(values, ts),
                                          time.time())):
                        return
                    self.rows_sent += 1
            if not self.loop:
                return


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
    opts = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    opts.update({k: str(v) for k, v in spec.options.items()})
    unknown = set(opts) - {"rate", "loop", "stream"}
    if unknown:
        raise BadInput(f"replay source {spec.url!r}: unknown option(s) {sorted(unknown)}; known: loop, rate, stream")
    try:
        rate = float(opts["rate"]) if "rate" in opts else None
    except ValueError:
        raise BadInput(f"replay source {spec.url!r}: rate must be a number of rows per second") from None
    return ReplaySource(path, ctx.features, rate=rate, stream=opts.get("stream"),
                        loop=opts.get("loop", "").lower() in ("1", "true", "yes"))
